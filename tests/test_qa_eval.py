"""QA of the evaluation side as a new user meets it: hostile predictions files and SQL copied from the docs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tunelab.cli import app
from tunelab.errors import UserError
from tunelab.evaluate.compare import compare_models, print_comparison
from tunelab.evaluate.predictions_file import read_predictions_file

ROW = {"prompt": "질문", "reference": "서울은 수도입니다", "prediction": "서울", "model": "base"}


def _jsonl(path: Path, rows: list[dict], prefix: bytes = b"", encoding: str = "utf-8") -> Path:
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_bytes(prefix + body.encode(encoding))
    return path


def test_a_file_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    # Windows editors save UTF-8 with a BOM; it was "invalid JSON: Unexpected UTF-8 BOM" on line 1
    frame = read_predictions_file(
        _jsonl(tmp_path / "bom.jsonl", [ROW, ROW | {"model": "sft"}], b"\xef\xbb\xbf")
    )
    assert frame["model"].to_list() == ["base", "sft"]
    assert frame["prompt"].to_list() == ["질문", "질문"]


def test_a_cp949_file_is_one_line_naming_the_line_and_the_fix(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "cp949.jsonl", [ROW], encoding="cp949")
    with pytest.raises(UserError, match=r"cp949\.jsonl:1: invalid UTF-8 at byte \d+; save the file as UTF-8"):
        read_predictions_file(path)


@pytest.mark.parametrize("model", ["", "   "])
def test_a_nameless_model_is_refused(tmp_path: Path, model: str) -> None:
    # it was accepted: a blank column header, and a delta column titled " − base"
    path = _jsonl(tmp_path / "nameless.jsonl", [ROW, ROW | {"model": model}])
    with pytest.raises(UserError, match=r"nameless\.jsonl:2: model: empty"):
        read_predictions_file(path)


def _frames(sft_ids: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    base_ids = ["s0", "s1", "s2", "s3"]
    refs = ["서울은 수도입니다", "부산은 항구입니다", "김치는 음식입니다", "한강은 강입니다"]
    preds = pl.DataFrame(
        {
            "model": ["base"] * 4 + ["sft"] * len(sft_ids),
            "sample_id": base_ids + sft_ids,
            "reference": refs + refs[: len(sft_ids)],
            "prediction": [r[:2] for r in refs] + refs[: len(sft_ids)],
        }
    )
    scores = pl.DataFrame(
        {
            "model": ["base"] * 4 + ["sft"] * len(sft_ids),
            "sample_id": base_ids + sft_ids,
            "metric": ["rouge1"] * (4 + len(sft_ids)),
            "value": [0.3, 0.4, 0.2, 0.5] + [1.0] * len(sft_ids),
        }
    )
    return preds, scores


def test_models_without_a_shared_sample_id_get_no_nan_delta(capsys: pytest.CaptureFixture[str]) -> None:
    # sample ids that never match (a file with ids for one model only) gave "+nan [–, –] p=–" in the
    # table and NaN in eval_deltas and in --format json (which is then not JSON)
    preds, scores = _frames(["t0", "t1"])
    with pytest.warns(UserWarning, match="sft and base share no sample_id"):
        comparison = compare_models(preds, scores, ("rouge1", "bleu_corpus"))
    assert comparison.deltas.height == 0
    assert all(math.isfinite(v) for v in comparison.estimates["value"].to_list())
    print_comparison(comparison, "qa")
    assert "nan" not in capsys.readouterr().out


def test_a_delta_over_fewer_prompts_than_the_title_says_shows_its_own_n(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # base answered 4 prompts, sft 2: the title said "n = 4" for every cell
    preds, scores = _frames(["s0", "s1"])
    comparison = compare_models(preds, scores, ("rouge1",))
    (delta,) = comparison.deltas.to_dicts()
    assert delta["n"] == 2 and delta["delta"] == pytest.approx(((1 - 0.3) + (1 - 0.4)) / 2)
    print_comparison(comparison, "qa")
    out = capsys.readouterr().out
    assert "n = 4 prompts" in out and out.count("n=2") == 2  # sft's mean and the delta


def test_sql_that_opens_with_a_comment_runs(tmp_path: Path) -> None:
    # the queries in docs/evaluate.md open with "-- ..."; click took that for an unknown option
    db = tmp_path / "w.duckdb"
    import duckdb

    duckdb.connect(str(db)).close()
    result = CliRunner().invoke(
        app,
        ["sql", "-- the newest = first\nSELECT 41 + 1 AS answer", "--warehouse", str(db), "--format", "csv"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["answer", "42"]


def test_model_and_eval_set_names_are_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # a model named "sft[/]" (or --eval-set "[/x]") was a rich MarkupError traceback after scoring
    from tunelab.evaluate.compare import print_samples

    preds, scores = _frames(["s0", "s1"])
    preds = preds.with_columns(pl.col("model").replace("sft", "sft[/]"))
    scores = scores.with_columns(pl.col("model").replace("sft", "sft[/]"))
    print_comparison(compare_models(preds, scores, ("rouge1",)), "evaluation on [/x][bold]")
    print_samples(preds.with_columns(pl.lit("질문").alias("prompt")))
    out = capsys.readouterr().out
    assert "on [/x][bold]" in out and out.count("sft[/]") >= 2


class _ParrotJudge:
    """A judge that answers without a verdict, like the tiny model behind `transformers serve`."""

    def __init__(self, settings: object) -> None:
        pass

    def preflight(self) -> None:
        pass

    def complete(self, prompt: str) -> str:
        return "안녕하세요 반갑습니다"

    def close(self) -> None:
        pass


@pytest.mark.parametrize("mode", ["pairwise", "rubric"])
def test_judge_replies_without_a_verdict_are_a_warning(tmp_path: Path, mode: str) -> None:
    # `tunelab score --judge` against the demo's tiny model: every reply unparsed, exit 0, and nothing on
    # stderr but "n 0 · unparsed 4" deep in the table
    from tunelab.evaluate.config import JudgeSettings
    from tunelab.evaluate.judge import run_judge
    from tunelab.workspace import Workspace

    preds, _ = _frames(["s0", "s1"])
    preds = preds.with_columns(pl.lit("질문").alias("prompt"))
    settings = JudgeSettings(endpoint="http://127.0.0.1:9/v1", model="tiny", mode=mode)
    with pytest.warns(UserWarning, match=r"judge tiny: \d+ of \d+ judgments had no verdict"):
        run_judge(preds, settings, Workspace(tmp_path / "ws"), client_factory=_ParrotJudge)


class _GoneJudge(_ParrotJudge):
    """A server that went away mid-run: every call fails after its retries."""

    asked = 0

    def complete(self, prompt: str) -> str:
        from tunelab.evaluate.judge import CallFailed

        type(self).asked += 1
        raise CallFailed("ConnectError: [Errno 111] Connection refused (after 5 attempts)")


def test_a_judge_server_gone_mid_run_stops_asking(tmp_path: Path) -> None:
    # each of 276 remaining calls waited out its own retries: `score --judge` hung 10 minutes
    from tunelab.evaluate.config import JudgeSettings
    from tunelab.evaluate.judge import JudgeCallsFailed, run_judge
    from tunelab.workspace import Workspace

    preds, _ = _frames(["s0", "s1", "s2", "s3"])
    preds = preds.with_columns(pl.lit("질문").alias("prompt"))
    settings = JudgeSettings(endpoint="http://127.0.0.1:9/v1", model="tiny", mode="rubric", max_concurrency=1)
    with pytest.raises(JudgeCallsFailed, match=r"judge: 8 of 8 calls .* failed \(ConnectError"):
        run_judge(preds, settings, Workspace(tmp_path / "ws"), client_factory=_GoneJudge)
    assert _GoneJudge.asked == 1
