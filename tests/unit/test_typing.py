"""The typed boundary, as mypy sees user code: step outputs, workflow outputs, step options.

The cases are written to files and checked by mypy (strict) in one run, with the
project's mypy cache, so that only the two small files are new to it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]

TYPED = """
from typing import Any, assert_type

from orchestrate import Engine, RunContext, Step, Workflow, workflow
from orchestrate.workflow import DurableFunction


async def classify(text: str) -> int:
    return len(text)


def shout(text: str) -> str:
    return text.upper()


@workflow(version="1")
async def support(ctx: RunContext, text: str) -> dict[str, int]:
    n = await ctx.step(classify, text, retry=3, timeout=5)
    assert_type(n, int)
    loud = await ctx.step(shout, text, name="shout")
    assert_type(loud, str)
    return {"n": n, "loud": len(loud)}


assert_type(support, DurableFunction[dict[str, int]])
assert_type(support.run_sync("x"), dict[str, int])

graph = Workflow("graph", [Step("shout", shout, retry=2, model="small", threshold=0.8)])


async def main(engine: Engine) -> None:
    assert_type(await engine.run(support, "x"), dict[str, int])
    assert_type(await support.run("x"), dict[str, int])
    assert_type(await engine.run(graph, "x"), Any)
"""

MISTYPED = """
from orchestrate import Step


def shout(text: str) -> str:
    return text.upper()


Step("shout", shout, retires=3)
"""


@pytest.mark.timeout(900)
def test_mypy_reads_the_types_of_steps_and_workflows_and_refuses_a_misspelt_setting(tmp_path: Path) -> None:
    typed = tmp_path / "typed_case.py"
    typed.write_text(textwrap.dedent(TYPED))
    mistyped = tmp_path / "mistyped_case.py"
    mistyped.write_text(textwrap.dedent(MISTYPED))
    out, err, _status = mypy_api.run(
        [
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(typed),
            str(mistyped),
        ]
    )
    lines = [line for line in out.splitlines() if ": error:" in line or ": note:" in line]
    assert [line for line in lines if "typed_case.py" in line and "mistyped" not in line] == [], out + err
    errors = [line for line in lines if "mistyped_case.py" in line and ": error:" in line]
    assert len(errors) == 1, out + err
    assert 'Unexpected keyword argument "retires" for "Step"' in errors[0]
