"""Which HTTP failures the judge retries, over a real HTTP server on 127.0.0.1 (a thread of this test).

Transient ones (408, 429, 500, 502, 503, 504) are asked again; 501/505 say the server does not do this at
all and stop the run at once with one line, like 401/403/404; any other 4xx is the request's own fault and
fails that call at once, without a retry, while the other calls go on and are cached.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from tunelab.errors import UserError
from tunelab.evaluate.config import JudgeSettings
from tunelab.evaluate.judge import CallFailed, JudgeCallsFailed, JudgeClient, run_judge
from tunelab.workspace import Workspace


class StatusServer:
    """Answers each chat request with the status named in its prompt ("@status=501"), once per prompt
    when the marker is "@once=503" (then 200), and counts the requests per prompt."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with lock:
                    outer.seen[prompt] = outer.seen.get(prompt, 0) + 1
                    n = outer.seen[prompt]
                status = 200
                for word in prompt.split():
                    if word.startswith("@status="):
                        status = int(word.split("=")[1])
                    elif word.startswith("@once=") and n == 1:
                        status = int(word.split("=")[1])
                if status != 200:
                    self._send(status, {"error": {"message": f"status {status} as asked"}})
                else:
                    message = {"role": "assistant", "content": "[[A]]"}
                    self._send(200, {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[StatusServer]:
    running = StatusServer()
    yield running
    running.close()


def client(server: StatusServer, **changes: object) -> JudgeClient:
    settings = JudgeSettings(
        **{"endpoint": server.endpoint, "model": "m", "max_retries": 3, "max_concurrency": 1, **changes}
    )
    return JudgeClient(settings, backoff_s=0.01, max_wait_s=0.05)


@pytest.mark.parametrize("status", [501, 505])
def test_not_implemented_stops_at_once_with_one_line(server: StatusServer, status: int) -> None:
    judge = client(server)
    with pytest.raises(UserError) as refused:
        judge.complete(f"question @status={status}")
    message = str(refused.value)
    assert "\n" not in message and f"answered HTTP {status} (" in message and "for model 'm'" in message
    assert server.seen == {f"question @status={status}": 1}  # asked once: no retry


@pytest.mark.parametrize("status", [400, 413, 422])
def test_another_4xx_fails_its_call_without_a_retry(server: StatusServer, status: int) -> None:
    with pytest.raises(CallFailed, match=f"^HTTP {status}: "):
        client(server).complete(f"question @status={status}")
    assert server.seen == {f"question @status={status}": 1}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(server: StatusServer, status: int) -> None:
    assert client(server).complete(f"question @once={status}") == "[[A]]"
    assert server.seen == {f"question @once={status}": 2}


def test_a_refused_prompt_fails_alone_and_the_rest_are_cached(server: StatusServer, tmp_path: Path) -> None:
    predictions = pl.DataFrame(
        [
            {"model": m, "sample_id": s, "prompt": p, "reference": "", "prediction": f"{m} {s}"}
            for s, p in (("s0", "fine"), ("s1", "too long @status=400"), ("s2", "fine too"))
            for m in ("base", "sft")
        ]
    )
    settings = JudgeSettings(endpoint=server.endpoint, model="m", max_retries=3, max_concurrency=1)
    workspace = Workspace(tmp_path / "ws")

    def fast(s: JudgeSettings) -> JudgeClient:
        return JudgeClient(s, backoff_s=0.01, max_wait_s=0.05)

    with pytest.raises(JudgeCallsFailed) as failed:
        run_judge(predictions, settings, workspace, client_factory=fast)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("judge: 2 of 6 calls to ")
    assert "HTTP 400: " in message and "the 4 answered are cached" in message
    # each of the 6 prompts (3 pairs, both orders) asked exactly once: the two refused ones were not retried
    assert sorted(server.seen.values()) == [1] * 6
    assert len(list(workspace.judge_cache.rglob("*.json"))) == 4
