"""``orchestrate serve`` as a real process, called over HTTP; ``orchestrate tokens``; the refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

APP = textwrap.dedent(
    """
    from orchestrate import Step, Workflow
    from orchestrate.review import HumanReviewGate

    def draft(text):
        return {"text": "draft for " + str(text)}

    def send(reply):
        return {"sent": reply["text"]}

    reply = Workflow("reply", [Step("draft", draft, gate=HumanReviewGate(roles=["editor"])), Step("send", send)])
    """
)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ORCHESTRATE_STORE": ""},
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, limit: float = 60) -> object:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def test_serve_answers_over_http_and_drives_runs_to_the_end(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    made = [
        _cli(tmp_path, "tokens", "create", "--name", who, "--role", role, "--store", url)
        for who, role in (("ada", "operator"), ("eve", "editor"))
    ]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    operator, editor = (m.stdout.strip() for m in made)
    assert operator.startswith("orc_") and "not shown again" in made[0].stderr
    listed = _cli(tmp_path, "tokens", "list", "--store", url, "--json")
    assert operator not in listed.stdout and '"name": "ada"' in listed.stdout

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrate.cli", "serve", "app.py:reply", "--store", url, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False

        _wait(up, "the server to answer")
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/api/v1/runs").status_code == 401
            ops = {"Authorization": f"Bearer {operator}"}
            run = http.post("/api/v1/runs", json={"workflow": "reply", "input": "hi"}, headers=ops).json()
            run_id = run["run_id"]

            def parked() -> str | None:
                items = http.get("/api/v1/reviews", params={"run_id": run_id}, headers=ops).json()["items"]
                return items[0]["review_id"] if items else None

            review_id = _wait(parked, "the run to park at its gate")
            refused = http.post(f"/api/v1/reviews/{review_id}/approve", headers=ops)
            assert refused.status_code == 403
            approved = http.post(f"/api/v1/reviews/{review_id}/approve", headers={"Authorization": f"Bearer {editor}"})
            assert approved.status_code == 200, approved.text

            def finished() -> dict[str, object] | None:
                view = http.get(f"/api/v1/runs/{run_id}", headers=ops).json()
                return view if view["status"] == "succeeded" else None

            view = _wait(finished, "the run to finish")
            assert view["output"] == {"sent": "draft for hi"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # reads and closes the pipes
    assert "serving reply" in err
    revoked = _cli(tmp_path, "tokens", "revoke", "nope", "--store", url)
    assert revoked.returncode == 2 and "no token 'nope'" in revoked.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--no-auth"], "--no-auth serves anyone who can reach 0.0.0.0"),
        (["--host", "0.0.0.0"], "name the host names clients use with --allowed-host"),
    ],
)
def test_serve_refuses_an_open_address_without_auth_or_host_names(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = _cli(tmp_path, "serve", "--store", f"sqlite:///{tmp_path / 'x.db'}", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


HOOKS = textwrap.dedent(
    """
    from orchestrate import Step, Workflow
    from orchestrate.triggers import Schedule, WebhookTrigger

    def shout(event):
        return {"loud": str(event["text"]).upper()}

    alerts = Workflow("alerts", [Step("shout", shout)])
    HOOKS = [
        WebhookTrigger("pager", workflow=alerts, secret="s3cret-s3cret-s3cret"),
        Schedule("nightly", workflow=alerts, cron="0 3 * * *"),
    ]
    """
)


def test_serve_mounts_the_webhook_triggers_it_is_given(tmp_path: Path) -> None:
    from orchestrate.triggers import WebhookTrigger

    (tmp_path / "hooks.py").write_text(HOOKS)
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    made = _cli(tmp_path, "tokens", "create", "--name", "ada", "--role", "viewer", "--store", url)
    assert made.returncode == 0, made.stderr
    viewer = {"Authorization": f"Bearer {made.stdout.strip()}"}
    port = _free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "orchestrate.cli", "serve"),
            *("--triggers", "hooks.py:HOOKS", "--store", url, "--port", str(port)),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    signer = WebhookTrigger("pager", workflow="alerts", secret="s3cret-s3cret-s3cret")
    body = b'{"text": "disk full"}'
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return False

        _wait(up, "the server to answer")
        with httpx.Client(base_url=base, timeout=10) as http:
            forged = http.post("/hooks/pager", content=body, headers={"Idempotency-Key": "k1"})
            assert forged.status_code == 401
            signed = signer.headers(body, key="alert-1", timestamp=time.time())
            created = http.post("/hooks/pager", content=body, headers=signed)
            assert created.status_code == 202, created.text
            run_id = created.json()["run_id"]
            again = http.post("/hooks/pager", content=body, headers=signed)
            assert (again.status_code, again.json()["run_id"]) == (200, run_id)

            def finished() -> dict[str, object] | None:
                view = http.get(f"/api/v1/runs/{run_id}", headers=viewer).json()
                return view if view.get("status") == "succeeded" else None

            view = _wait(finished, "the webhook's run to finish")
            assert view["output"] == {"loud": "DISK FULL"}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "webhook pager: POST /hooks/pager" in err
    assert "not served here: nightly" in err
