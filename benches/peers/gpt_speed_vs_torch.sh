#!/usr/bin/env bash
# Chapter 4's speed against PyTorch, both sides in one run, taking turns: for each of
# ROUNDS rounds, llama-tiny training (batch 16 x 128, 30 timed steps after 5 untimed) at 2
# threads, then at 1 thread, then greedy generation of 256 tokens at batch 1, each by this
# crate (`cargo bench --bench gpt`) and then by PyTorch (`gpt_torch.py`, a compact Llama of
# the same configuration; with --hf also transformers' `generate`).
#
# usage: benches/peers/gpt_speed_vs_torch.sh [ROUNDS] [PYTHON]
#   PYTHON: an environment with torch and transformers, e.g. the one
#   requirements-peft-pypi.txt makes (~/.cache/llm-lessons-peers-pypi/bin/python)
set -euo pipefail
rounds=${1:-3}
py=${2:-$HOME/.cache/llm-lessons-peers-pypi/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
cargo bench --bench gpt --no-run 2>/dev/null
lscpu | grep -E 'Model name|^CPU\(s\)' || true
grep -o -w -E 'avx2|fma|f16c|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
"$py" -c 'import torch; print("torch", torch.__version__)'
for r in $(seq 1 "$rounds"); do
  echo "== round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for t in 2 1; do
    echo "-- training, $t thread(s)"
    RAYON_NUM_THREADS=$t cargo bench -q --bench gpt -- llama-tiny 30 2>/dev/null | grep -E 'tokens/s|threads'
    OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t "$py" "$here/gpt_torch.py" --arch llama --steps 30 --warmup 5 --threads $t
  done
  echo "-- generation, 2 threads"
  RAYON_NUM_THREADS=2 cargo bench -q --bench gpt -- generate llama-tiny 256 2>/dev/null | grep -E 'tokens/s'
  "$py" "$here/gpt_torch.py" --arch llama --generate 256 --hf --threads 2
done
