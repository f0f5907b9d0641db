#!/usr/bin/env bash
# Chapter 8's SFT on SmolLM2-135M-Instruct through LoRA (rank 8, alpha 16, q_proj and
# v_proj): our step against PEFT's on transformers, same batch shape, 2 threads, side by
# side in one call. For ROUNDS rounds: ours (`llm post lora-sft`, STEPS steps of 4
# conversations; it prints seconds per step and the rows' positions T), then PEFT
# (`smollm2_lora_sft_peft.py`, STEPS steps of 4 x T ids), each a whole process under
# /usr/bin/time for its peak RSS.
#
# usage: benches/peers/smollm2_lora_sft_vs_peft.sh [ROUNDS=2] [STEPS=20] MODEL.gguf
# needs: the PyPI venv of requirements-peft-pypi.txt (PEFT_PYTHON, default
# ~/.cache/llm-lessons-peers-pypi/bin/python), and /usr/bin/time.
set -euo pipefail
rounds=${1:-2}
steps=${2:-20}
model=${3:?usage: $0 [ROUNDS=2] [STEPS=20] MODEL.gguf}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
py=${PEFT_PYTHON:-$HOME/.cache/llm-lessons-peers-pypi/bin/python}
cd "$root"
cargo build --release --bin llm >/dev/null 2>&1 || cargo build --release --bin llm
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads," \
     "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512_vnni|avxvnni' | sort -u | tr '\n' ' ')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$rounds"); do
  RAYON_NUM_THREADS=2 /usr/bin/time -f "%M" -o "$tmp/rss" target/release/llm post lora-sft \
    --model "$model" --out "$tmp/ours" --steps "$steps" --requests 1 2>/dev/null >"$tmp/out"
  line=$(grep "s/step" "$tmp/out")
  t=$(echo "$line" | grep -o 'rows of [0-9]* positions' | grep -o '[0-9]*')
  echo "round $r ours: $line; peak RSS $(( $(cat "$tmp/rss") / 1024 )) MiB"
  OPENBLAS_NUM_THREADS=1 /usr/bin/time -f "%M" -o "$tmp/rss" "$py" "$here/smollm2_lora_sft_peft.py" \
    --positions "$t" --steps "$steps" --threads 2 >"$tmp/out" 2>/dev/null
  echo "round $r peft: $(cat "$tmp/out"); peak RSS (time) $(( $(cat "$tmp/rss") / 1024 )) MiB"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
