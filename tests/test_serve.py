"""`tunelab serve` with the real SmolLM2-135M-Instruct, and the LLM judge end to end against it.

The server runs as a real subprocess (`python -m tunelab serve smollm2-135m --port 0`), started once for
the module; tests talk to it over HTTP. A 135M judge is a poor judge (it rarely writes a verdict), so the
judge test asserts what the code guarantees, not what the judge prefers: every differing pair asked in
both orders, the replies recorded, n and an interval with the win rate, the warehouse rows, and a second
run answered from the cache with not one request reaching the server (the server's own count, /health).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tunelab.modeling.config import SMOLLM_MODEL
from tunelab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
READY = re.compile(r"^serving (\S+) at (http://127\.0\.0\.1:(\d+)/v1)$")


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def post(self, body: bytes | dict, path: str = "/chat/completions") -> tuple[int, dict]:
        import httpx2

        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx2.post(self.url + path, content=data, timeout=120)
        return response.status_code, response.json()

    def get(self, path: str) -> dict:
        import httpx2

        return httpx2.get(self.url + path, timeout=10).json()

    def health(self) -> dict:
        import httpx2

        return httpx2.get(self.url.removesuffix("/v1") + "/health", timeout=10).json()

    def chat_requests(self) -> int:
        return self.health()["requests"]["chat_completions"]


@pytest.fixture(scope="module")
def served(smollm_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunelab", "serve", SMOLLM_MODEL, "--workspace", str(smollm_workspace.root),
             "--port", "0", "--max-batch", "4"],
            stdout=subprocess.DEVNULL, stderr=err, env=ENV, cwd=REPO,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            found = [m for m in map(READY.match, log.read_text().splitlines()) if m]
            if found:
                break
            assert proc.poll() is None, f"tunelab serve exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"tunelab serve never got ready:\n{log.read_text()}"
            time.sleep(0.2)
        assert found[0].group(1) == SMOLLM_MODEL
        yield Served(proc, found[0].group(2), log)
    finally:
        proc.terminate()  # SIGTERM: the server closes its port and exits 0
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.realmodel
def test_chat_completion_through_the_chat_template(served: Served) -> None:
    status, body = served.post(
        {"model": SMOLLM_MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}],
         "max_tokens": 16, "temperature": 0}
    )  # fmt: skip
    assert status == 200, body
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and body["model"] == SMOLLM_MODEL
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["index"] == 0
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    # SmolLM2's template adds its default system turn: far more prompt tokens than the question's 7
    assert usage["prompt_tokens"] > 20 and 1 <= usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert [m["id"] for m in served.get("/models")["data"]] == [SMOLLM_MODEL]


@pytest.mark.realmodel
def test_bad_requests_get_an_error_object_never_a_traceback(served: Served) -> None:
    hello = [{"role": "user", "content": "hi"}]
    cases = [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value", "messages.0.role"),
        ({"messages": []}, 400, "invalid_value", "messages"),
        ({"messages": hello, "temperature": 5}, 400, "invalid_value", "temperature"),
        ({"messages": hello, "max_tokens": "many"}, 400, "invalid_value", "max_tokens"),
        ({"messages": hello, "n": 2}, 400, "unsupported", "n"),
        ({"messages": hello, "stream": True}, 400, "unsupported", "stream"),
        ({"messages": hello, "max_tokens": 9000}, 400, "context_length_exceeded", "messages"),
        ({"model": "gpt-4o", "messages": hello}, 404, "model_not_found", "model"),
    ]
    before = served.health()["generation"]["completions"]
    for body, status, code, param in cases:
        got, error = served.post(body)
        assert got == status, (body, error)
        assert set(error) == {"error"} and error["error"]["code"] == code, (body, error)
        assert error["error"]["param"] == param and error["error"]["message"], (body, error)
    assert served.health()["generation"]["completions"] == before  # none of them reached the model
    assert "Traceback" not in served.log.read_text()


# a short pairwise template a 135M model can read (a user's own template, as `rubric:` allows)
SHORT_TEMPLATE = (
    "Question: {{question}}\nA: {{answer_a}}\nB: {{answer_b}}\nWhich answer is correct? Reply [[A]] or [[B]]."
)
PAIRS = [  # (prompt, sft answer, base answer); the last pair is the same answer: decided without a call
    ("What is the capital of France?", "The capital of France is Paris.", "It is London."),
    ("How many legs does a spider have?", "Eight.", "A spider has six legs."),
    ("What color is a clear daytime sky?", "Green.", "Blue."),
    ("What is 10 times 10?", "100", "1000"),
    ("Which animal says moo?", "A cow.", "A cow."),
]


@pytest.mark.realmodel
def test_score_judge_end_to_end_against_the_served_model(served: Served, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse import store

    rows = [
        {"model": model, "sample_id": f"q{i}", "prompt": q, "reference": "", "prediction": answer}
        for i, (q, sft, base) in enumerate(PAIRS)
        for model, answer in (("base", base), ("sft", sft))
    ]
    predictions = tmp_path / "predictions.jsonl"
    pl.DataFrame(rows).write_ndjson(predictions)
    (tmp_path / "short.txt").write_text(SHORT_TEMPLATE, encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: {path: predictions.jsonl, name: preds}\nevaluate:\n  judge:\n"
        f"    endpoint: {served.url}\n    model: {SMOLLM_MODEL}\n    rubric: short.txt\n"
        "    max_tokens: 8\n    temperature: 0\n    max_concurrency: 4\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    args = ["score", str(predictions), "-w", str(ws), "--metric", "judge", "--recipe", str(recipe),
            "--format", "json"]  # fmt: skip

    before = served.chat_requests()
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    record = json.loads(first.stdout)
    asked = len(PAIRS) - 1  # the same-answer pair is a tie without a call
    # every differing pair asked in both orders: 2 calls each, all answered by the served model
    assert served.chat_requests() - before == 2 * asked
    assert record["judge"]["calls"] == {"total": 2 * asked, "cached": 0, "asked": 2 * asked, "failed": 0,
                                        "no_content": 0}  # fmt: skip
    judge = record["judge"]
    assert judge["judge"] == SMOLLM_MODEL and judge["template"] == "short.txt"
    assert judge["signature"].startswith(f"judge:{SMOLLM_MODEL}|endpoint:127.0.0.1:")

    # the warehouse: one judgment per prompt, each verdict a known one, the replies of both orders kept
    db = ws / "tunelab.duckdb"
    stored = store.query(
        db, "select * from judgments where eval_id = ? order by sample_id", [record["eval_id"]]
    )
    assert (
        stored.height == len(PAIRS)
        and set(stored["model"]) == {"sft"}
        and set(stored["opponent"]) == {"base"}
    )
    assert set(stored["verdict"]) <= {"win", "loss", "tie", "unparsed"}
    same = stored.filter(pl.col("sample_id") == f"q{len(PAIRS) - 1}").row(0, named=True)
    assert (same["verdict"], same["score"]) == ("tie", 0.5) and "not sent to the judge" in same["reason"]
    replies = [
        json.loads(p.read_text(encoding="utf-8"))["content"] for p in (ws / "cache" / "judge").rglob("*.json")
    ]
    assert len(replies) == 2 * asked
    judged = stored.filter(pl.col("sample_id") != f"q{len(PAIRS) - 1}")
    for row in judged.iter_rows(named=True):
        assert row["reason"].startswith("[A=sft, B=base] ") and "\n\n[A=base, B=sft] " in row["reason"]
        # parsed verdicts say whether the two orders agreed; unparsed ones have no score
        assert (row["consistent"] is None) == (row["verdict"] == "unparsed") == (row["score"] is None)
    reasons = "\n".join(judged["reason"])
    assert all(reply.strip() in reasons for reply in replies)  # the raw replies are recorded

    # the win rate with n and an interval, in the printed summary and in eval_deltas
    (pair,) = judge["pairs"]
    assert (pair["model"], pair["baseline"]) == ("sft", "base")
    assert pair["n"] + pair["unparsed"] == len(PAIRS) and pair["n"] >= 1
    assert pair["wins"] + pair["ties"] + pair["losses"] == pair["n"]
    assert pair["ci_low"] <= pair["win_rate"] <= pair["ci_high"]
    deltas = store.query(
        db, "select * from eval_deltas where eval_id = ? and metric = 'judge_win_rate'", [record["eval_id"]]
    )
    assert deltas.height == 1 and deltas["n"][0] == pair["n"]
    assert deltas["delta"][0] == pytest.approx(pair["win_rate"])
    assert deltas["ci_low"][0] <= deltas["delta"][0] <= deltas["ci_high"][0]

    # the same run again: all from the judge cache, not one request reaches the server
    before = served.chat_requests()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)
    assert served.chat_requests() == before
    assert again["judge"]["calls"]["cached"] == 2 * asked and again["judge"]["calls"]["asked"] == 0
    restored = store.query(db, "select sample_id, verdict, reason from judgments where eval_id = ? order by sample_id",
                           [again["eval_id"]])  # fmt: skip
    assert restored.equals(stored.select("sample_id", "verdict", "reason"))


def test_a_hub_name_that_is_not_local_fails_at_once_in_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab", "serve", "no-such-org/no-such-model", "--port", "0", "-w", str(tmp_path)],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: serve: MODEL 'no-such-org/no-such-model' is not a folder"
    )
    assert "does not download" in lines[0] and time.monotonic() - started < 60


@pytest.mark.realmodel
def test_an_adapter_is_loaded_with_peft_and_must_match_model(
    smollm_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel, get_peft_model

    from tunelab.errors import UserError
    from tunelab.modeling.config import LoraSettings, ModelSettings
    from tunelab.modeling.loading import (
        checkpointing_alias_ignored,
        load_base_model,
        load_tokenizer,
        lora_config,
    )
    from tunelab.serve.api import parse_chat_request
    from tunelab.serve.engine import Engine, load_served_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # load_served_model sets it; restored after the test
    base_dir = str(smollm_workspace.model_dir(SMOLLM_MODEL))
    base = load_base_model(
        base_dir, ModelSettings(base_model=base_dir, quantization="none"), for_training=False
    )
    with checkpointing_alias_ignored():  # a fresh LoRA (B = 0) answers as the base does
        fresh = get_peft_model(base, lora_config(LoraSettings(r=4)))
    adapter = tmp_path / "adapter"
    fresh.save_pretrained(adapter)
    # as training writes it (train/runs.py): the tokenizer beside the adapter, which evaluation loads from there
    load_tokenizer(base_dir, ModelSettings(base_model=base_dir)).save_pretrained(adapter)
    del base, fresh

    model, tokenizer = load_served_model(SMOLLM_MODEL, str(adapter), smollm_workspace)
    # loaded with peft, then merged into the full-precision base (modeling.resolve): a plain model, no LoRA layers
    assert not isinstance(model, PeftModel) and not model.training
    assert not any("lora_" in name for name, _ in model.named_parameters())
    engine = Engine(model, tokenizer)
    try:
        body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12,
                "temperature": 0}  # fmt: skip
        assert "Paris" in engine.complete(parse_chat_request(json.dumps(body).encode())).text
    finally:
        engine.close()
    with pytest.raises(UserError, match=r"^--adapter: .* was trained on .*, not on "):
        load_served_model(
            str(tmp_path), str(adapter), smollm_workspace
        )  # another base: refused before loading
    with pytest.raises(UserError, match=r"^--adapter: .* has no adapter_config.json"):
        load_served_model(SMOLLM_MODEL, str(tmp_path), smollm_workspace)
    with pytest.raises(UserError, match=r"^--adapter: 'run-nope' is neither an adapter folder nor a run id"):
        load_served_model(SMOLLM_MODEL, "run-nope", smollm_workspace)
