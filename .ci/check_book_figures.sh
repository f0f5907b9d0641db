#!/usr/bin/env bash
# The book's figures are made by the crate's code: each line of book/src/img/FIGURES.txt
# pairs an image of the book with the file the tour (`cargo run --release`) writes, and
# this script, run by .ci/run right after the tour, fails when the two differ byte for byte.
#   bash .ci/check_book_figures.sh           compare (after `cargo run --release`)
#   bash .ci/check_book_figures.sh --update  copy the tour's files over the book's images
# Environment: OUT_DIR, where the tour wrote (default out/, the tour's default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
list=book/src/img/FIGURES.txt
out=${OUT_DIR:-out}
update=0
case "${1:-}" in
  --update) update=1 ;;
  "") ;;
  *) echo "usage: bash .ci/check_book_figures.sh [--update]" >&2; exit 2 ;;
esac

checked=0 stale=() missing=()
while read -r image made || [ -n "${image:-}" ]; do
  case "$image" in ''|'#'*) continue ;; esac
  if [ -z "${made:-}" ]; then
    echo "!!! $list: '$image' names no file of the tour" >&2; exit 2
  fi
  # The tour's paths are written as out/...; OUT_DIR moves them.
  src="$out/${made#out/}"
  dst="book/src/img/$image"
  if [ ! -f "$src" ]; then missing+=("$src (for $dst)"); continue; fi
  if [ "$update" -eq 1 ]; then
    if ! cmp -s "$src" "$dst"; then cp "$src" "$dst"; echo "updated $dst from $src"; fi
  elif [ ! -f "$dst" ] || ! cmp -s "$src" "$dst"; then
    stale+=("$dst (the tour wrote $src)")
  fi
  checked=$((checked + 1))
done < "$list"

if [ ${#missing[@]} -gt 0 ]; then
  echo "!!! the tour did not write these files (run \`cargo run --release\` first):" >&2
  printf '      %s\n' "${missing[@]}" >&2
  exit 1
fi
if [ ${#stale[@]} -gt 0 ]; then
  echo "!!! these book images differ from what the code draws today:" >&2
  printf '      %s\n' "${stale[@]}" >&2
  echo "    refresh them with: cargo run --release && bash .ci/check_book_figures.sh --update" >&2
  exit 1
fi
echo "book figures: $checked image(s) of $list $([ "$update" -eq 1 ] && echo "brought up to date" || echo "equal the tour's files")"
