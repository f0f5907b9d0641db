#!/usr/bin/env bash
# usage: bash benches/peers/llamacpp_agreement.sh [MODEL_DIR] [OUT_DIR]
#
# Does llama.cpp load what `llm quant quantize` writes, and compute what we compute? Writes
# a model folder (default: the test fixture tests/fixtures/llama-tiny, 2 layers, 4 query and
# 2 key/value heads, vocabulary 320 on bytes) as GGUF in each format, then for two prompts
# prints the 24 greedy ids of `llm gpt generate --greedy` on the file and of llama.cpp on the
# same file (llamacpp_greedy.mjs, which says how to install node-llama-cpp), and whether they
# are equal. At f32 they must be: the script exits 1 if they are not. The quantized formats
# may part where two logits are close (llama.cpp keeps its KV cache in f16, and its kernels
# round in another order).
#
# From the repository root, after `cargo build --release`; LLM=path/to/llm picks the binary.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODEL=${1:-$ROOT/tests/fixtures/llama-tiny}
OUT=${2:-$(mktemp -d)}
LLM=${LLM:-$ROOT/target/release/llm}
[ -x "$LLM" ] || { echo "no $LLM: cargo build --release first (or set LLM)" >&2; exit 2; }
mkdir -p "$OUT"
PROMPTS=("116 104 101 32 99" "$(seq -s ' ' 1 33)")
status=0
for format in f32 f16 q8_0 q4_0 q4_1; do
  file="$OUT/model-$format.gguf"
  "$LLM" quant quantize --model "$MODEL" --format "$format" --out "$file" > /dev/null
  for prompt in "${PROMPTS[@]}"; do
    ours=$("$LLM" gpt generate --model "$file" --prompt-ids "$prompt" --max-new-tokens 24 --greedy)
    theirs=$(node "$ROOT/benches/peers/llamacpp_greedy.mjs" "$file" "$prompt" 24 2> /dev/null)
    if [ "$ours" = "$theirs" ]; then same="equal"; else
      same="differ"
      # the first new token where they part
      read -ra a <<< "$ours"; read -ra b <<< "$theirs"
      for i in "${!a[@]}"; do [ "${a[$i]}" = "${b[$i]:-}" ] || { same="differ from new token $((i + 1))"; break; }; done
      [ "$format" = f32 ] && status=1
    fi
    printf '%-5s prompt of %2d ids: %s\n  ours      %s\n  llama.cpp %s\n' \
      "$format" "$(wc -w <<< "$prompt")" "$same" "$ours" "$theirs"
  done
done
node "$ROOT/benches/peers/llamacpp_greedy.mjs" "$OUT/model-f32.gguf" "1" 1 2>&1 > /dev/null | tail -n 1
exit $status
