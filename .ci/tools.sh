#!/usr/bin/env bash
# Installs the tools that CI (and anyone who wants the notebooks and the book) needs into a
# cache outside the clone, so that later runs on the same machine reuse them:
#   mdbook 0.5.4, mdbook-katex 0.10.0, evcxr_jupyter 0.22.0 (built with cargo install),
#   a Python venv with nbclient/nbconvert, and the evcxr Jupyter kernel spec (name `rust`).
# Anything already there at the pinned version is skipped (well under a second when warm).
# Cold, on 2 cores: about 8 minutes when the machine is idle; 31 minutes were measured
# while other builds shared it (evcxr_jupyter alone took 26 of them).
#
# usage: source .ci/tools.sh       (puts the tools on PATH and sets JUPYTER_PATH, TOOLS)
#        LLM_LESSONS_TOOLS=DIR source .ci/tools.sh   to use another cache folder
#
# Sourced, it leaves the caller's shell options alone; it returns non-zero on failure.

TOOLS=${LLM_LESSONS_TOOLS:-$HOME/.cache/llm-lessons/tools}
export TOOLS
export JUPYTER_PATH="$TOOLS/jupyter"

# The installs run in a subshell with strict error handling; only the exports below
# touch the caller's environment.
(
  set -euo pipefail
  mkdir -p "$TOOLS"
  export PATH="$TOOLS/bin:$PATH"

  install_crate() { # name version
    if grep -qs "^\"$1 $2 " "$TOOLS/.crates.toml"; then
      echo "tools: $1 $2 already installed"
    else
      echo "tools: installing $1 $2 with cargo (cold: minutes)"
      local t0=$SECONDS
      cargo install "$1" --version "$2" --locked --root "$TOOLS" --quiet
      echo "tools: $1 $2 installed in $((SECONDS - t0)) s"
    fi
  }
  install_crate mdbook 0.5.4
  install_crate mdbook-katex 0.10.0
  install_crate evcxr_jupyter 0.22.0

  VENV="$TOOLS/venv"
  PYPINS="nbclient==0.10.2 nbconvert==7.16.6 nbformat==5.10.4 jupyter_client==8.6.3"
  if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$PYPINS" ] || [ ! -x "$VENV/bin/python" ]; then
    echo "tools: creating Python venv ($PYPINS)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q $PYPINS
    echo "$PYPINS" > "$VENV/.stamp"
  else
    echo "tools: Python venv ready"
  fi

  # The kernel spec names the evcxr_jupyter binary by absolute path: rewrite it when the
  # binary is not the one in this cache (e.g. the cache folder moved).
  spec="$JUPYTER_PATH/kernels/rust/kernel.json"
  if ! grep -qs "\"$TOOLS/bin/evcxr_jupyter\"" "$spec"; then
    echo "tools: installing the evcxr Jupyter kernel spec (kernel name: rust)"
    evcxr_jupyter --install >/dev/null
  fi
  grep -qs "\"$TOOLS/bin/evcxr_jupyter\"" "$spec" || {
    echo "tools: kernel spec $spec does not point at $TOOLS/bin/evcxr_jupyter" >&2
    exit 1
  }
) || { echo "tools: FAILED to install the tools into $TOOLS" >&2; return 1 2>/dev/null || exit 1; }

case ":$PATH:" in *":$TOOLS/bin:"*) ;; *) export PATH="$TOOLS/bin:$PATH" ;; esac
case ":$PATH:" in *":$TOOLS/venv/bin:"*) ;; *) export PATH="$TOOLS/venv/bin:$PATH" ;; esac
echo "tools: ready in $TOOLS (mdbook, mdbook-katex, evcxr_jupyter, jupyter; JUPYTER_PATH=$JUPYTER_PATH)"
