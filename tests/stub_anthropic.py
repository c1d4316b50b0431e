"""A stub of the Anthropic Messages API on loopback, for running the real claude-agent-sdk CLI offline.

It answers ``POST /v1/messages`` with the SSE event sequence the CLI expects, ``POST
/v1/messages/count_tokens`` with a fixed count, ``HEAD`` probes with 200 and everything else with 404
(stack-notes §2.6, §2.10). Replies are scripted: each request pops the next step, or asks ``script(body)``.

A step is ``("text", "Hello")``, ``("tool_use", "mcp__nc__send_message", {"text": "hi"})`` or ``("error", 401,
"authentication_error", "invalid x-api-key")`` (an Anthropic-shaped JSON error with that HTTP status, as the API
answers a rejected key). When the script runs out, the stub answers ``("text", "ok")``. Every POST is recorded (path, headers, JSON body) so tests
can assert on what reached the upstream, e.g. the injected API key; ``seen`` lists every request line of any
method (``("HEAD", "/api/hello")``), for asserting that nothing at all arrived.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Step = tuple


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StubAnthropic:
    """``with StubAnthropic() as stub: stub.url`` → ``http://127.0.0.1:<port>``."""

    steps: list[Step] = field(default_factory=list)
    script: Callable[[dict[str, Any]], Step] | None = None
    host: str = "127.0.0.1"
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 10, "output_tokens": 7})
    requests: list[Recorded] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    api_keys: set[str] = field(default_factory=set)
    """Credentials ``GET /v1/models`` accepts (``x-api-key`` or ``Authorization: Bearer``); others get 401."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((self.host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1/messages") and "count_tokens" not in r.path]

    def __enter__(self) -> "StubAnthropic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_step(self, body: dict[str, Any]) -> Step:
        with self._lock:
            if self.steps:
                return self.steps.pop(0)
        return self.script(body) if self.script else ("text", "ok")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def parse_request(self) -> bool:
                # Every method passes here, including those without a do_* handler (answered 501).
                parsed = super().parse_request()
                if parsed:
                    stub.seen.append((self.command, self.path))
                return parsed

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    stub.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, {}))
                    given = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
                    if given in stub.api_keys:
                        return self._reply_json(200, {"data": [{"type": "model", "id": "claude-sonnet-4-5"}], "has_more": False})
                    return self._reply_json(401, {"type": "error", "error": {"type": "authentication_error",
                                                                             "message": "invalid x-api-key"}})
                self._reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.loads(raw or b"{}")
                stub.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path.startswith("/v1/messages/count_tokens"):
                    return self._reply_json(200, {"input_tokens": 42})
                if not self.path.startswith("/v1/messages"):
                    return self._reply_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                step = stub.next_step(body)
                if step[0] == "error":
                    _, status, kind, message = step
                    return self._reply_json(status, {"type": "error", "error": {"type": kind, "message": message}})
                self._stream(body, step)

            def _reply_json(self, status: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sse(self, event: str, data: dict[str, Any]) -> None:
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

            def _stream(self, body: dict[str, Any], step: Step) -> None:
                kind, *rest = step
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                self._sse("message_start", {"type": "message_start", "message": {
                    "id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
                    "model": body.get("model"), "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": dict(stub.usage)}})
                if kind == "tool_use":
                    name, args = rest
                    self._sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                        "type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:20], "name": name, "input": {}}})
                    self._sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                        "type": "input_json_delta", "partial_json": json.dumps(args)}})
                    stop = "tool_use"
                else:
                    self._sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}})
                    self._sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": rest[0]}})
                    stop = "end_turn"
                self._sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                self._sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                            "usage": {"output_tokens": stub.usage.get("output_tokens", 7)}})
                self._sse("message_stop", {"type": "message_stop"})
                self.close_connection = True

        return Handler
