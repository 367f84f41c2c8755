"""``orchestrate run`` of a workflow calling llama.cpp in-process exits without noise.

A loaded ``llama_cpp.Llama`` left to its ``__del__`` is freed while the interpreter tears
its modules down, where the freeing can fail and print a traceback after a green run.
The models are freed at exit instead, while everything is still in place, and the
``/dev/null`` files of llama-cpp-python's quiet mode are not reported as unclosed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrate.models.local import gemma_270m_path

APP = """
import sys

import llama_cpp

from orchestrate import Step, Workflow
from orchestrate.models import ModelSettings
from orchestrate.models.local import LlamaCppModel

_free = llama_cpp.Llama.__del__


def _watched_free(self):
    if sys.is_finalizing():
        sys.__stderr__.write("a Llama was freed during interpreter teardown\\n")
    _free(self)


llama_cpp.Llama.__del__ = _watched_free
model = LlamaCppModel(GEMMA, n_ctx=256)


async def count(prompt):
    result = await model.generate(prompt, settings=ModelSettings(max_tokens=3, temperature=0))
    return result.text


counting = Workflow("counting", [Step("count", count, timeout=120)], version="1")
"""


def test_a_run_with_an_in_process_llama_exits_without_a_teardown_free(tmp_path: Path) -> None:
    app = tmp_path / "llama_app.py"
    app.write_text(APP.replace("GEMMA", repr(str(gemma_270m_path()))))

    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "default::ResourceWarning",
            "-m",
            "orchestrate.cli",
            "run",
            f"{app}:counting",
            "--input",
            '"One, two, three,"',
        ],
        cwd=tmp_path,
        env={**os.environ, "ORCHESTRATE_STORE": f"sqlite:///{tmp_path / 'llama.db'}", "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "four" in done.stdout
    assert "freed during interpreter teardown" not in done.stderr
    for noise in ("Traceback", "Exception ignored", "ResourceWarning"):
        assert noise not in done.stderr, done.stderr
