#!/usr/bin/env bash
# Chapter 7's quality per format: SmolLM2-135M-Instruct's mean next-token cross-entropy on the
# same held-out text (CHARS characters of Moby-Dick from OFFSET, one sequence, every token
# predicted from all the ones before it), ours at f32 (the Q4_1 file's weights dequantized,
# `--exact`), Q8_0 and Q4_0 (the Q4_1 file requantized by `llm quant quantize`) and Q4_1 (the
# file as shipped), and llama.cpp's own on the Q4_1 and Q8_0 files (`llamacpp/ppl.mjs`: 8-bit
# activations in every product, an f16 KV cache).
#
# usage: benches/peers/smollm2_quality.sh MODEL.Q4_1.gguf [MOBY_DICK.txt=data/external/moby_dick.txt]
#        [OFFSET=600000] [CHARS=12000]
# needs: node-llama-cpp installed by benches/peers/llamacpp/setup.sh
set -euo pipefail
model=${1:?usage: $0 MODEL.Q4_1.gguf [MOBY_DICK.txt] [OFFSET] [CHARS]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
text=${2:-$root/data/external/moby_dick.txt}
offset=${3:-600000}
chars=${4:-12000}
cd "$root"
cargo build --release --quiet
llm=$root/target/release/llm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the slice, cut once (by node, in UTF-16 units as ppl.mjs would) so that both sides read one file
node -e 'const fs = require("fs"); const [src, off, n, out] = process.argv.slice(1);
  fs.writeFileSync(out, fs.readFileSync(src, "utf8").slice(Number(off), Number(off) + Number(n)));' \
  "$text" "$offset" "$chars" "$work/heldout.txt"
for f in q8_0 q4_0; do
  "$llm" quant quantize --model "$model" --format "$f" --out "$work/$f.gguf" >/dev/null
done
ntok=$("$llm" bpe encode --model "$model" <"$work/heldout.txt" | wc -w)
echo "held-out text: $chars characters of $(basename "$text") from offset $offset, $ntok tokens"
ce() { "$llm" gpt eval --model "$1" --text "$work/heldout.txt" ${2:+"$2"} | grep -o 'cross-entropy [0-9.]*' | cut -d' ' -f2; }
f32=$(ce "$model" --exact)
row() { # name ce
  awk -v n="$1" -v h="$2" -v b="$f32" 'BEGIN { printf "| %s | %.5f | %.3f | %+.2f%% |\n", n, h, exp(h), 100 * (exp(h) - exp(b)) / exp(b) }'
}
echo "| model | cross-entropy (nats/token) | perplexity | perplexity vs f32 |"
echo "|---|---|---|---|"
row "ours, f32 (the Q4_1 weights dequantized)" "$f32"
row "ours, Q8_0 (requantized)" "$(ce "$work/q8_0.gguf")"
row "ours, Q4_1 (as shipped)" "$(ce "$model")"
row "ours, Q4_0 (requantized)" "$(ce "$work/q4_0.gguf")"
for f in "$model" "$work/q8_0.gguf"; do
  name=$([ "$f" = "$model" ] && echo "Q4_1 (as shipped)" || echo "Q8_0 (requantized)")
  nll=$(node "$here/llamacpp/ppl.mjs" "$f" "$work/heldout.txt" --chars 1000000 --ntok 100000 --threads 2 |
    grep -o 'mean NLL [0-9.]*' | cut -d' ' -f3)
  row "llama.cpp, $name" "$nll"
done
