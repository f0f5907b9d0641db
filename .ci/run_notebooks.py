#!/usr/bin/env python3
"""Executes Jupyter notebooks one at a time under the evcxr kernel and fails on any error.

usage: python .ci/run_notebooks.py OUT_DIR NOTEBOOK...   (Python with nbclient, nbformat)

Each notebook runs with its own folder as the working directory (so `:dep llm_lessons =
{ path = ".." }` resolves), and the executed copy is written to OUT_DIR; the committed
notebook is not modified. A notebook fails if a cell raises (compile error, a panic when
`:preserve_vars_on_panic 0` is set), if any output is an error, or if a stderr stream
says `panicked at` (evcxr prints caught panics there). The error text, which nbclient
does not log, is printed here. Exits 1 if any notebook failed.

Environment: NB_KERNEL (default rust), NB_TIMEOUT per cell in seconds (default 1200).
"""
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
KERNEL = os.environ.get("NB_KERNEL", "rust")
TIMEOUT = int(os.environ.get("NB_TIMEOUT", "1200"))


def clean(text, limit=6000):
    text = ANSI.sub("", text)
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more chars)"


def problems(nb):
    """(cell number, source head, message) for each cell with an error output or a panic."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        outs = cell.get("outputs", [])
        stderr = "".join(o.text for o in outs if o.output_type == "stream" and o.name == "stderr")
        errors = [o for o in outs if o.output_type == "error"]
        if not errors and "panicked at" not in stderr:
            continue
        msg = [stderr] if stderr else []
        for o in errors:
            msg.append("\n".join(o.get("traceback", [])) or f"{o.get('ename')}: {o.get('evalue')}")
        head = cell.source.strip().splitlines()[0][:80] if cell.source.strip() else ""
        found.append((i, head, "\n".join(msg)))
    return found


def run(path, out_dir):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=TIMEOUT,
        allow_errors=True,  # keep going to the end so every error is in the output...
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    fatal = None
    t0 = time.monotonic()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as e:
        fatal = f"{type(e).__name__}: {e}"
    dt = time.monotonic() - t0
    out = out_dir / path.name
    nbformat.write(nb, out)
    found = problems(nb)  # ...and fail on it here
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    status = "ok" if not (fatal or found) else "FAILED"
    print(f"notebook {path}: {status}, {n_code} code cells, {dt:.1f} s (executed copy: {out})",
          flush=True)
    if fatal:
        print(clean(fatal))
    for i, head, msg in found:
        print(f"--- {path} cell {i} ({head!r}):")
        print(clean(msg))
    return not (fatal or found)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = [p for p in map(Path, argv[1:]) if not run(p, out_dir)]
    print(f"notebooks: {len(argv) - 1 - len(failed)} passed, {len(failed)} failed")
    for p in failed:
        print(f"FAILED notebook {p}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
