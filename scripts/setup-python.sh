#!/usr/bin/env bash
# Installs the Python tools gpufrac bench is compared with, from PyPI into .venv (gitignored):
#   scripts/setup-python.sh            AIPerf and guidellm (peer load generators)
#   scripts/setup-python.sh --llama    also llama-cpp-python (its OpenAI-compatible server; it
#                                      compiles llama.cpp from source: many minutes on 2 cores)
#                                      and gguf (to write the tiny random-weight test model)
# Idempotent: packages already installed are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

with_llama=0
for arg in "$@"; do
  case "$arg" in
    --llama) with_llama=1 ;;
    *) echo "setup-python: unknown argument '$arg' (expected --llama)" >&2; exit 2 ;;
  esac
done

[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
"$py" -m pip install --quiet --upgrade pip

install_if_missing() {  # module name, pip requirement
  if ! "$py" -c "import $1" 2>/dev/null; then
    echo "setup-python: installing $2"
    "$py" -m pip install --quiet "$2"
  fi
}

install_if_missing aiperf aiperf
install_if_missing guidellm guidellm
if ((with_llama)); then
  install_if_missing gguf gguf
  install_if_missing numpy numpy
  # The server extra brings uvicorn/fastapi for llama_cpp.server; CPU-only build.
  CMAKE_ARGS="-DGGML_NATIVE=OFF" install_if_missing llama_cpp "llama-cpp-python[server]"
fi
echo "setup-python: ready ($("$py" --version))"
