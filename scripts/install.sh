#!/usr/bin/env bash
# Install orchestrate, its optional parts and what its tests need into the virtualenv
# whose bin/ is $1. Torch comes first, pinned to the CPU build, so that nothing asks for
# a CUDA build of it.
set -euo pipefail
BIN=${1:-.venv/bin}
EXTRAS=${EXTRAS:-dev,postgres,openai,anthropic,ollama,local,llama,validation,metrics,otel,server,cron,nats,redis,rabbitmq,drift,zstd,mcp}
# The dashboard's browser tests drive Debian's Chromium through its ChromeDriver (a test
# tool's own browser download cannot work offline).
if [[ ",${EXTRAS}," == *",dev,"* ]] && ! command -v chromedriver > /dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
        apt-get install -y -q chromium chromium-driver > /dev/null \
            || { apt-get update -q > /dev/null && apt-get install -y -q chromium chromium-driver > /dev/null; }
    else
        echo "install.sh: the browser tests need Chromium and ChromeDriver: sudo apt-get install chromium chromium-driver" >&2
    fi
fi
"$BIN/pip" install --quiet "torch==2.13.0"
# llama-cpp-python has no Linux wheel on PyPI: pip compiles llama.cpp. Build only the
# library, on every core, for a portable x86-64 baseline (AVX2, FMA, F16C) rather than
# `-march=native`: a native build's AMX kernels crash on some Xeons, and pip caches a
# built wheel by the source's URL alone, so a native wheel would follow the cache to
# any machine. The wheel is kept in a directory named after these flags and installed
# from there (one build per machine and flags).
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
FIND_LINKS=()
if [[ ",${EXTRAS}," == *",llama,"* ]]; then
    WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/orchestrate/wheels/$(printf '%s' "$CMAKE_ARGS" | sha256sum | cut -c1-16)"
    if ! compgen -G "$WHEELS/llama_cpp_python-*.whl" > /dev/null; then
        echo "install.sh: compiling llama.cpp once for this machine (about 5 minutes on 2 cores; the wheel is then cached in $WHEELS)" >&2
        "$BIN/pip" wheel --quiet --no-cache-dir --no-deps --wheel-dir "$WHEELS" "llama-cpp-python>=0.3.2"
    fi
    FIND_LINKS=(--find-links "$WHEELS")
    # Replace a build already installed here (the same version from pip's cache would
    # count as satisfied).
    "$BIN/pip" install --quiet --no-deps --force-reinstall "$(ls "$WHEELS"/llama_cpp_python-*.whl | sort -V | tail -n 1)"
fi
"$BIN/pip" install --quiet "${FIND_LINKS[@]}" -e ".[${EXTRAS}]"
