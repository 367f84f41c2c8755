"""The ``orchestrate`` command line, driven through click's runner and one real subprocess.

Workflows live in small files written to ``tmp_path``; every store is a SQLite file in
``tmp_path``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from orchestrate import Client, RunDetail, RunStatus, StepStatus
from orchestrate.cli import cli, render_timeline
from orchestrate.cli._common import setup_logging
from orchestrate.cli.loading import load_workflow
from orchestrate.store.base import Event, RunRecord, StepRecord

APP = """
from orchestrate import Fallback, FixedRetry, Step, Workflow, workflow

lookups = {"n": 0}


def classify(message):
    return {"intent": "order_status", "message": message}


def lookup(data):
    lookups["n"] += 1
    if lookups["n"] < 3:
        raise TimeoutError("carrier API timed out")
    return {**data, "order": 4829}


def track(data):
    raise ConnectionError("tracking service down")


def reply(data):
    return f"order {data['order']}: ETA {data['eta']}"


def merge_eta(data):
    return data


support = Workflow(
    "support",
    [
        Step("classify", classify),
        Step("lookup", lookup, retry=FixedRetry(3, delay=0.01)),
        Step("track", lambda data: {**data, "eta": track(data)},
             fallback=Fallback.call(lambda data: {**data, "eta": "unknown"}, flag="human_review")),
        Step("reply", reply),
    ],
    version="1",
)


def prepare(order):
    return order


def charge(amount):
    CHARGE_BODY


billing = Workflow(
    "billing",
    [Step("prepare", prepare), Step("charge", charge, retry=FixedRetry(2, delay=0.01))],
    version="1",
)


@workflow(version="1")
async def approval(ctx, doc):
    draft = await ctx.step(classify, doc)
    decision = await ctx.wait("approve")
    return {"draft": draft, "decision": decision}


not_a_workflow = 42
"""

BROKEN_CHARGE = 'raise ValueError("card declined")'
FIXED_CHARGE = 'return {"charged": amount}'


def write_app(path: Path, charge: str = BROKEN_CHARGE) -> Path:
    path.write_text(APP.replace("CHARGE_BODY", charge))
    return path


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_app(tmp_path / "cli_app.py")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture(autouse=True)
def _quiet_logs():
    yield
    setup_logging("warning")  # undo any --log-level a test passed


def invoke(store: str, *args: str) -> Result:
    """Run the CLI in-process with the store given through $ORCHESTRATE_STORE."""
    runner = CliRunner()
    return runner.invoke(cli, list(args), env={"ORCHESTRATE_STORE": store, "COLUMNS": "200"}, catch_exceptions=False)


def create_store(store: str) -> None:
    """Create the (empty) database, as the first `orchestrate run` or worker on it does."""

    async def go() -> None:
        async with Client(store):
            pass

    asyncio.run(go())


def detail(store: str, run_id: str) -> dict:
    result = invoke(store, "runs", "show", run_id, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_ids(store: str, *args: str) -> list[str]:
    result = invoke(store, "runs", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [r["run_id"] for r in json.loads(result.stdout)]


def line_of(text: str, *needles: str) -> str:
    """The one line of ``text`` holding every needle."""
    found = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert len(found) == 1, f"{needles} in:\n{text}"
    return found[0]


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""


# run ------------------------------------------------------------------------------------------


def test_run_succeeds_and_prints_the_timeline(app: Path, store: str) -> None:
    result = invoke(store, "run", f"{app}:support", "--input", '"where is my order?"')

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "support" in out and "succeeded" in out
    assert '"order 4829: ETA unknown"' in out  # the output
    for key in ("classify", "lookup", "track", "reply"):
        assert line_of(out, key, "succeeded")
    (run_id,) = run_ids(store)
    assert run_id in out


def test_run_records_its_target_as_a_hint(app: Path, store: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke(store, "run", "cli_app.py:support", "--input", '"hi"').exit_code == 0

    (run_id,) = run_ids(store)
    run = detail(store, run_id)["run"]
    assert run["options"]["target"] == f"{app}:support"
    assert run["input"] == "hi"
    assert run["status"] == "succeeded"


def test_run_takes_the_input_from_a_file_and_the_id_from_the_caller(app: Path, store: str, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"order": 1}')
    result = invoke(store, "run", f"{app}:billing", "--input", f"@{tmp_path / 'input.json'}", "--run-id", "bill-1")

    assert result.exit_code == 1  # charge always fails: the run is dead
    assert detail(store, "bill-1")["run"]["input"] == {"order": 1}


def test_run_with_log_level_info_writes_json_logs_to_stderr(app: Path, store: str) -> None:
    quiet = invoke(store, "run", f"{app}:support", "--input", '"a"')
    loud = invoke(store, "run", f"{app}:support", "--input", '"b"', "--log-level", "info")

    assert "step_succeeded" not in quiet.stderr
    events = [json.loads(line)["event"] for line in loud.stderr.splitlines()]
    assert "step_succeeded" in events and "run_succeeded" in events
    assert "step_succeeded" not in loud.stdout  # the timeline stays on stdout, alone


def test_detached_run_is_finished_by_a_worker_until_idle(app: Path, store: str) -> None:
    started = invoke(store, "run", f"{app}:support", "--detach", "--input", '"later"')

    assert started.exit_code == 0, started.output
    run_id = started.stdout.strip()
    assert len(started.stdout.splitlines()) == 1 and run_ids(store) == [run_id]
    assert detail(store, run_id)["run"]["status"] == "pending"

    worked = invoke(store, "worker", "--app", f"{app}:support", "--until-idle", "--log-level", "error")

    assert worked.exit_code == 0, worked.output
    assert "driving 1 run(s)" in worked.stderr
    finished = detail(store, run_id)
    assert finished["run"]["status"] == "succeeded"
    assert finished["run"]["output"] == "order 4829: ETA unknown"
    assert "claimed" in invoke(store, "runs", "show", run_id).stdout


def test_worker_leaves_runs_of_other_workflows_alone(app: Path, store: str) -> None:
    run_id = invoke(store, "run", f"{app}:approval", "--detach").stdout.strip()

    worked = invoke(store, "worker", "--app", f"{app}:support", "--until-idle")

    assert worked.exit_code == 0
    assert detail(store, run_id)["run"]["status"] == "pending"


# runs list / show / cancel --------------------------------------------------------------------


def test_runs_list_shows_and_filters_runs(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:support", "--input", '"a"', "--run-id", "ok-run")
    invoke(store, "run", f"{app}:billing", "--input", "3", "--run-id", "dead-run")

    table = invoke(store, "runs", "list")
    assert table.exit_code == 0
    assert line_of(table.stdout, "ok-run", "support", "succeeded")
    assert line_of(table.stdout, "dead-run", "billing", "dead", "card declined")

    assert run_ids(store, "--status", "dead") == ["dead-run"]
    assert run_ids(store, "--status", "dead,succeeded") == ["dead-run", "ok-run"]  # newest first
    assert run_ids(store, "--workflow", "support") == ["ok-run"]
    assert run_ids(store, "--limit", "1") == ["dead-run"]
    assert "no runs match" in invoke(store, "runs", "list", "--status", "waiting").stdout


def test_runs_show_makes_retries_and_fallbacks_visible(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:support", "--input", '"a"', "--run-id", "r1")

    out = invoke(store, "runs", "show", "r1").stdout

    lookup = line_of(out, "lookup", "succeeded")
    assert " 3 " in lookup  # three attempts
    assert "failed attempts: TimeoutError x2" in lookup
    assert "✕" in lookup  # the retries are marked on the bar
    track = line_of(out, "track", "succeeded")
    assert "fallback call:" in track and "after ConnectionError" in track
    assert "flag human_review" in out
    assert line_of(out, "retry", "lookup", "attempt 1 failed: TimeoutError: carrier API timed out")
    assert line_of(out, "retry", "lookup", "attempt 2 failed")
    assert line_of(out, "fallback", "track", "took call:", "flag human_review")
    # Steps come in the order they ran.
    assert out.index("classify") < out.index("lookup") < out.index(" track ") < out.index("reply")


def test_runs_show_json_has_the_run_steps_and_events(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:support", "--input", '"a"', "--run-id", "r1")

    shown = detail(store, "r1")

    assert [s["step_key"] for s in shown["steps"]] == ["classify", "lookup", "track", "reply"]
    assert [e["kind"] for e in shown["events"]].count("step_retry") == 2
    assert shown["steps"][2]["meta"]["flag"] == "human_review"


def test_runs_cancel_cancels_a_pending_run_once(app: Path, store: str) -> None:
    run_id = invoke(store, "run", f"{app}:support", "--detach").stdout.strip()

    cancelled = invoke(store, "runs", "cancel", run_id, "--reason", "duplicate")

    assert cancelled.exit_code == 0
    assert "cancelled" in cancelled.stdout
    assert detail(store, run_id)["run"]["status"] == "cancelled"
    assert_one_line_error(invoke(store, "runs", "cancel", run_id), "already cancelled")


# dead-letter queue ----------------------------------------------------------------------------


def test_dead_run_goes_to_the_dlq_and_replays_after_the_fix(app: Path, store: str) -> None:
    failed = invoke(store, "run", f"{app}:billing", "--input", '{"amount": 5}', "--run-id", "bill")
    assert failed.exit_code == 1
    assert "dead" in failed.stdout and f"dlq replay bill --from-step charge --app {app}:billing" in failed.stdout

    listed = invoke(store, "dlq", "list")
    assert line_of(listed.stdout, "bill", "billing", "charge: ValueError: card declined")
    shown = invoke(store, "dlq", "show", "bill")
    assert line_of(shown.stdout, "charge", "failed ", "failed attempts: ValueError x2; ValueError: card declined")
    assert "at step 'charge' after 2 attempt(s)" in shown.stdout

    again = ("dlq", "replay", "bill", "--from-step", "charge", "--input", '{"amount": 7}', "--app", f"{app}:billing")
    still_broken = invoke(store, *again)
    assert still_broken.exit_code == 1

    write_app(app, FIXED_CHARGE)
    replayed = invoke(store, *again)

    assert replayed.exit_code == 0, replayed.output
    assert "replay of run bill is run" in replayed.stdout
    assert line_of(replayed.stdout, "prepare", "reused from run bill")
    (new_id,) = run_ids(store, "--status", "succeeded")
    assert new_id in replayed.stdout
    replay = detail(store, new_id)["run"]
    assert replay["output"] == {"charged": 7}  # the override reached charge(amount)
    assert replay["parent_run_id"] == "bill"
    assert replay["options"]["target"] == f"{app}:billing"
    # A replayed dead run leaves the queue; the replay that failed before the fix is dead
    # itself and stays there. The original's history names both replays.
    dead = [r["run_id"] for r in json.loads(invoke(store, "dlq", "list", "--json").stdout)]
    assert "bill" not in dead and len(dead) == 1
    (failed_replay,) = dead
    assert detail(store, failed_replay)["run"]["parent_run_id"] == "bill"
    history = invoke(store, "dlq", "show", "bill").stdout
    assert line_of(history, "replayed", f"as run {failed_replay} from step 'charge'")
    assert line_of(history, "replayed", f"as run {new_id} from step 'charge'")


def test_dlq_replay_of_a_run_started_from_python_takes_the_app(app: Path, store: str) -> None:
    wf = load_workflow(f"{app}:billing")

    async def start_outside_the_cli() -> str:
        async with Client(store, workflows=[wf]) as client:
            record = await client.run(wf, {"amount": 1}, run_id="direct")
            return record.run_id

    asyncio.run(start_outside_the_cli())
    assert_one_line_error(
        invoke(store, "dlq", "replay", "direct"),
        "run direct needs workflow 'billing' version '1': pass --app path/to/file.py:NAME",
    )

    fixed = write_app(app.with_name("fixed_app.py"), FIXED_CHARGE)
    replayed = invoke(store, "dlq", "replay", "direct", "--app", f"{fixed}:billing")

    assert replayed.exit_code == 0, replayed.output


def test_dlq_list_is_empty_without_dead_runs(app: Path, store: str) -> None:
    assert invoke(store, "run", f"{app}:support").exit_code == 0

    result = invoke(store, "dlq", "list")
    assert result.exit_code == 0
    assert "empty" in result.stdout


# signals --------------------------------------------------------------------------------------


def test_signal_resumes_a_waiting_run(app: Path, store: str) -> None:
    waiting = invoke(store, "run", f"{app}:approval", "--input", '"draft"', "--run-id", "ask")
    assert waiting.exit_code == 3
    assert "waiting" in waiting.stdout and "orchestrate signal ask approve" in waiting.stdout
    assert run_ids(store, "--status", "waiting") == ["ask"]

    sent = invoke(store, "signal", "ask", "approve", "--value", '{"ok": true}', "--by", "alice")
    assert sent.exit_code == 0, sent.output
    resumed = invoke(store, "runs", "resume", "ask", "--app", f"{app}:approval")

    assert resumed.exit_code == 0, resumed.output
    assert line_of(resumed.stdout, "wait:approve", 'signal {"ok": true} by alice')
    assert line_of(resumed.stdout, "signal", "delivered by alice")
    assert detail(store, "ask")["run"]["output"]["decision"] == {"ok": True}
    assert_one_line_error(invoke(store, "signal", "ask", "approve", "--value", "1"), "no more signals")


def test_signal_with_resume_and_a_worker_both_finish_waiting_runs(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:approval", "--input", '"a"', "--run-id", "one")
    invoke(store, "run", f"{app}:approval", "--input", '"b"', "--run-id", "two")

    inline = invoke(store, "signal", "one", "approve", "--value", "true", "--resume", "--app", f"{app}:approval")
    assert inline.exit_code == 0, inline.output
    assert detail(store, "one")["run"]["status"] == "succeeded"

    assert invoke(store, "signal", "two", "approve", "--value", "false").exit_code == 0
    assert detail(store, "two")["run"]["status"] == "waiting"  # nobody drove it yet
    assert invoke(store, "worker", "--app", f"{app}:approval", "--until-idle").exit_code == 0
    assert detail(store, "two")["run"]["output"]["decision"] is False


# errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["run", "{app}:support", "--input", "[1, 2"], ["--input", "not valid JSON"]),
        (["run", "{app}:support", "--input", "@{tmp}/missing.json"], ["--input", "cannot read"]),
        (["run", "{tmp}/missing.py:support"], ["no such file", "missing.py"]),
        (["run", "{app}:nope"], ["no attribute 'nope'", "approval, billing, support"]),
        (["run", "{app}:not_a_workflow"], ["is an int", "not a Workflow"]),
        (["run", "{app}:classify"], ["is a function", "not a Workflow"]),
        (["run", "{app}"], ["must look like"]),
        (["run", "no_such_module_xyz:flow"], ["no module named 'no_such_module_xyz'"]),
        (["run", "{broken}:flow"], ["SyntaxError", "line 2"]),
        (["run", "{app}:support", "--store", "bogus://x"], ["unknown store URL"]),
        (["runs", "show", "nope"], ["run 'nope' does not exist"]),
        (["runs", "cancel", "nope"], ["run 'nope' does not exist"]),
        (["runs", "resume", "nope"], ["run 'nope' does not exist"]),
        (["signal", "nope", "approve", "--value", "1"], ["run 'nope' does not exist"]),
        (["dlq", "show", "nope"], ["run 'nope' does not exist"]),
        (["dlq", "replay", "nope"], ["run 'nope' does not exist"]),
        (["runs", "list", "--status", "sleeping"], ["unknown run status 'sleeping'"]),
        (["runs", "list", "--limit", "0"], ["--limit"]),
        (["run"], ["Missing argument 'TARGET'"]),
        (["worker", "--until-idle"], ["Missing option '--app'"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_every_error_is_one_line_and_exit_code_2(
    args: list[str], needles: list[str], app: Path, store: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ny = (\n")
    filled = [a.format(app=app, tmp=tmp_path, broken=broken) for a in args]
    create_store(store)  # an unknown run in an existing store, not a missing store

    assert_one_line_error(invoke(store, *filled), *needles)


# a store that does not exist -------------------------------------------------------------------

ONLY_ON_AN_EXISTING_STORE = [
    ["runs", "list"],
    ["runs", "list", "--json"],
    ["runs", "show", "r1"],
    ["runs", "cancel", "r1"],
    ["runs", "resume", "r1"],
    ["signal", "r1", "approve", "--value", "1"],
    ["dlq", "list"],
    ["dlq", "show", "r1"],
    ["dlq", "replay", "r1"],
    ["reviews", "list"],
    ["reviews", "show", "rv-1"],
    ["reviews", "stats"],
    ["reviews", "approve", "rv-1"],
    ["reviews", "reject", "rv-1", "--reason", "no"],
    ["reviews", "edit", "rv-1", "--payload", "{}"],
]


@pytest.mark.parametrize("args", ONLY_ON_AN_EXISTING_STORE, ids=" ".join)
def test_a_mistyped_store_is_one_error_line_and_nothing_is_created(args: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "runs.db"

    result = invoke(f"sqlite:///{missing}", *args)

    assert_one_line_error(result, f"no orchestrate database at '{missing}'", "--store", "ORCHESTRATE_STORE")
    assert not missing.parent.exists()


def test_a_mistyped_store_option_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "runs.db"

    result = invoke(f"sqlite:///{tmp_path / 'other.db'}", "runs", "list", "--store", f"sqlite:///{missing}")

    assert_one_line_error(result, repr(str(missing)))
    assert list(tmp_path.iterdir()) == []


def test_run_and_worker_create_a_new_store_and_read_commands_then_work(app: Path, tmp_path: Path) -> None:
    made_by_run = tmp_path / "new" / "runs.db"
    store = f"sqlite:///{made_by_run}"

    assert invoke(store, "run", f"{app}:support", "--run-id", "r1").exit_code == 0

    assert made_by_run.exists()
    assert run_ids(store) == ["r1"]
    for args in (["runs", "show", "r1"], ["dlq", "list"], ["reviews", "list"], ["reviews", "stats"]):
        result = invoke(store, *args)
        assert result.exit_code == 0, (args, result.output)
    made_by_worker = tmp_path / "worker" / "runs.db"
    worker = invoke(f"sqlite:///{made_by_worker}", "worker", "--app", f"{app}:support", "--until-idle")
    assert worker.exit_code == 0, worker.output
    assert made_by_worker.exists()
    assert run_ids(f"sqlite:///{made_by_worker}") == []


def test_state_errors_are_one_line_and_exit_code_2(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:support", "--run-id", "done")

    assert_one_line_error(invoke(store, "runs", "resume", "done"), "already ended (succeeded)")
    assert_one_line_error(invoke(store, "dlq", "show", "done"), "not in the dead-letter queue")
    assert_one_line_error(invoke(store, "runs", "resume", "done", "--app", f"{app}:billing"), "already ended")


def test_resume_with_a_workflow_of_another_name_is_refused(app: Path, store: str) -> None:
    invoke(store, "run", f"{app}:approval", "--run-id", "w")

    assert_one_line_error(invoke(store, "runs", "resume", "w", "--app", f"{app}:support"), "belongs to 'approval'")


def test_help_lists_every_command(store: str) -> None:
    result = invoke(store, "--help")
    assert result.exit_code == 0
    for command in ("run", "runs", "dlq", "signal", "worker"):
        assert f"  {command} " in result.stdout
    assert invoke(store, "runs").exit_code == 0
    assert "replay" in invoke(store, "dlq").stdout


# render_timeline (the README's demo calls it) -------------------------------------------------


def test_render_timeline_prints_a_run_detail_to_any_console(app: Path, store: str) -> None:
    wf = load_workflow(f"{app}:support")

    async def run_one():
        async with Client(store, workflows=[wf]) as client:
            record = await client.run(wf, "[red]hello[/red]")
            return await client.detail(record.run_id)

    run_detail = asyncio.run(run_one())
    buffer = io.StringIO()
    render_timeline(run_detail, Console(file=buffer, width=160))
    text = buffer.getvalue()

    assert run_detail.run.status is RunStatus.SUCCEEDED
    assert run_detail.run.run_id in text
    assert line_of(text, "lookup", "succeeded", "TimeoutError x2")
    assert '"[red]hello[/red]"' in line_of(text, "input")  # values are printed, not read as markup


def test_render_timeline_tells_a_resume_after_a_crash_from_a_wake_up() -> None:
    run = RunRecord(
        run_id="r", workflow="wf", version="1", status=RunStatus.SUCCEEDED, created_at=100.0, updated_at=104.0, output=1
    )
    steps = [
        StepRecord(
            run_id="r",
            step_key="a",
            name="a",
            status=StepStatus.SUCCEEDED,
            output=1,
            started_at=100.5,
            finished_at=101.0,
        )
    ]
    events = [
        Event(run_id="r", kind="run_created", at=100.0, data={"claimed": True}),
        Event(
            run_id="r", kind="run_resumed", at=102.0, data={"replayed_steps": 1, "fence": 2}
        ),  # no park before: a crash
        Event(run_id="r", kind="run_waiting", at=102.5, data={"reason": "signal:go"}),
        Event(run_id="r", kind="run_resumed", at=103.0, data={"replayed_steps": 1, "fence": 3}),
        Event(run_id="r", kind="run_succeeded", at=104.0),
    ]
    buffer = io.StringIO()
    render_timeline(RunDetail(run, steps, events), Console(file=buffer, width=160))
    text = buffer.getvalue()

    assert line_of(text, "+2.00s", "resumed after crash", "replayed 1 recorded step(s)")
    assert line_of(text, "+3.00s", "woke up")
    assert line_of(text, "+500ms", " a ", "succeeded", "500ms")


# the installed entry point --------------------------------------------------------------------


def _entry_point() -> str:
    found = shutil.which("orchestrate", path=os.path.dirname(sys.executable)) or shutil.which("orchestrate")
    if found is None:
        pytest.fail("the `orchestrate` command is not installed: pip install -e .")
    return found


def test_installed_command_runs_a_workflow_and_a_worker_stops_on_sigterm(app: Path, store: str) -> None:
    command = _entry_point()
    env = {**os.environ, "ORCHESTRATE_STORE": store}

    ran = subprocess.run(
        [command, "run", f"{app}:support", "--input", '"hi"'], capture_output=True, text=True, env=env, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert "succeeded" in ran.stdout

    bad = subprocess.run(
        [command, "run", f"{app}:support", "--input", "{"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("error: ")

    run_id = subprocess.run(
        [command, "run", f"{app}:support", "--detach"], capture_output=True, text=True, env=env, timeout=120, check=True
    ).stdout.strip()
    worker = subprocess.Popen(
        [command, "worker", "--app", f"{app}:support", "--poll", "0.05"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while detail(store, run_id)["run"]["status"] != "succeeded":
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker never finished the run"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert "SIGTERM" in err and "driving 1 run(s)" in err
