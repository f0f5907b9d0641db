#!/usr/bin/env python3
"""The DPO loss in PyTorch (and TRL's own loss code) on the llama-tiny fixture: writes
tests/fixtures/dpo/. The program itself is kept with its fixture, as
tests/fixtures/dpo/make_dpo_ref.py; this runs it, with the same arguments
(--policy DIR, --out DIR; by default tests/fixtures/llama-tiny and tests/fixtures/dpo).
"""
import runpy
import sys
from pathlib import Path

script = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dpo" / "make_dpo_ref.py"
sys.argv[0] = str(script)
runpy.run_path(str(script), run_name="__main__")
