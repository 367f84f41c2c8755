"""``scripts/install.sh`` (what ``make install`` runs) with a stand-in ``pip``: what it tells people."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PIP = """#!/usr/bin/env bash
# Stands in for pip: says what it was asked, and "builds" a wheel where asked to.
echo "pip $1" >&2
if [[ "$1" == "wheel" ]]; then
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == "--wheel-dir" ]]; then
            mkdir -p "$2" && touch "$2/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
        fi
        shift
    done
fi
"""


def install(bin_dir: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXTRAS": "llama", "XDG_CACHE_HOME": str(cache)}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), str(bin_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_llama_cpp_compile_is_announced_once_before_it_starts(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)

    first = install(bin_dir, tmp_path / "cache")

    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    (announced,) = [i for i, line in enumerate(lines) if "compiling llama.cpp" in line]
    assert "once for this machine" in lines[announced] and "about 5 minutes on 2 cores" in lines[announced]
    assert lines[announced + 1] == "pip wheel"  # said right before the long step

    again = install(bin_dir, tmp_path / "cache")  # the wheel is cached now: nothing to compile

    assert again.returncode == 0, again.stderr
    assert "compiling llama.cpp" not in again.stderr and "pip wheel" not in again.stderr
