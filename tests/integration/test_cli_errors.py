"""Bad input and stores that cannot work: one line, exit 2, at once, and nothing written.

Each case a user hits — an input file that is not UTF-8, JSON nested 100,000 deep, a lone
surrogate, a store directory that cannot be created, a read-only SQLite file, every way a
PostgreSQL URL can be wrong, another application's SQLite file, a file another process is
writing — prints exactly one ``error:`` line that names the problem and the fix, exits
with 2, shows no traceback, and returns within seconds (a store error that retrying cannot
fix is not retried). Commands that only read never write: no table, no migration, no
journal-mode change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrate import Client, Step, Workflow
from orchestrate.cli import cli
from orchestrate.store import SCHEMA_VERSION
from orchestrate.store import _sql as shared_sql

APP = """
from orchestrate import Step, Workflow


def echo(value):
    return value


flow = Workflow("flow", [Step("echo", echo)], version="1")
"""

PG = os.environ.get("ORCHESTRATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/orchestrate_test")


def echo(value: object) -> object:
    return value


flow = Workflow("flow", [Step("echo", echo)], version="1")


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return f"{path}:flow"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'orchestrate.db'}"


def invoke(*args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result, time.monotonic() - started


def assert_one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""
    return lines[0]


def _fingerprint(path: Path) -> tuple[str, list[str]]:
    """The file's bytes (hashed) and its tables, read without changing it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = sorted(row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()
    return digest, tables


# bad input ------------------------------------------------------------------------------------


def test_an_input_file_that_is_not_utf8(app: str, store: str, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_bytes(b'{"name": "Ren\xe9"}')  # Latin-1
    result, _ = invoke("run", app, "--input", f"@{tmp_path / 'input.json'}", "--store", store)
    assert_one_line_error(result, "is not UTF-8 text", "byte 0xe9 at offset 13", "convert it")


def test_json_nested_100_000_deep(app: str, store: str, tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result, _ = invoke("run", app, "--input", f"@{tmp_path / 'deep.json'}", "--store", store)
    assert_one_line_error(result, "too deeply", "256 levels", "flatten it")


def test_json_nested_past_the_stores_depth_is_refused_by_the_codec(app: str, store: str) -> None:
    result, _ = invoke("run", app, "--input", "[" * 300 + "]" * 300, "--store", store)
    assert_one_line_error(result, "256")


@pytest.mark.parametrize("text", ['"\\ud800"', '{"a": ["ok", "x\\udfff"]}', '{"\\udbff": 1}'])
def test_a_lone_surrogate_in_the_input(app: str, store: str, text: str) -> None:
    result, _ = invoke("run", app, "--input", text, "--store", store)
    assert_one_line_error(result, "lone surrogate", "fix the \\uXXXX escape")
    assert not Path(store.removeprefix("sqlite:///")).exists()  # refused before anything was opened


def test_a_stored_lone_surrogate_does_not_break_the_listing(store: str) -> None:
    async def plant() -> str:
        async with Client(store, workflows=[flow]) as client:
            await client.run(flow, {"text": "fine"})
            return (await client.run(flow, {"text": "bad \ud800 value"})).run_id

    bad = asyncio.run(plant())
    listed, _ = invoke("runs", "list", "--json", "--full", "--store", store)
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)
    assert len(runs) == 2
    assert {r["run_id"]: r["input"]["text"] for r in runs}[bad] == "bad \ud800 value"  # the JSON escape reads back
    table, _ = invoke("runs", "list", "--store", store)
    assert table.exit_code == 0 and "succeeded" in table.stdout
    shown, _ = invoke("runs", "show", bad, "--store", store)
    assert shown.exit_code == 0 and "\\ud800" in shown.stdout


# SQLite stores --------------------------------------------------------------------------------


def test_a_store_directory_that_cannot_be_created(app: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    result, _ = invoke("run", app, "--store", f"sqlite:///{tmp_path / 'afile' / 'sub' / 'o.db'}")
    assert_one_line_error(result, "cannot create the directory", "Not a directory", "point the store URL")


def test_a_read_only_sqlite_file_fails_at_once_naming_the_permissions(app: str, store: str, tmp_path: Path) -> None:
    created, _ = invoke("run", app, "--input", "1", "--store", store)
    assert created.exit_code == 0, created.output
    path = tmp_path / "orchestrate.db"
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (and root writes a file whatever its mode)")
    try:
        result, took = invoke("run", app, "--input", "2", "--store", store)
        listed, _ = invoke("runs", "list", "--store", store)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert_one_line_error(result, "attempt to write a readonly database", "fix the permissions")
    assert took < 5, f"took {took:.1f}s: a permanent error was retried"
    assert listed.exit_code == 0 and "succeeded" in listed.stdout  # reading it still works


@pytest.mark.parametrize("command", [["runs", "list"], ["runs", "show", "abc"], ["dlq", "list"], ["reviews", "list"]])
def test_a_read_command_leaves_another_applications_database_alone(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = _fingerprint(path)
    result, _ = invoke(*command, "--store", f"sqlite:///{path}")
    assert_one_line_error(result, "another application", "nothing was changed", "check the store URL")
    assert _fingerprint(path) == before  # no table, no migration, no WAL switch


def test_a_writing_command_leaves_another_applications_database_alone_too(app: str, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    sqlite3.connect(path).execute("CREATE TABLE users (id INTEGER PRIMARY KEY)").connection.commit()
    before = _fingerprint(path)
    result, _ = invoke("run", app, "--store", f"sqlite:///{path}")
    assert_one_line_error(result, "another application")
    assert _fingerprint(path) == before


def test_reads_do_not_wait_for_another_processs_write(app: str, store: str, tmp_path: Path) -> None:
    created, _ = invoke("run", app, "--input", "1", "--store", store)
    assert created.exit_code == 0, created.output
    writer = sqlite3.connect(tmp_path / "orchestrate.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("INSERT INTO orchestrate_cache (key, value, stored_at) VALUES ('k', '1', 1)")
    try:
        listed, took = invoke("runs", "list", "--store", store)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert listed.exit_code == 0 and "succeeded" in listed.stdout, listed.output
    assert took < 5, f"a read waited {took:.1f}s for the writer"


def test_a_read_command_refuses_an_older_schema_and_migrate_upgrades_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(shared_sql.META_DDL)
    for statement in shared_sql.MIGRATIONS[0][1]:
        conn.execute(statement.format(real="REAL", serial="INTEGER"))
    conn.execute("INSERT INTO orchestrate_meta VALUES ('schema_version', '1')")
    conn.commit()
    conn.close()
    before = _fingerprint(path)
    url = f"sqlite:///{path}"
    result, _ = invoke("runs", "list", "--store", url)
    assert_one_line_error(result, "schema version 1, older", "orchestrate migrate --store")
    assert _fingerprint(path) == before
    migrated, _ = invoke("migrate", "--store", url)
    assert migrated.exit_code == 0, migrated.output
    assert f"schema version {SCHEMA_VERSION}" in migrated.stdout
    listed, _ = invoke("runs", "list", "--store", url)
    assert listed.exit_code == 0, listed.output


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for(
    store: str, app: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created, _ = invoke("run", app, "--store", store)
    assert created.exit_code == 0

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(Client, "list", broken)
    result, _ = invoke("runs", "list", "--store", store)
    assert_one_line_error(result, "unexpected RuntimeError: the disk caught fire", "ORCHESTRATE_TRACEBACK=1")
    monkeypatch.setenv("ORCHESTRATE_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="caught fire"):
        invoke("runs", "list", "--store", store)


# PostgreSQL stores ----------------------------------------------------------------------------


def _pg(
    path: str = "/orchestrate_test", *, user: str = "postgres", host: str = "127.0.0.1:5432", query: str = ""
) -> str:
    """A URL of the local test server with one part wrong."""
    return f"postgresql://{user}@{host}{path}{query}"


@pytest.mark.parametrize(
    ("url", "reason", "fix"),
    [
        (_pg("/no_such_db_7c1"), 'database "no_such_db_7c1" does not exist', "create the database"),
        (_pg(user="no_such_role_7c1"), 'role "no_such_role_7c1" does not exist', "put an existing user"),
        (_pg(host="no-such-host.invalid:5432"), "no-such-host.invalid", "check the host name"),
        (_pg(host="127.0.0.1:1"), "Connection refused", "check the host and port"),
        (_pg(query="?sslmode=bogus"), 'invalid sslmode value: "bogus"', "check sslmode"),
        (_pg(query="?sslmode=require"), "server does not support SSL", "check sslmode"),
        (_pg(query="?nonsense_option=1"), "nonsense_option", "fix the URL"),
    ],
)
def test_every_postgres_misconfiguration_fails_in_seconds_with_the_servers_reason(
    url: str, reason: str, fix: str
) -> None:
    for command in (["runs", "list"], ["migrate"]):
        result, took = invoke(*command, "--store", url)
        assert_one_line_error(result, reason, fix)
        assert took < 10, f"{command} took {took:.1f}s"


def test_a_read_command_on_a_postgres_schema_without_orchestrate_creates_nothing() -> None:
    import psycopg

    schema = f"t_empty_{os.getpid()}"
    result, _ = invoke("runs", "list", "--store", f"{PG}?schema={schema}")
    assert_one_line_error(result, "no orchestrate tables", f"schema {schema}", "creates nothing")
    with psycopg.connect(PG, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()
    assert found == []  # not even the schema


def test_the_worker_fails_at_once_on_a_refused_store(tmp_path: Path, app: str) -> None:
    started = time.monotonic()
    ran = subprocess.run(
        [sys.executable, "-m", "orchestrate.cli", "worker", "--app", app, "--store", _pg(host="127.0.0.1:1")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2, ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Connection refused" in errors[0] and "Traceback" not in ran.stderr
    assert time.monotonic() - started < 10
