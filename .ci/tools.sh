#!/usr/bin/env bash
# Installs the tools CI needs (evcxr_jupyter, mdbook, mdbook-katex, a Python venv with
# nbclient/nbconvert/jupyter) into a cache outside the clone, skipping any that is already
# there at the pinned version. Prints the exports to use them.
# usage: source .ci/tools.sh
set -euo pipefail
TOOLS=${LLM_LESSONS_TOOLS:-$HOME/.cache/llm-lessons/tools}
mkdir -p "$TOOLS"
export PATH="$TOOLS/bin:$PATH"

install_crate() { # name version
  if grep -qs "^\"$1 $2 " "$TOOLS/.crates.toml"; then
    echo "tools: $1 $2 already installed"
  else
    echo "tools: installing $1 $2 (cold: minutes)"
    cargo install "$1" --version "$2" --locked --root "$TOOLS" --quiet
  fi
}
install_crate mdbook 0.5.4
install_crate mdbook-katex 0.10.0
install_crate evcxr_jupyter 0.22.0

VENV="$TOOLS/venv"
PYPINS="nbclient==0.10.2 nbconvert==7.16.6 nbformat==5.10.4 jupyter_client==8.6.3"
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$PYPINS" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q $PYPINS
  echo "$PYPINS" > "$VENV/.stamp"
fi
export PATH="$VENV/bin:$PATH"
export JUPYTER_PATH="$TOOLS/jupyter"
if [ ! -f "$JUPYTER_PATH/kernels/rust/kernel.json" ]; then
  evcxr_jupyter --install >/dev/null
fi
echo "tools: ready in $TOOLS"
