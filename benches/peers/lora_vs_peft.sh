#!/usr/bin/env bash
# Chapter 5's LoRA training step, ours against PEFT on PyTorch, side by side in one call:
# the same model shape (llama-tiny), batch 16 x 128, LoRA r = 8, alpha 16 on q_proj and
# v_proj, at 1 and 2 threads, ROUNDS rounds alternating the two sides so that both see the
# same state of the machine. Each run is STEPS steps after 2 warm-up and reports its median
# step and its own peak RSS; the summary gives, per side and thread count, every round's
# tokens/s and their median.
#
# usage: benches/peers/lora_vs_peft.sh [ROUNDS=3] [STEPS=10]
# needs: the PyPI venv of benches/peers/requirements-peft-pypi.txt at $PEFT_PYTHON
#        (default ~/.cache/llm-lessons-peers-pypi/bin/python)
set -euo pipefail
rounds=${1:-3}
steps=${2:-10}
python=${PEFT_PYTHON:-$HOME/.cache/llm-lessons-peers-pypi/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ ! -x "$python" ]; then
  echo "no PEFT python at $python: python3 -m venv ~/.cache/llm-lessons-peers-pypi &&" \
       "~/.cache/llm-lessons-peers-pypi/bin/pip install -r benches/peers/requirements-peft-pypi.txt" >&2
  exit 2
fi
cd "$root"
cargo bench --bench lora --no-run >/dev/null 2>&1 || cargo bench --bench lora --no-run
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads;" \
     "$("$python" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for threads in 1 2; do
    ours=$(RAYON_NUM_THREADS=$threads cargo bench --bench lora -- lora "$steps" --rank 8 --targets q_proj,v_proj 2>/dev/null | grep '^llama-tiny')
    peft=$("$python" -W ignore::FutureWarning "$here/peft_train_bench.py" lora --steps "$steps" --threads "$threads" --rank 8 --targets q_proj,v_proj | grep '^peft')
    echo "round $round, $threads thread(s): ours: $ours"
    echo "round $round, $threads thread(s): PEFT: $peft"
    printf 'ours %s %s\npeft %s %s\n' "$threads" "$(grep -o '[0-9]* tokens/s' <<<"$ours" | cut -d' ' -f1)" \
      "$threads" "$(grep -o '[0-9]* tokens/s' <<<"$peft" | cut -d' ' -f1)" >>"$log"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "tokens/s, LoRA r = 8 on q_proj and v_proj, batch 16 x 128, median step of $steps, per round:"
for threads in 1 2; do
  for side in ours peft; do
    values=$(awk -v s="$side" -v t="$threads" '$1 == s && $2 == t { print $3 }' "$log" | tr '\n' ' ')
    median=$(tr ' ' '\n' <<<"$values" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    printf '  %-4s %s thread(s): %s(median %s)\n' "$side" "$threads" "$values" "$median"
  done
done
