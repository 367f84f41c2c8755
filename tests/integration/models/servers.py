"""Real HTTP servers on loopback for the model integration tests.

* :class:`FaultServer` — a stdlib HTTP server that answers each request with the next
  scripted response: any status and headers, a delay, a body cut short, or a body that
  lies about its length. It speaks just enough of the OpenAI API shape to be a target
  for the OpenAI-compatible provider.
* :class:`LlamaServer` — ``python -m llama_cpp.server`` (llama-cpp-python's
  OpenAI-compatible server, not written by this project) serving the packaged Gemma GGUF.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat_completion(text: str = "ok", *, finish_reason: str = "stop", model: str = "fault-model") -> dict[str, Any]:
    """A well-formed OpenAI chat completion body."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }


@dataclass
class Scripted:
    """One scripted answer.

    Args:
        status: HTTP status.
        body: a dict (sent as JSON), a string or bytes.
        headers: extra headers.
        delay: seconds to wait before answering.
        declared_length: a Content-Length larger than the body (the connection then
            closes: a truncated response).
    """

    status: int = 200
    body: Any = field(default_factory=chat_completion)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    declared_length: int | None = None

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class FaultServer:
    """Answers each request with the next :class:`Scripted` response (or a default 200)."""

    def __init__(self) -> None:
        self.script: collections.deque[Scripted] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"null")}
                    )
                    answer = server.script.popleft() if server.script else Scripted()
                if answer.delay:
                    time.sleep(answer.delay)
                payload = answer.payload()
                try:
                    self.send_response(answer.status)
                    headers = {"content-type": "application/json", **answer.headers}
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", str(answer.declared_length or len(payload)))
                    if answer.declared_length:
                        self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                if answer.declared_length:
                    self.close_connection = True

            do_GET = do_POST  # noqa: N815 - the name http.server looks up

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-server", daemon=True)

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self, *answers: Scripted) -> None:
        with self._lock:
            self.script.clear()
            self.script.extend(answers)
            self.requests.clear()


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, serving one GGUF."""

    def __init__(
        self, model_path: Path, *, alias: str = "gemma-3-270m", n_ctx: int = 2048, chat_format: str | None = None
    ) -> None:
        self.model_path = model_path
        self.alias = alias
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop(); a pipe could fill up and block
        self._args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model_path),
            "--model_alias", alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(n_ctx),
            "--n_threads", str(max(1, min(4, (os.cpu_count() or 2) // 2))),
            "--seed", "0",
            "--verbose", "False",
            *(["--chat_format", chat_format] if chat_format else []),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 120.0) -> LlamaServer:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(self._args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def output(self) -> str:
        """What the server printed so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")
