"""A deterministic OpenAI-compatible judge for tests/test_judge.py: a real HTTP server process whose
verdicts are read from markers in the rendered prompt, so parsing and the position swap can be asserted
exactly (the tiny model's replies are nonsense).

Pairwise prompts (they contain "[[A]]"): the answers carry @good / @same / @bad; the first marker is
answer A's, the second answer B's; the better one wins, equal ones tie ([[C]]). "@biased" anywhere:
always [[A]] (a position-biased judge). Rubric prompts: "@scoreN" -> "점수: N". "@garbage": a reply with
no verdict; "@nocontent": a response without message text.

Every chat request is appended to --log as one JSON line (status, model, prompt, authorization), so a
test counts calls on the server side, across restarts. --fail-first N answers 503 to the first N chat
requests; --die-after N exits the process right after answering the N-th; --key K requires
`Authorization: Bearer K` (401 otherwise); model "missing-model" gets 404, as vLLM answers an unknown one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANK = {"good": 2, "same": 1, "bad": 0}


def reply_for(prompt: str) -> str | None:
    if "@nocontent" in prompt:
        return None
    if "@garbage" in prompt:
        return "잘 모르겠다. 둘 다 그럴듯하다."
    if "[[A]]" in prompt:
        if "@biased" in prompt:
            return "첫 번째 답변이 더 낫다.\n[[A]]"
        marks = re.findall(r"@(good|same|bad)", prompt)
        a, b = RANK[marks[0]], RANK[marks[1]]
        verdict = "A" if a > b else "B" if b > a else "C"
        return f"두 답변을 비교했다.\n[[{verdict}]]"
    found = re.search(r"@score(\d+)", prompt)
    return f"평가: 답변을 살펴보았다.\n점수: {found.group(1) if found else 5}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--key", default=None)
    args = parser.parse_args()
    lock = threading.Lock()
    state = {"requests": 0, "answered": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "canned-judge", "object": "model"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            prompt = body["messages"][-1]["content"]
            auth = self.headers.get("Authorization")
            with lock:
                state["requests"] += 1
                n = state["requests"]
            if n <= args.fail_first:
                status, payload = 503, {"error": {"message": "busy, try again"}}
            elif args.key is not None and auth != f"Bearer {args.key}":
                status, payload = 401, {"error": {"message": "invalid api key"}}
            elif body.get("model") == "missing-model":
                status, payload = 404, {"error": {"message": "The model `missing-model` does not exist."}}
            else:
                status = 200
                payload = {
                    "id": f"cmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply_for(prompt)}}],
                }  # fmt: skip
            with lock, open(args.log, "a", encoding="utf-8") as log:
                record = {"status": status, "model": body.get("model"), "prompt": prompt, "auth": auth,
                          "pid": os.getpid()}  # fmt: skip
                log.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._send(status, payload)
            if status == 200:
                with lock:
                    state["answered"] += 1
                    if args.die_after and state["answered"] >= args.die_after:
                        os._exit(0)  # stopped mid-run: no goodbye, like a crashed or restarted server

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
