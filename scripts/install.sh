#!/usr/bin/env bash
# Install orchestrate, its optional parts and what its tests need into the virtualenv
# whose bin/ is $1. Torch comes first, pinned to the CPU build, so that nothing asks for
# a CUDA build of it.
set -euo pipefail
BIN=${1:-.venv/bin}
EXTRAS=${EXTRAS:-dev,postgres,openai,anthropic,ollama,local,validation}
"$BIN/pip" install --quiet "torch==2.13.0"
"$BIN/pip" install --quiet -e ".[${EXTRAS}]"
