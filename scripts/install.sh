#!/usr/bin/env bash
# Install orchestrate, its optional parts and what its tests need into the virtualenv
# whose bin/ is $1. Torch comes first, pinned to the CPU build, so that nothing asks for
# a CUDA build of it.
set -euo pipefail
BIN=${1:-.venv/bin}
EXTRAS=${EXTRAS:-dev,postgres,openai,anthropic,ollama,local,llama,validation}
"$BIN/pip" install --quiet "torch==2.13.0"
# llama-cpp-python compiles llama.cpp when no wheel fits (once; pip caches the wheel):
# build only the library, on every core.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
"$BIN/pip" install --quiet -e ".[${EXTRAS}]"
