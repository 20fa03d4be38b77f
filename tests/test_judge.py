"""The LLM judge end to end over real HTTP servers started here on 127.0.0.1.

- `transformers serve` with the offline tiny model: the real OpenAI-compatible server a user could point
  the judge at. Its replies are nonsense, so the test asserts the plumbing: every call answered, both
  presentation orders requested, replies recorded (parsed or `unparsed`), a second run asks nothing.
- tests/judge_canned_server.py: a deterministic server process (verdicts from markers in the prompt), so
  parsing, the position swap, consistency, retries on 503 and on a server stopped mid-run, the failure
  line and the cache are asserted exactly. Calls are counted on the server side (its request log).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tunelab.errors import UserError
from tunelab.evaluate.config import EvaluateConfig, JudgeSettings
from tunelab.evaluate.judge import (
    JudgeCallsFailed,
    JudgeClient,
    chat_url,
    load_template,
    parse_pairwise,
    parse_rubric,
    run_judge,
)
from tunelab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
CANNED = Path(__file__).with_name("judge_canned_server.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Canned:
    """tests/judge_canned_server.py as a process; its request log survives restarts."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / f"requests-{self.port}.jsonl"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, *args: str) -> Canned:
        cmd = [sys.executable, str(CANNED), "--port", str(self.port), "--log", str(self.log), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def requests(self) -> list[dict]:
        if not self.log.is_file():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[Canned]:
    server = Canned(tmp_path)
    yield server
    server.stop()


def settings(endpoint: str, **changes: object) -> JudgeSettings:
    return JudgeSettings(**{"endpoint": endpoint, "model": "canned-judge", "max_concurrency": 4, **changes})


def fast(settings: JudgeSettings) -> JudgeClient:
    """The real client with a short backoff, so retry tests take a second, not half a minute."""
    return JudgeClient(settings, backoff_s=0.05, max_wait_s=0.5)


def frame(rows: list[tuple[str, str, str, str]]) -> pl.DataFrame:
    """(model, sample_id, prompt, prediction) -> a predictions frame."""
    return pl.DataFrame(
        [
            {"model": m, "sample_id": s, "prompt": p, "reference": "참고 답변", "prediction": a}
            for m, s, p, a in rows
        ]
    )


# three models on four prompts: markers decide the canned judge's verdicts (see its docstring)
PAIRWISE = frame([
    ("base", "s0", "질문 0", "base 답 @bad"), ("sft", "s0", "질문 0", "sft 답 @good"), ("dpo", "s0", "질문 0", "dpo 답 @good"),
    ("base", "s1", "질문 1", "base 답 @same"), ("sft", "s1", "질문 1", "sft 답 @same"), ("dpo", "s1", "질문 1", "dpo 답 @bad"),
    ("base", "s2", "질문 2 @biased", "base 답 @same"), ("sft", "s2", "질문 2 @biased", "sft 답 @same"),
    ("dpo", "s2", "질문 2 @biased", "dpo 답 @same"),
    ("base", "s3", "질문 3", ""), ("sft", "s3", "질문 3", "sft 답 @good"), ("dpo", "s3", "질문 3", "dpo 답 @garbage"),
])  # fmt: skip


# ------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A가 더 자세하다.\n[[A]]", "A"),
        ("[[B]]", "B"),
        ("비슷하다. [[C]]", "tie"),
        ("[[ tie ]]", "tie"),
        ("처음엔 [[A]]라고 봤지만 다시 보니\n[[B]]", "B"),  # the last verdict counts
        ("<think>[[A]]일까?</think>최종: [[B]]", "B"),  # a reasoning model's thoughts are not the verdict
        ("<think>[[A]] 아직 생각 중", None),  # cut off while thinking
        ("판정: A", "A"),
        (
            "A가 더 낫다면 [[A]], B가 더 낫다면 [[B]], 우열을 가리기 어렵다면 [[C]]",
            None,
        ),  # the options echoed
        ("A가 더 낫다면 [[A]], B가 더 낫다면 [[B]]\n설명.\n[[B]]", "B"),
        ("Verdict: tie", "tie"),
        ("A와 B 모두 좋다", None),
        ("[[D]]", None),
        ("", None),
        (None, None),
    ],
)
def test_pairwise_replies_are_parsed_or_refused(reply: str | None, verdict: str | None) -> None:
    assert parse_pairwise(reply) == verdict


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("평가: 좋다.\n점수: 7", 7.0),
        ("평가: 좋다.\n점수: 8/10", 8.0),
        ("점수는 9점입니다", 9.0),
        ("**점수:** 6", 6.0),
        ("Evaluation: fine.\nScore: 10", 10.0),
        ("Rating: [[4]]", 4.0),
        ("점수: 3 ... 다시 보니\n점수: 5", 5.0),
        ("점수: 11", None),  # off the scale: no score, not a clipped one
        ("점수: 0", None),
        ("훌륭한 답변", None),
        ("<think>점수: 2</think>", None),
    ],
)
def test_rubric_replies_are_parsed_or_refused(reply: str, score: float | None) -> None:
    value, reason = parse_rubric(reply)
    assert value == score
    assert isinstance(reason, str)


def test_rubric_reason_is_the_judges_evaluation() -> None:
    assert parse_rubric("평가: 질문의 요구를 모두 다뤘다.\n점수: 8") == (8.0, "질문의 요구를 모두 다뤘다.")


def test_templates_are_checked_and_inserted_text_is_never_substituted(tmp_path: Path) -> None:
    shipped = load_template(JudgeSettings(endpoint="http://x/v1", model="m", mode="rubric"))
    assert shipped.name == "rubric.ko" and len(shipped.sha) == 12
    rendered = load_template(JudgeSettings(endpoint="http://x/v1", model="m")).render(
        {"question": "Q {{answer_b}}", "reference": "R", "answer_a": "A {{question}}", "answer_b": "B"}
    )
    assert "Q {{answer_b}}" in rendered and "A {{question}}" in rendered  # untrusted text stays text
    bad = tmp_path / "judge.txt"
    bad.write_text("질문: {{question}} 답: {{answer}}", encoding="utf-8")
    with pytest.raises(UserError, match=r"needs \{\{answer_a\}\}, \{\{answer_b\}\}"):
        load_template(JudgeSettings(endpoint="http://x/v1", model="m", rubric=str(bad)))
    bad.write_text("{{question}} {{answer}} {{answr}}", encoding="utf-8")
    with pytest.raises(UserError, match=r"unknown placeholder \{\{answr\}\}"):
        load_template(JudgeSettings(endpoint="http://x/v1", model="m", mode="rubric", rubric=str(bad)))
    with pytest.raises(UserError, match="shipped: pairwise.en, pairwise.ko, rubric.en, rubric.ko"):
        load_template(JudgeSettings(endpoint="http://x/v1", model="m", rubric="nope"))


def test_recipe_block_and_endpoint_forms() -> None:
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert (
        chat_url("https://api.openai.com/v1/chat/completions") == "https://api.openai.com/v1/chat/completions"
    )
    with pytest.raises(ValueError, match="judge needs an evaluate.judge block"):
        EvaluateConfig(metrics=["rouge", "judge"])
    with pytest.raises(ValueError, match="http:// or https://"):
        JudgeSettings(endpoint="127.0.0.1:8000", model="m")


# ------------------------------------------------------------------------------------------- canned server


def test_pairwise_both_orders_consistency_win_rates_and_the_cache(canned: Canned, tmp_path: Path) -> None:
    canned.start()
    workspace = Workspace(tmp_path / "ws")
    judge = settings(canned.endpoint)
    outcome = run_judge(PAIRWISE, judge, workspace, client_factory=fast)

    # every judged pair was asked in both orders: the model's answer first once, second once
    requests = canned.requests()
    assert len(requests) == 20 and all(r["status"] == 200 for r in requests)  # 3 + 3 + 4 prompts, x2
    for model, baseline, sid in [("sft", "base", "s0"), ("dpo", "sft", "s1"), ("dpo", "base", "s2")]:
        mine = PAIRWISE.filter((pl.col("model") == model) & (pl.col("sample_id") == sid))["prediction"][0]
        theirs = PAIRWISE.filter((pl.col("model") == baseline) & (pl.col("sample_id") == sid))["prediction"][
            0
        ]
        asked = [r["prompt"] for r in requests if mine in r["prompt"] and theirs in r["prompt"]]
        orders = sorted(p.index(mine) < p.index(theirs) for p in asked)
        assert orders == [False, True], (model, baseline, sid)
    # an empty answer is never sent
    assert not any("질문 3" in r["prompt"] and "base 답" in r["prompt"] for r in requests)

    got = {(r["model"], r["opponent"], r["sample_id"]): r for r in outcome.judgments.to_dicts()}
    assert {k: (v["verdict"], v["consistent"]) for k, v in got.items()} == {
        ("sft", "base", "s0"): ("win", True), ("sft", "base", "s1"): ("tie", True),
        ("sft", "base", "s2"): ("tie", False),  # the biased judge said A both times: the orders disagree
        ("sft", "base", "s3"): ("win", None),  # the base answer is empty: decided without a call
        ("dpo", "base", "s0"): ("win", True), ("dpo", "base", "s1"): ("loss", True),
        ("dpo", "base", "s2"): ("tie", False), ("dpo", "base", "s3"): ("win", None),
        ("dpo", "sft", "s0"): ("tie", True), ("dpo", "sft", "s1"): ("loss", True),
        ("dpo", "sft", "s2"): ("tie", False), ("dpo", "sft", "s3"): ("unparsed", None),
    }  # fmt: skip
    assert (
        got[("dpo", "sft", "s3")]["score"] is None and "@garbage" not in got[("dpo", "sft", "s3")]["verdict"]
    )
    assert "[A=sft, B=base]" in got[("sft", "base", "s0")]["reason"]
    assert all(r["signature"].startswith("judge:canned-judge|endpoint:127.0.0.1:") for r in got.values())

    pairs = {(p["model"], p["baseline"]): p for p in outcome.summary["pairs"]}
    assert pairs[("sft", "base")]["win_rate"] == pytest.approx(0.75)  # 2 wins, 2 ties
    assert pairs[("sft", "base")]["consistency"] == pytest.approx(2 / 3)  # of the 3 judged by calls
    assert pairs[("dpo", "base")]["win_rate"] == pytest.approx(0.625)
    assert pairs[("dpo", "sft")]["n"] == 3 and pairs[("dpo", "sft")]["unparsed"] == 1
    assert pairs[("dpo", "sft")]["win_rate"] == pytest.approx(1 / 3)
    for pair in pairs.values():
        assert pair["ci_low"] <= pair["win_rate"] <= pair["ci_high"] and 0 < pair["p_value"] <= 1
    deltas = outcome.deltas.filter(pl.col("metric") == "judge_win_rate")
    assert deltas.height == 3 and set(deltas["n"].to_list()) == {4, 3}
    assert outcome.summary["calls"] == {"total": 20, "cached": 0, "asked": 20, "failed": 0, "no_content": 0}

    # the same run again: everything from the cache, not one request
    again = run_judge(PAIRWISE, judge, workspace, client_factory=fast)
    assert len(canned.requests()) == 20
    assert again.summary["calls"]["cached"] == 20 and again.summary["calls"]["asked"] == 0
    assert again.judgments.drop("created_at").equals(outcome.judgments.drop("created_at"))
    # another temperature is another question
    hotter = run_judge(PAIRWISE.filter(pl.col("model") != "dpo"), settings(canned.endpoint, temperature=0.7),
                       workspace, client_factory=fast)  # fmt: skip
    assert hotter.summary["calls"]["asked"] == 6 and len(canned.requests()) == 26


def test_rubric_scores_reasons_unparsed_and_empty_answers(canned: Canned, tmp_path: Path) -> None:
    canned.start("--fail-first", "2")  # and the first two requests get 503: retried
    predictions = frame([
        ("base", "s0", "질문 0", "base @score3"), ("sft", "s0", "질문 0", "sft @score8"),
        ("base", "s1", "질문 1", "base @garbage"), ("sft", "s1", "질문 1", "sft @score9"),
        ("base", "s2", "질문 2", "<|endoftext|>"), ("sft", "s2", "질문 2", "sft @nocontent"),
    ])  # fmt: skip
    judge = settings(canned.endpoint, mode="rubric", max_concurrency=1)
    outcome = run_judge(predictions, judge, Workspace(tmp_path / "ws"), client_factory=fast)
    statuses = [r["status"] for r in canned.requests()]
    assert statuses == [503, 503, 200, 200, 200, 200, 200]  # 5 answers sent, 2 of them retried once more
    got = {(r["model"], r["sample_id"]): r for r in outcome.judgments.to_dicts()}
    assert {k: (v["score"], v["verdict"]) for k, v in got.items()} == {
        ("base", "s0"): (3.0, None), ("sft", "s0"): (8.0, None), ("base", "s1"): (None, "unparsed"),
        ("sft", "s1"): (9.0, None), ("base", "s2"): (0.0, "degenerate"), ("sft", "s2"): (None, "unparsed"),
    }  # fmt: skip
    assert got[("base", "s0")]["reason"] == "답변을 살펴보았다."
    assert got[("sft", "s2")]["reason"] == "(no message text in the response)"
    assert got[("base", "s0")]["opponent"] is None and got[("base", "s0")]["mode"] == "rubric"
    scores = outcome.scores.sort("model", "sample_id")
    assert scores["value"].to_list() == [3.0, 0.0, 8.0, 9.0] and set(scores["metric"]) == {"judge"}
    means = {r["model"]: r for r in outcome.summary["models"]}
    assert means["base"]["mean"] == pytest.approx(1.5) and means["base"]["unparsed"] == 1
    assert means["sft"]["n"] == 2 and means["sft"]["degenerate"] == 0
    assert outcome.summary["calls"]["no_content"] == 1
    # a reply without message text is not cached: the next run asks it again, and only it
    run_judge(predictions, judge, Workspace(tmp_path / "ws"), client_factory=fast)
    assert len(canned.requests()) == 8 and "@nocontent" in canned.requests()[-1]["prompt"]


def test_a_server_stopped_mid_run_and_restarted_is_retried(canned: Canned, tmp_path: Path) -> None:
    canned.start("--die-after", "2")
    predictions = PAIRWISE.filter(pl.col("model") != "dpo", pl.col("sample_id") != "s3")
    judge = settings(canned.endpoint, max_concurrency=1, max_retries=8)
    result: dict = {}

    def judge_in_background() -> None:
        try:
            result["outcome"] = run_judge(predictions, judge, Workspace(tmp_path / "ws"), client_factory=fast)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    worker = threading.Thread(target=judge_in_background)
    worker.start()
    assert canned.proc is not None
    canned.proc.wait(timeout=30)  # it answered two calls and died
    time.sleep(0.3)  # the judge meets a closed port meanwhile
    canned.start()
    worker.join(timeout=60)
    assert "error" not in result, result.get("error")
    requests = canned.requests()
    assert [r["status"] for r in requests] == [200] * 6 and len({r["pid"] for r in requests}) == 2
    outcome = result["outcome"]
    assert outcome.summary["calls"] == {"total": 6, "cached": 0, "asked": 6, "failed": 0, "no_content": 0}
    assert outcome.judgments["verdict"].to_list() == ["win", "tie", "tie"]


def test_calls_failing_after_retries_give_one_line_and_keep_the_answered(
    canned: Canned, tmp_path: Path
) -> None:
    canned.start("--die-after", "2")
    predictions = PAIRWISE.filter(pl.col("model") != "dpo", pl.col("sample_id") != "s3")
    judge = settings(canned.endpoint, max_concurrency=1, max_retries=1)
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(JudgeCallsFailed) as failed:
        run_judge(predictions, judge, workspace, client_factory=fast)
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"judge: 4 of 6 calls to {canned.endpoint}/chat/completions failed (")
    assert "after 2 attempts" in message and "the 2 answered are cached" in message
    assert len(list(workspace.judge_cache.rglob("*.json"))) == 2
    canned.start()
    outcome = run_judge(predictions, judge, workspace, client_factory=fast)
    assert outcome.summary["calls"]["cached"] == 2 and outcome.summary["calls"]["asked"] == 4
    assert [r["status"] for r in canned.requests()] == [200] * 6  # only the 4 missing were asked


def test_api_key_from_the_environment_and_refused_runs(
    canned: Canned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canned.start("--key", "sk-test-123")
    predictions = PAIRWISE.filter(pl.col("model") != "dpo", pl.col("sample_id") == "s0")
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match="the environment variable JUDGE_TEST_KEY is not set"):
        run_judge(predictions, settings(canned.endpoint, api_key_env="JUDGE_TEST_KEY"), workspace)
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-wrong")
    with pytest.raises(UserError, match=r"answered HTTP 401 \(the API key was refused\)"):
        run_judge(predictions, settings(canned.endpoint, api_key_env="JUDGE_TEST_KEY"), workspace)
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test-123")
    with pytest.raises(UserError, match=r"HTTP 404 \(no such endpoint or model\) for model 'missing-model'"):
        run_judge(predictions, settings(canned.endpoint, api_key_env="JUDGE_TEST_KEY").model_copy(
            update={"model": "missing-model"}), workspace)  # fmt: skip
    outcome = run_judge(predictions, settings(canned.endpoint, api_key_env="JUDGE_TEST_KEY"), workspace)
    assert outcome.judgments["verdict"].to_list() == ["win"]
    assert canned.requests()[-1]["auth"] == "Bearer sk-test-123"
    key_free = [p.read_text(encoding="utf-8") for p in workspace.judge_cache.rglob("*.json")]
    assert key_free and not any("sk-test" in text for text in key_free)  # the key is never written down


def _write_predictions(path: Path, predictions: pl.DataFrame) -> Path:
    predictions.write_ndjson(path)
    return path


def test_the_same_answer_ties_without_a_call(canned: Canned, tmp_path: Path) -> None:
    canned.start()
    predictions = frame([
        ("base", "s0", "질문 0", "같은 답 @same"), ("sft", "s0", "질문 0", "같은 답 @same "),
        ("base", "s1", "질문 1", "base 답 @bad"), ("sft", "s1", "질문 1", "sft 답 @good"),
    ])  # fmt: skip
    outcome = run_judge(
        predictions, settings(canned.endpoint), Workspace(tmp_path / "ws"), client_factory=fast
    )
    assert len(canned.requests()) == 2  # only s1, in both orders
    verdicts = {r["sample_id"]: (r["verdict"], r["reason"]) for r in outcome.judgments.to_dicts()}
    assert (
        verdicts["s0"] == ("tie", "(the same answer: not sent to the judge)") and verdicts["s1"][0] == "win"
    )


def test_judge_flags_are_checked_in_one_line(tmp_path: Path) -> None:
    from tunelab.evaluate.commands import judge_settings

    assert judge_settings(None, None, None, None, None, wanted=False) is None
    with pytest.raises(UserError, match=r"^--judge: no judge endpoint; pass --judge-endpoint"):
        judge_settings(None, None, "m", None, None, wanted=True)
    with pytest.raises(UserError, match=r"^--judge-endpoint: must be an http:// or https:// URL"):
        judge_settings(None, "localhost:8000", "m", None, None, wanted=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "dataset: {path: d.jsonl, name: d}\nevaluate:\n  judge: {endpoint: 'http://h:1/v1', model: a, "
        "mode: rubric, temperature: 0.3}\n",
        encoding="utf-8",
    )
    merged = judge_settings(recipe, None, "b", None, None, wanted=True)  # a flag overrides the recipe's key
    assert merged is not None and (merged.model, merged.mode, merged.temperature) == ("b", "rubric", 0.3)


def test_unreachable_endpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    file = _write_predictions(tmp_path / "preds.jsonl", PAIRWISE)
    closed = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "score", str(file), "-w", str(tmp_path / "ws"), "--metric", "judge",
         "--judge-endpoint", closed, "--judge-model", "m"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: evaluate.judge.endpoint: cannot reach ")
    assert "Traceback" not in proc.stderr and f"{closed}/chat/completions" in lines[0]
    assert time.monotonic() - started < 60  # at once: no retries for a server that isn't there


def test_evaluate_checks_the_judge_before_generating(tmp_path: Path) -> None:
    from tunelab.evaluate.runner import run_evaluate
    from tunelab.recipe import parse_recipe

    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text('{"prompt": "안녕", "response": "안녕하세요"}\n', encoding="utf-8")
    closed = f"http://127.0.0.1:{free_port()}/v1"
    recipe = parse_recipe(
        {"dataset": {"path": str(eval_set), "name": "d"},
         "train": {"base_model": str(tmp_path / "no-such-model")},  # never loaded: the judge check comes first
         "evaluate": {"eval_set": {"path": str(eval_set), "name": "e"}, "models": ["base"],
                      "judge": {"endpoint": closed, "model": "m"}}},
        base_dir=tmp_path,
    )  # fmt: skip
    with pytest.raises(UserError, match=r"evaluate.judge.endpoint: cannot reach"):
        run_evaluate(recipe, tmp_path / "ws", show_progress=False)


def test_an_evaluation_whose_judge_failed_is_stored_without_it(canned: Canned, tmp_path: Path) -> None:
    """Generation is costly: `tunelab evaluate` keeps its evaluation when judge calls fail, then says so."""
    from tunelab.evaluate.runner import _finish
    from tunelab.warehouse import store

    canned.start("--die-after", "1")
    predictions = (
        PAIRWISE.filter(pl.col("model") != "dpo", pl.col("sample_id") == "s0")
        .with_columns(pl.lit(None, pl.Utf8).alias(name) for name in ("run_id", "label", "gen_params"))
        .with_columns(pl.lit(None, pl.Float64).alias("latency_s"))
    )
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(
        UserError, match=r"judge: 1 of 2 calls .* is stored without the judge: `tunelab score "
    ):
        _finish(workspace, "e", None, predictions, ["judge"], "auto", "e5-small", {},
                judge=settings(canned.endpoint, max_retries=0, max_concurrency=1), keep_without_judge=True)  # fmt: skip
    evals = store.query(workspace.warehouse, "select eval_id from evals")
    assert evals.height == 1
    assert store.query(workspace.warehouse, "select count(*) as n from judgments")["n"][0] == 0
    assert workspace.predictions_file(evals["eval_id"][0]).is_file()


def test_score_judge_stores_judgments_and_win_rates(canned: Canned, tmp_path: Path) -> None:
    """`tunelab score --judge` with the judge from a recipe: warehouse rows, the table, --format json."""
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse import store

    canned.start()
    file = _write_predictions(tmp_path / "preds.jsonl", PAIRWISE)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: preds.jsonl, name: preds}}\n"
        f"evaluate:\n  judge: {{endpoint: '{canned.endpoint}', model: canned-judge, max_concurrency: 2}}\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    args = ["score", str(file), "-w", str(ws), "--metric", "judge", "--recipe", str(recipe)]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["judge"]["mode"] == "pairwise" and record["judge"]["calls"]["asked"] == 20
    wins = [d for d in record["deltas"] if d["metric"] == "judge_win_rate"]
    assert {(d["model"], d["baseline"]) for d in wins} == {("sft", "base"), ("dpo", "base"), ("dpo", "sft")}
    db = ws / "tunelab.duckdb"
    rows = store.query(db, "select * from judgments where eval_id = ?", [record["eval_id"]])
    assert rows.height == 12 and set(rows["mode"]) == {"pairwise"}
    stored = store.query(db, "select * from eval_deltas where eval_id = ? and metric = 'judge_win_rate'",
                         [record["eval_id"]])  # fmt: skip
    assert stored.filter(pl.col("model") == "sft")["delta"][0] == pytest.approx(0.75)
    # the table: the judge's own block with win rates, consistency and the cache count (all cached now)
    table = CliRunner().invoke(app, [*args, "--judge-mode", "pairwise"])
    assert table.exit_code == 0, table.output
    assert "LLM judge canned-judge" in table.stdout and "20 cached, 0 asked now" in table.stdout
    assert "0.750" in table.stdout and "of 3" in table.stdout and len(canned.requests()) == 20
    # rubric mode from the flags: the mean per model joins the comparison table like any metric
    rubric = CliRunner().invoke(app, [*args, "--judge-mode", "rubric", "--format", "json"])
    assert rubric.exit_code == 0, rubric.output
    metrics = {(m["model"], m["metric"]): m for m in json.loads(rubric.stdout)["metrics"]}
    assert metrics[("sft", "judge")]["n"] == 4 and metrics[("sft", "judge")]["value"] == pytest.approx(5.0)
    assert any(d["metric"] == "judge" and d["model"] == "sft" for d in json.loads(rubric.stdout)["deltas"])


# ------------------------------------------------------------------------------------------- transformers serve


# builds the tiny model, then serves it: one child process, started when the module starts so that its
# start-up (~20 s of imports on a small machine) overlaps the tests above
SERVE_TINY = """
import sys
from pathlib import Path
from tunelab.modeling.tiny import build_tiny_model
texts = ["안녕하세요 반갑습니다", "두 답변을 비교했다 [[A]] [[B]] [[C]]", "점수: 7"] * 4
model = build_tiny_model(Path(sys.argv[1]), texts, vocab_size=300, hidden_size=32, layers=1, pretrain_steps=0)
sys.argv = ["transformers", "serve", str(model), "--host", "127.0.0.1", "--port", sys.argv[2], "--device", "cpu",
            "--log-level", "info"]
from transformers.cli.transformers import app
app()
"""


@pytest.fixture(scope="module", autouse=True)
def served_tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`transformers serve` with the offline tiny model on a free port, started in the background."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(name) is None]
    if missing:
        yield {"skip": f"transformers serve needs {', '.join(missing)}: pip install 'transformers[serving]'"}
        return
    root = tmp_path_factory.mktemp("served")
    port, log = free_port(), root / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_TINY, str(root / "tiny"), str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=REPO,
        )  # fmt: skip
    try:
        yield {"proc": proc, "port": port, "log": log, "model": str(root / "tiny")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_until_served(server: dict, timeout_s: float = 150) -> tuple[str, str, Path]:
    if "skip" in server:
        pytest.skip(server["skip"])
    proc, port, log = server["proc"], server["port"], server["log"]
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return f"http://127.0.0.1:{port}/v1", server["model"], log
        except OSError:
            assert time.monotonic() < deadline, f"transformers serve did not start:\n{log.read_text()}"
            time.sleep(0.3)


def test_transformers_serve_end_to_end(served_tiny: dict, tmp_path: Path) -> None:
    """A real OpenAI-compatible server with a real (tiny) model: `tunelab score --judge` through the CLI."""
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse import store

    endpoint, model, log = wait_until_served(served_tiny)
    predictions = PAIRWISE.filter(pl.col("model") != "dpo", pl.col("sample_id") != "s3")
    file = _write_predictions(tmp_path / "preds.jsonl", predictions)
    # a short user template: the tiny model's context is small (and a replaced template is a user's right)
    template = tmp_path / "short.txt"
    template.write_text(
        "질문: {{question}}\nA: {{answer_a}}\nB: {{answer_b}}\n[[A]], [[B]], [[C]]?", encoding="utf-8"
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: {path: preds.jsonl, name: preds}\nevaluate:\n  judge:\n"
        f"    endpoint: {endpoint}\n    model: {model}\n    rubric: short.txt\n    max_tokens: 8\n"
        "    max_concurrency: 2\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    args = [
        "score",
        str(file),
        "-w",
        str(ws),
        "--metric",
        "judge",
        "--recipe",
        str(recipe),
        "--format",
        "json",
    ]

    def posts() -> int:
        return log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 200')

    before = posts()
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    record = json.loads(first.stdout)
    assert posts() - before == 6  # 3 prompts, both orders
    assert record["judge"]["calls"] == {"total": 6, "cached": 0, "asked": 6, "failed": 0, "no_content": 0}
    assert record["judge"]["template"] == "short.txt" and record["judge"]["judge"] == model
    rows = store.query(
        ws / "tunelab.duckdb", "select * from judgments where eval_id = ?", [record["eval_id"]]
    )
    assert rows.height == 3
    # nonsense replies: each is a verdict or recorded as unparsed, never a crash; the reason keeps both replies
    assert set(rows["verdict"]) <= {"win", "loss", "tie", "unparsed"}
    assert all("[A=sft, B=base]" in r and "[A=base, B=sft]" in r for r in rows["reason"])
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert posts() - before == 6  # all from the cache: no request reached the server
    assert json.loads(second.stdout)["judge"]["calls"]["cached"] == 6
