"""The HTTP side of `tunelab serve`: the standard library's ThreadingHTTPServer, one thread per connection,
all of them handing generation to the one engine worker.

Routes: `GET /v1/models` (and `/v1/models/<id>`), `POST /v1/chat/completions`, `GET /health` (the counts a
caller or a test reads: requests, completions, errors, generation time). Every answer is JSON with a
Content-Length (HTTP/1.1 keep-alive, which the judge's client uses); every failure is an OpenAI-style
`{"error": {...}}` object, never a traceback. One access line per request goes to stderr.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tunelab.serve.api import (
    ApiError,
    completion_body,
    model_body,
    models_body,
    parse_chat_request,
)

MAX_BODY_BYTES = 16 * 2**20  # a judge prompt is a few kB; anything this large is a mistake

if TYPE_CHECKING:
    from tunelab.serve.engine import Engine


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values = {"chat_completions": 0, "ok": 0, "client_errors": 0, "server_errors": 0}

    def add(self, status: int | None = None) -> None:
        with self.lock:
            if status is None:
                self.values["chat_completions"] += 1
            elif status < 400:
                self.values["ok"] += 1
            elif status < 500:
                self.values["client_errors"] += 1
            else:
                self.values["server_errors"] += 1


class ChatServer(ThreadingHTTPServer):
    """Serves one engine under one model id."""

    daemon_threads = True  # a connection left open by a client never blocks shutdown

    def __init__(
        self, address: tuple[str, int], engine: Engine | None, model_id: str, quiet: bool = False
    ) -> None:
        super().__init__(address, _Handler)
        self.engine, self.model_id, self.quiet = engine, model_id, quiet
        self.created = int(time.time())
        self.counts = _Counts()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def health(self) -> dict[str, Any]:
        with self.counts.lock:
            counts = dict(self.counts.values)
        return {
            "status": "ok",
            "model": self.model_id,
            "requests": counts,  # chat_completions: every POST to /v1/chat/completions, answered or not
            "generation": self.engine.stats.as_dict() if self.engine is not None else {},
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChatServer
    server_version = "tunelab-serve"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one access line of our own per request (below) instead of http.server's

    def _send(self, status: int, payload: dict[str, Any], started: float) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.server.counts.add(status)
        if not self.server.quiet:
            usage = payload.get("usage")
            tokens = f" {usage['prompt_tokens']}+{usage['completion_tokens']} tokens" if usage else ""
            sys.stderr.write(
                f"{self.command} {urlsplit(self.path).path} {status} {time.perf_counter() - started:.2f}s{tokens}\n"
            )
            sys.stderr.flush()

    def _error(self, error: ApiError, started: float) -> None:
        self._send(error.status, error.body(), started)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        started = time.perf_counter()
        path = urlsplit(self.path).path.rstrip("/")
        model_id = self.server.model_id
        if path in ("/v1/models", "/models"):
            self._send(200, models_body(model_id, self.server.created), started)
        elif path in (f"/v1/models/{model_id}", f"/models/{model_id}"):
            self._send(200, model_body(model_id, self.server.created), started)
        elif path.startswith(("/v1/models/", "/models/")):
            self._error(_no_such_model(path.rsplit("/", 1)[-1]), started)
        elif path == "/health":
            self._send(200, self.server.health(), started)
        else:
            self._error(ApiError(404, f"no route GET {path or '/'}", code="not_found"), started)

    def do_POST(self) -> None:  # noqa: N802
        started = time.perf_counter()
        path = urlsplit(self.path).path.rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._drain()
            self._error(ApiError(404, f"no route POST {path or '/'}", code="not_found"), started)
            return
        self.server.counts.add()
        try:
            request = parse_chat_request(self._body())
            if request.model is not None and request.model != self.server.model_id:
                raise _no_such_model(request.model)
            assert self.server.engine is not None  # requests are accepted only once it is loaded
            completion = self.server.engine.complete(request)
        except ApiError as exc:
            self._error(exc, started)
            return
        except Exception as exc:  # noqa: BLE001 - the client gets a 500 object, the log one line
            message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            sys.stderr.write(f"error: generation failed: {message}\n")
            self._error(ApiError(500, f"generation failed: {message}", kind="server_error"), started)
            return
        self._send(200, completion_body(self.server.model_id, completion), started)

    def _length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "Content-Length: not a number", code="invalid_request") from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes", code="body_too_large")
        return length

    def _body(self) -> bytes:
        return self.rfile.read(self._length())

    def _drain(self) -> None:
        try:
            self._body()
        except ApiError:
            pass


def _no_such_model(name: str) -> ApiError:
    # vLLM and the OpenAI API answer an unknown model with 404 (the judge stops at once on it)
    return ApiError(404, f"The model `{name}` does not exist.", param="model", code="model_not_found")
