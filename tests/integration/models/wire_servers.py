"""Loopback HTTP servers speaking three providers' wire formats, answering with a function.

Each server decodes a request, hands the JSON body to a *brain* (a function of the body
that says what the model does: text, tool calls, or both), and encodes the answer the
way its provider would: OpenAI chat completions (JSON or server-sent events), Anthropic
messages, Ollama ``/api/chat``. Every request is kept in ``requests`` so that tests count
what reached "the model". A brain may also hold a request (``Hold``) until released,
which is how a test kills a worker in the middle of a model call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Said:
    """What the scripted model says: text and tool calls (``[(name, arguments), ...]``)."""

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    input_tokens: int = 20
    output_tokens: int = 5
    hold: threading.Event | None = None  # wait for this before answering
    chunk_delay: float = 0.0  # between streamed chunks
    pieces: list[str] | None = None  # the chunks the text is streamed in (default: one word each)


Brain = Callable[[dict[str, Any]], Said]


class WireServer:
    """A threading HTTP server on a free loopback port; subclasses encode one wire format."""

    def __init__(self, brain: Brain) -> None:
        self.brain = brain
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        self.aborted = threading.Event()  # a client closed a stream before its end
        self.chunks_sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with server.arrived:
                    server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                    server.arrived.notify_all()
                said = server.brain(body)
                if said.hold is not None:
                    said.hold.wait(120)
                try:
                    if body.get("stream"):
                        server.stream(self, body, said)
                    else:
                        payload = json.dumps(server.encode(body, said)).encode()
                        self.send_response(200)
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    server.aborted.set()  # the client is gone (killed, cancelled)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WireServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        """Block until ``count`` requests have arrived."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {len(self.requests)} of {count} requests arrived")
                self.arrived.wait(left)

    def encode(self, body: dict[str, Any], said: Said) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], said: Said) -> None:
        raise NotImplementedError

    def pieces(self, said: Said) -> list[str]:
        """The text in the chunks it is streamed in: one word each unless the script says."""
        if said.pieces is not None:
            return said.pieces
        words = said.text.split(" ") if said.text else []
        return [word if i == 0 else " " + word for i, word in enumerate(words)]

    def send_event(self, handler: BaseHTTPRequestHandler, line: str, said: Said) -> None:
        """One event of a stream, after the scripted delay; a closed client raises BrokenPipeError."""
        if said.chunk_delay:
            time.sleep(said.chunk_delay)
        handler.wfile.write(line.encode())
        handler.wfile.flush()
        self.chunks_sent += 1


def start_events(handler: BaseHTTPRequestHandler, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("content-type", content_type)
    handler.send_header("connection", "close")
    handler.end_headers()
    handler.close_connection = True


class OpenAIWire(WireServer):
    """``POST /v1/chat/completions``, tool calls as ``message.tool_calls``; SSE when ``stream``."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def encode(self, body: dict[str, Any], said: Said) -> dict[str, Any]:
        calls = [
            {
                "id": f"call_{len(self.requests)}_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, (n, a) in enumerate(said.calls)
        ]
        message: dict[str, Any] = {"role": "assistant", "content": said.text or None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "wire"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {
                "prompt_tokens": said.input_tokens,
                "completion_tokens": said.output_tokens,
                "total_tokens": said.input_tokens + said.output_tokens,
            },
        }

    def stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], said: Said) -> None:
        start_events(handler, "text/event-stream")

        def send(data: dict[str, Any] | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            self.send_event(handler, f"data: {text}\n\n", said)

        base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "wire"}
        for token in self.pieces(said):
            send({**base, "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]})
        for i, (name, args) in enumerate(said.calls):
            text = json.dumps(args)
            half = len(text) // 2  # arguments arrive in fragments, as real servers send them
            first = {
                "index": i,
                "id": f"call_s_{i}",
                "type": "function",
                "function": {"name": name, "arguments": text[:half]},
            }
            send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [first]}, "finish_reason": None}]})
            rest = {"index": i, "function": {"arguments": text[half:]}}
            send({**base, "choices": [{"index": 0, "delta": {"tool_calls": [rest]}, "finish_reason": None}]})
        send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if said.calls else "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": said.input_tokens,
                "completion_tokens": said.output_tokens,
                "total_tokens": said.input_tokens + said.output_tokens,
            }
            send({**base, "choices": [], "usage": usage})
        send("[DONE]")


class AnthropicWire(WireServer):
    """``POST /v1/messages``, tool calls as ``tool_use`` content blocks."""

    def encode(self, body: dict[str, Any], said: Said) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": said.text}] if said.text else []
        content += [
            {"type": "tool_use", "id": f"toolu_{len(self.requests)}_{i}", "name": n, "input": a}
            for i, (n, a) in enumerate(said.calls)
        ]
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "wire"),
            "content": content,
            "stop_reason": "tool_use" if said.calls else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": said.input_tokens, "output_tokens": said.output_tokens},
        }

    def stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], said: Said) -> None:
        start_events(handler, "text/event-stream")

        def send(kind: str, data: dict[str, Any]) -> None:
            self.send_event(handler, f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n", said)

        message = {**self.encode(body, Said(input_tokens=said.input_tokens)), "content": [], "stop_reason": None}
        message["usage"] = {"input_tokens": said.input_tokens, "output_tokens": 1}
        send("message_start", {"message": message})
        index = 0
        if said.text:
            send("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            for piece in self.pieces(said):
                send("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            send("content_block_stop", {"index": 0})
            index = 1
        for i, (name, args) in enumerate(said.calls, start=index):
            block = {"type": "tool_use", "id": f"toolu_s_{i}", "name": name, "input": {}}
            send("content_block_start", {"index": i, "content_block": block})
            text = json.dumps(args)
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                send("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": part}})
            send("content_block_stop", {"index": i})
        delta = {"stop_reason": "tool_use" if said.calls else "end_turn", "stop_sequence": None}
        send("message_delta", {"delta": delta, "usage": {"output_tokens": said.output_tokens}})
        send("message_stop", {})


class OllamaWire(WireServer):
    """``POST /api/chat``, tool calls as ``message.tool_calls`` with object arguments; NDJSON when ``stream``."""

    def encode(self, body: dict[str, Any], said: Said) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": said.text}
        if said.calls:
            message["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in said.calls]
        return {
            "model": body.get("model", "wire"),
            "created_at": "2026-01-01T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": said.input_tokens,
            "eval_count": said.output_tokens,
        }

    def stream(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], said: Said) -> None:
        start_events(handler, "application/x-ndjson")
        model = body.get("model", "wire")

        def send(data: dict[str, Any]) -> None:
            self.send_event(handler, json.dumps(data) + "\n", said)

        stamp = "2026-01-01T00:00:00Z"
        for piece in self.pieces(said):
            send(
                {"model": model, "created_at": stamp, "message": {"role": "assistant", "content": piece}, "done": False}
            )
        if said.calls:
            calls = [{"function": {"name": n, "arguments": a}} for n, a in said.calls]
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            send({"model": model, "created_at": stamp, "message": message, "done": False})
        final = self.encode(body, said)
        final["message"] = {"role": "assistant", "content": ""}
        send(final)
