"""Routing runs to queues: ``Client.start(queue=...)``, ``run --detach --queue`` and workers.

Every test runs on a SQLite file in ``tmp_path`` and on the real PostgreSQL named by
``ORCHESTRATE_TEST_POSTGRES`` (default: the local one, database ``orchestrate_test``), in
a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client, RunStatus, Step, Workflow
from orchestrate.cli import cli
from orchestrate.cli._common import setup_logging
from orchestrate.errors import InvalidInputError
from tests.postgres import in_schema

APP = """
from orchestrate import Step, Workflow

render = Workflow("render", [Step("draw", lambda scene: f"drawn {scene}")], version="1")
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL on SQLite, or on PostgreSQL in a fresh schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queues.db'}"
        return
    yield from in_schema()


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    setup_logging("warning")  # undo any --log-level a test passed


def render_workflow() -> Workflow:
    return Workflow("render", [Step("draw", lambda scene: f"drawn {scene}")], version="1")


# Client.start and workers ---------------------------------------------------------------------


async def test_a_run_started_on_a_queue_is_stored_with_it(store_url: str) -> None:
    wf = render_workflow()
    async with Client(store_url, workflows=[wf]) as client:
        on_gpu = await client.start(wf, "castle", queue="gpu")
        plain = await client.start(wf, "hut")

        assert (await client.get(on_gpu)).queue == "gpu"
        assert (await client.get(plain)).queue == "default"
        assert {r.run_id: r.queue for r in await client.list()} == {on_gpu: "gpu", plain: "default"}

    async with Client(store_url) as reader:  # another process sees the same
        assert (await reader.get(on_gpu)).queue == "gpu"


async def test_workers_claim_only_the_runs_of_their_queues(store_url: str) -> None:
    wf = render_workflow()
    async with Client(store_url, workflows=[wf]) as client:
        on_gpu = await client.start(wf, "castle", queue="gpu")
        plain = await client.start(wf, "hut")

    async with Client(store_url, workflows=[wf]) as cpu_worker:
        assert await cpu_worker.engine.work(queues=["cpu"], until_idle=True, poll_seconds=0.05) == 0
        assert (await cpu_worker.get(on_gpu)).status is RunStatus.PENDING
        assert (await cpu_worker.get(plain)).status is RunStatus.PENDING

    async with Client(store_url, workflows=[wf]) as gpu_worker:
        assert await gpu_worker.engine.work(queues=["gpu"], until_idle=True, poll_seconds=0.05) == 1
        done = await gpu_worker.get(on_gpu)
        assert (done.status, done.output, done.queue) == (RunStatus.SUCCEEDED, "drawn castle", "gpu")
        assert (await gpu_worker.get(plain)).status is RunStatus.PENDING  # not its queue

    async with Client(store_url, workflows=[wf]) as any_worker:  # no queues: every queue
        assert await any_worker.engine.work(until_idle=True, poll_seconds=0.05) == 1
        assert (await any_worker.get(plain)).status is RunStatus.SUCCEEDED


async def test_a_replay_stays_on_the_queue_of_the_run_it_replays(store_url: str) -> None:
    calls = {"n": 0}

    def draw(scene: str) -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of GPU memory")
        return f"drawn {scene}"

    wf = Workflow("render", [Step("draw", draw, retries=0)], version="1")
    async with Client(store_url, workflows=[wf]) as client:
        failed = await client.start(wf, "castle", queue="gpu")
        assert await client.engine.work(queues=["gpu"], until_idle=True, poll_seconds=0.05) == 1
        assert (await client.get(failed)).status is RunStatus.DEAD
        replay = await client.replay(failed, execute=False)
        assert replay.queue == "gpu" and replay.status is RunStatus.PENDING
        assert await client.engine.work(queues=["default"], until_idle=True, poll_seconds=0.05) == 0
        assert await client.engine.work(queues=["gpu"], until_idle=True, poll_seconds=0.05) == 1
        assert (await client.get(replay.run_id)).output == "drawn castle"


@pytest.mark.parametrize("name", ["gpu", "x" * 100, "a-b_c.d:e", "GPU-2"])
async def test_queue_names_of_letters_digits_and_separators_are_accepted(tmp_path: Path, name: str) -> None:
    wf = render_workflow()
    async with Client(f"sqlite:///{tmp_path / 'ok.db'}", workflows=[wf]) as client:
        assert (await client.get(await client.start(wf, "x", queue=name))).queue == name


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("", "''"),
        ("gpu 1", "'gpu 1'"),
        ("gpu/1", "'gpu/1'"),
        ("gpu\n", "'gpu\\n'"),
        ("ünï", "'ünï'"),
        ("x" * 101, "(101 characters)"),
        (None, "None"),
        (3, "3"),
    ],
)
async def test_a_bad_queue_name_is_refused_and_no_run_is_created(store_url: str, name: object, shown: str) -> None:
    wf = render_workflow()
    async with Client(store_url, workflows=[wf]) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.start(wf, "x", queue=name)  # type: ignore[arg-type]
        message = str(caught.value)
        assert message.startswith("invalid queue name ")
        assert shown in message
        assert "1 to 100 ASCII letters, digits, '-', '_', '.' or ':'" in message
        assert await client.list() == []


# the command line -----------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "queue_app.py"
    path.write_text(APP)
    return f"{path}:render"


def invoke(store: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, list(args), env={"ORCHESTRATE_STORE": store, "COLUMNS": "200"}, catch_exceptions=False
    )


def listed(store: str) -> list[dict[str, object]]:
    result = invoke(store, "runs", "list", "--json", "--full")
    assert result.exit_code == 0, result.output
    runs: list[dict[str, object]] = json.loads(result.stdout)
    return runs


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""


def test_detached_run_on_a_queue_is_shown_with_it_and_left_to_that_queues_workers(app: str, store_url: str) -> None:
    started = invoke(store_url, "run", app, "--input", '"castle"', "--detach", "--queue", "gpu")

    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip()
    assert [(r["run_id"], r["queue"], r["status"]) for r in listed(store_url)] == [(run_id, "gpu", "pending")]
    shown = invoke(store_url, "runs", "show", run_id)
    assert shown.exit_code == 0, shown.output
    assert [line for line in shown.stdout.splitlines() if " queue " in line and "gpu" in line]
    assert json.loads(invoke(store_url, "runs", "show", run_id, "--json").stdout)["run"]["queue"] == "gpu"

    cpu = invoke(store_url, "worker", "--app", app, "--queue", "cpu", "--until-idle", "--log-level", "error")
    assert cpu.exit_code == 0, cpu.output
    assert "driving 0 run(s)" in cpu.stderr
    assert listed(store_url)[0]["status"] == "pending"

    gpu = invoke(store_url, "worker", "--app", app, "--queue", "gpu", "--until-idle", "--log-level", "error")
    assert gpu.exit_code == 0, gpu.output
    assert "driving 1 run(s)" in gpu.stderr
    assert [(r["status"], r["output"], r["queue"]) for r in listed(store_url)] == [("succeeded", "drawn castle", "gpu")]


def test_a_run_in_the_default_queue_shows_no_queue_line(app: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id = invoke(store, "run", app, "--detach").stdout.strip()

    assert listed(store)[0]["queue"] == "default"
    shown = invoke(store, "runs", "show", run_id).stdout
    assert not [line for line in shown.splitlines() if " queue " in line]


@pytest.mark.parametrize("name", ["gpu 1", "", "x" * 101])
def test_run_detach_with_a_bad_queue_name_is_one_error_line(app: str, tmp_path: Path, name: str) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"

    result = invoke(store, "run", app, "--detach", "--queue", name)

    assert_one_line_error(result, "invalid queue name", "ASCII letters, digits")
    assert listed(store) == []


def test_queue_without_detach_is_a_usage_error(app: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"

    result = invoke(store, "run", app, "--queue", "gpu")

    assert_one_line_error(result, "--queue needs --detach")
    assert not (tmp_path / "runs.db").exists()  # refused before the store was touched
