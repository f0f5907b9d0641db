#!/usr/bin/env bash
# Chapter 7's speed: our generation against llama.cpp's on the same GGUF files, same threads,
# side by side in one call. For ROUNDS rounds, for 1 and 2 threads, for each model file: ours
# (`cargo bench --bench real_model`) then llama.cpp (`benches/peers/llamacpp/run.mjs`), each a
# whole process measuring the same things: load time, greedy decode tokens/s (64 tokens after
# "The capital of France is", timed from the first generated token), prefill tokens/s (256
# tokens in one pass), 3 reps each, and the process's peak RSS (/usr/bin/time). Each round
# also measures the read bandwidth at each thread count, for the bound
# "weights read per token ÷ bandwidth". The summary gives every round's figures and the medians.
#
# usage: benches/peers/smollm2_vs_llamacpp.sh [ROUNDS=3] MODEL.gguf [MODEL.gguf ...]
# needs: node-llama-cpp installed by benches/peers/llamacpp/setup.sh, and /usr/bin/time.
set -euo pipefail
rounds=${1:-3}
shift || true
if [ $# -eq 0 ]; then
  echo "usage: $0 [ROUNDS=3] MODEL.gguf [MODEL.gguf ...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
models=()
for m in "$@"; do models+=("$(cd "$(dirname "$m")" && pwd)/$(basename "$m")"); done
cd "$root"
cargo bench --bench real_model --no-run >/dev/null 2>&1 || cargo bench --bench real_model --no-run
bench=$(cargo bench --bench real_model --no-run 2>&1 | grep -o 'target/release/deps/real_model-[0-9a-f]*' | head -1)
[ -x "$bench" ] || { echo "could not find the real_model bench binary" >&2; exit 2; }
node "$here/llamacpp/run.mjs" >/dev/null 2>&1 || true # warms node's module cache, not timed
log=$(mktemp)
out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads," \
     "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'avx2|fma|f16c|avx512f|avx512_vnni|avxvnni' | sort -u | tr '\n' ' ')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# side name threads file: runs one side, appends "side threads model load decode prefill rss_mib"
measure() {
  local side=$1 threads=$2 model=$3 name
  name=$(basename "$model" .gguf)
  if [ "$side" = ours ]; then
    /usr/bin/time -f 'peak RSS %M KB, wall %e s' -o "$out.time" "$bench" "$model" "$threads" --reps 3 >"$out"
  else
    /usr/bin/time -f 'peak RSS %M KB, wall %e s' -o "$out.time" node "$here/llamacpp/run.mjs" "$model" "$threads" --reps 3 >"$out"
  fi
  local load decode prefill rss
  load=$(grep -o 'load [0-9.]* ms' "$out" | head -1 | cut -d' ' -f2)
  decode=$(grep '^median' "$out" | grep -o 'decode [0-9.]*' | cut -d' ' -f2)
  prefill=$(grep '^median' "$out" | grep -o 'prefill [0-9.]*' | cut -d' ' -f2)
  rss=$(grep -o 'peak RSS [0-9]*' "$out.time" | awk '{ printf "%.1f", $3 / 1024 }')
  printf '  %-9s %s thread(s) %s: load %s ms, decode %s tok/s, prefill %s tok/s, peak RSS %s MiB\n' \
    "$side" "$threads" "$name" "$load" "$decode" "$prefill" "$rss"
  grep '^greedy' "$out" | sed 's/^/            /'
  echo "$side $threads $name $load $decode $prefill $rss" >>"$log"
  if [ "$side" = ours ]; then
    echo "weights - $name $(grep -o '[0-9.]* MB of weights' "$out" | cut -d' ' -f1)" >>"$log"
  fi
  rm -f "$out.time"
}

for round in $(seq "$rounds"); do
  echo "round $round:"
  for threads in 1 2; do
    bw=$("$bench" --bandwidth "$threads" | grep -o '[0-9.]* GB/s' | cut -d' ' -f1)
    echo "  read bandwidth, $threads thread(s): $bw GB/s"
    echo "bandwidth $threads - $bw" >>"$log"
    for model in "${models[@]}"; do
      # alternate which side goes first, so that neither always follows the other
      if [ $((round % 2)) -eq 1 ]; then sides="ours llama.cpp"; else sides="llama.cpp ours"; fi
      for side in $sides; do measure "$side" "$threads" "$model"; done
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

med() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v s="$1" -v t="$2" -v m="$3" -v c="$4" '$1 == s && $2 == t && $3 == m { print $c }' "$log"; }
echo "medians over $rounds round(s) (decode: 64 greedy tokens; prefill: 256 tokens; bound: weights read per token ÷ read bandwidth):"
printf '| model | threads | side | decode tok/s (rounds) | decode median | prefill tok/s | load ms | peak RSS MiB | bound tok/s |\n|---|---|---|---|---|---|---|---|---|\n'
for model in "${models[@]}"; do
  name=$(basename "$model" .gguf)
  mb=$(awk -v m="$name" '$1 == "weights" && $3 == m { print $4; exit }' "$log")
  for threads in 1 2; do
    bw=$(awk -v t="$threads" '$1 == "bandwidth" && $2 == t { print $4 }' "$log" | med)
    bound=$(awk -v b="$mb" -v g="$bw" 'BEGIN { printf "%.0f", g * 1e3 / b }')
    for side in ours llama.cpp; do
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$threads" "$side" \
        "$(col "$side" "$threads" "$name" 5 | tr '\n' ' ' | sed 's/ $//')" \
        "$(col "$side" "$threads" "$name" 5 | med)" "$(col "$side" "$threads" "$name" 6 | med)" \
        "$(col "$side" "$threads" "$name" 4 | med)" "$(col "$side" "$threads" "$name" 7 | med)" "$bound"
    done
  done
done
echo "(bound: the file's tensors, every weight read once per token, at the median read bandwidth of that thread count)"
