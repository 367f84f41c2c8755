#!/usr/bin/env bash
# Install orchestrate and what its tests need into the virtualenv whose bin/ is $1.
set -euo pipefail
BIN=${1:-.venv/bin}
"$BIN/pip" install --quiet -e '.[dev]'
