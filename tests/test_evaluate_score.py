"""`tunelab score`: re-scoring predictions files, exact reproduction of stored scores, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sacrebleu.metrics import BLEU
from test_evaluate_persona import EGEN, TETO

from tunelab.errors import UserError
from tunelab.evaluate.predictions_file import read_predictions_file
from tunelab.evaluate.runner import score_file
from tunelab.warehouse.store import query
from tunelab.workspace import Workspace

CASES = [  # prompt, reference, label
    ("서울 인구?", "서울의 인구는 약 천만 명입니다", None),
    ("위로해줘", "힘들었겠다, 오늘은 푹 쉬어요", "egen"),
    ("조언해줘", "고민하지 말고 당장 시작해", "teto"),
    ("고양이는?", "고양이가 잔다", None),
]
ANSWERS = {
    "base": ["전혀 다른 말", "그냥 해", "", "?!"],
    "sft": [
        "서울 인구는 약 1천만 명입니다",
        "많이 지쳤겠어요. 오늘은 푹 쉬어도 괜찮아요.",
        "변명은 필요 없다. 당장 시작해.",
        "고양이가 잔다",
    ],
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    train = ws / "curations" / "cur-persona"
    train.mkdir(parents=True)
    pl.DataFrame(
        {
            "sample_id": [f"p:{i}" for i in range(12)],
            "response": EGEN + TETO,
            "label": ["egen"] * 6 + ["teto"] * 6,
        }
    ).write_parquet(train / "train.parquet")
    return ws


@pytest.fixture
def predictions_file(tmp_path: Path) -> Path:
    rows = [
        {
            "prompt": p,
            "reference": r,
            "prediction": ANSWERS[m][i],
            "model": m,
            "label": lab,
            "curation_id": "cur-persona",
            "extra_column": 1,
        }
        for m in ANSWERS
        for i, (p, r, lab) in enumerate(CASES)
    ]
    return write_jsonl(tmp_path / "outputs.jsonl", rows)


def stored(ws: Path, table: str, eval_id: str) -> pl.DataFrame:
    return query(
        Workspace(ws).warehouse,
        f"SELECT * EXCLUDE (eval_id) FROM {table} WHERE eval_id = ? ORDER BY ALL",
        [eval_id],
    )


def test_score_file_stores_korean_scores_and_rescoring_its_output_reproduces_them(
    workspace: Path, predictions_file: Path
) -> None:
    with pytest.warns(UserWarning, match="outputs:3"):  # "?!" has no tokens: named, not silent
        first = score_file(
            predictions_file,
            workspace,
            embedding_model="use-v3",
            metrics=["rouge", "bleu", "chrf", "cosine", "label_acc"],
        )
    scores = stored(workspace, "scores", first.eval_id)
    # sample ids default to <file stem>:<n-th row of that model>, so models pair up
    assert sorted(set(scores["sample_id"])) == ["outputs:0", "outputs:1", "outputs:2", "outputs:3"]
    r1 = scores.filter((pl.col("metric") == "rouge1") & (pl.col("model") == "sft")).sort("sample_id")
    assert r1["value"].to_list()[0] == pytest.approx(8 / 9) and r1["value"].to_list()[3] == 1.0
    assert r1["signature"][0].startswith("rouge-score 0.1.2|tok:kiwi-")
    bleu = scores.filter(
        (pl.col("metric") == "bleu") & (pl.col("sample_id") == "outputs:0") & (pl.col("model") == "sft")
    )
    assert (
        bleu["value"][0]
        == BLEU(tokenize="ko-mecab", effective_order=True)
        .sentence_score(ANSWERS["sft"][0], [CASES[0][1]])
        .score
    )
    # persona: only the two labelled rows count; sft answers both in the voice its prompt asked for
    acc = stored(workspace, "eval_metrics", first.eval_id).filter(pl.col("metric") == "label_acc")
    assert dict(zip(acc["model"], acc["value"], strict=True))["sft"] == 1.0
    per_sample = scores.filter(pl.col("metric") == "label_acc")
    assert per_sample.height == 4 and set(per_sample["sample_id"]) == {"outputs:1", "outputs:2"}
    assert "train:cur-persona" in per_sample["signature"][0]

    written = pl.read_ndjson(first.predictions_path)
    assert {
        "prompt",
        "reference",
        "prediction",
        "model",
        "sample_id",
        "curation_id",
        "rouge_tokenizer",
    } <= set(written.columns)
    with pytest.warns(UserWarning):
        again = score_file(first.predictions_path, workspace)
    assert again.eval_id != first.eval_id
    assert stored(workspace, "scores", again.eval_id).equals(scores)  # bit-for-bit, signatures included
    assert stored(workspace, "eval_metrics", again.eval_id).equals(
        stored(workspace, "eval_metrics", first.eval_id)
    )
    compare = query(
        Workspace(workspace).warehouse,
        "SELECT delta_abs FROM v_run_compare WHERE eval_id = ? AND model = 'sft' AND metric = 'rouge1'",
        [first.eval_id],
    )
    base_r1 = stored(workspace, "eval_metrics", first.eval_id).filter(
        (pl.col("model") == "base") & (pl.col("metric") == "rouge1")
    )["value"][0]
    sft_r1 = first.comparison.estimates.filter((pl.col("model") == "sft") & (pl.col("metric") == "rouge1"))
    assert compare["delta_abs"][0] == pytest.approx(sft_r1["value"][0] - base_r1)
    delta = first.comparison.deltas.filter((pl.col("model") == "sft") & (pl.col("metric") == "rouge1"))
    assert delta["delta"][0] == pytest.approx(sft_r1["value"][0] - base_r1)  # the table's delta is the view's


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: invalid JSON"),
        ('{"prompt": "p", "reference": "r", "model": "m"}', r"bad\.jsonl:2: prediction: missing"),
        (
            '{"prompt": "p", "reference": 3, "prediction": "x", "model": "m"}',
            r"bad\.jsonl:2: reference: must be a string",
        ),
        ("[1, 2]", r"bad\.jsonl:2: each line must be a JSON object"),
        (
            '{"prompt": "p", "reference": "r", "prediction": "x", "model": "m", "latency_s": "1s"}',
            r"bad\.jsonl:2: latency_s: must be a number, got str",
        ),
        (
            '{"prompt": "p", "reference": "r", "prediction": "x", "model": "m", "label": [1]}',
            r"bad\.jsonl:2: label: must be a string, got list",
        ),
    ],
)
def test_bad_predictions_file_is_one_line_error_with_file_line_field(
    tmp_path: Path, line: str, message: str
) -> None:
    good = json.dumps({"prompt": "p", "reference": "r", "prediction": "x", "model": "m"})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message) as info:
        read_predictions_file(path)
    assert "\n" not in str(info.value)


def test_invalid_utf8_line_is_one_line_error(tmp_path: Path) -> None:
    good = json.dumps({"prompt": "p", "reference": "r", "prediction": "x", "model": "m"}).encode()
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(good + b"\n" + b'{"prompt": "\xff"}' + b"\n")
    with pytest.raises(UserError, match=r"bytes\.jsonl:2: invalid UTF-8 at byte 12"):
        read_predictions_file(path)


def test_duplicate_sample_for_a_model_is_refused(tmp_path: Path) -> None:
    row = {"prompt": "p", "reference": "r", "prediction": "x", "model": "m", "sample_id": "d:1"}
    with pytest.raises(UserError, match="'d:1' appears twice for model 'm'"):
        read_predictions_file(write_jsonl(tmp_path / "dup.jsonl", [row, row]))


def test_score_cli_prints_table_and_eval_id(workspace: Path, predictions_file: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    result = CliRunner().invoke(
        app,
        [
            "score",
            str(predictions_file),
            "--workspace",
            str(workspace),
            "--tokenizer",
            "char",
            "--embedding-model",
            "use-v3",
            "--metric",
            "rouge",
            "--metric",
            "label_acc",
        ],
    )
    assert result.exit_code == 0, result.output
    eval_id = result.stdout.strip().splitlines()[-1]
    sig = query(
        Workspace(workspace).warehouse,
        "SELECT DISTINCT signature FROM scores WHERE eval_id = ? AND metric = 'rouge1'",
        [eval_id],
    )
    assert sig["signature"].to_list() == ["rouge-score 0.1.2|tok:char-lower|stem:no|rouge1|f1"]
    assert "persona acc" in result.stdout and "BLEU" not in result.stdout  # only what was asked for
    # a typed choice: click refuses what is not one, naming the option and the choices (exit 2)
    bad = CliRunner().invoke(app, ["score", str(predictions_file), "--tokenizer", "rouge-default"])
    assert bad.exit_code == 2 and "--tokenizer" in bad.output and "whitespace" in bad.output

    as_json = CliRunner().invoke(
        app,
        ["score", str(predictions_file), "-w", str(workspace), "--tokenizer", "char",
         "--embedding-model", "use-v3", "--format", "json"],
    )  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)  # stdout is the one JSON document and nothing else
    assert set(document) == {
        "eval_id", "eval_set", "curation_id", "models", "predictions_path", "metrics", "deltas", "degenerate"
    }  # fmt: skip
    assert document["eval_id"] != eval_id and document["eval_set"] == predictions_file.stem
    assert Path(document["predictions_path"]).is_file()
    rouge1 = [row for row in document["metrics"] if row["metric"] == "rouge1"]
    assert len(rouge1) == len(document["models"]) >= 1
    assert set(rouge1[0]) == {"model", "metric", "value", "ci_low", "ci_high", "n", "method", "seed"}
    assert all(row["ci_low"] <= row["value"] <= row["ci_high"] for row in rouge1)


def test_labels_without_a_curation_skip_label_acc_with_a_warning(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": "p",
            "reference": "고양이가 잔다",
            "prediction": "고양이가 잔다",
            "model": "m",
            "label": "egen",
        },
        {"prompt": "q", "reference": "개가 짖는다", "prediction": "개가 잔다", "model": "m", "label": "teto"},
    ]
    path = write_jsonl(tmp_path / "ext.jsonl", rows)
    with pytest.warns(UserWarning, match="label_acc skipped"):
        result = score_file(path, tmp_path / "ws", embedding_model="use-v3", metrics=["rouge", "label_acc"])
    assert "label_acc" not in set(result.metrics["metric"])
    # not asked for: no persona accuracy, and no warning about it
    plain = score_file(path, tmp_path / "ws", embedding_model="use-v3")
    assert "label_acc" not in set(plain.metrics["metric"]) and "cosine" in set(plain.metrics["metric"])
    assert plain.eval_set == "ext"
    again = score_file(plain.predictions_path, tmp_path / "ws")  # keeps the name and the metrics asked for
    assert again.eval_set == "ext" and set(again.metrics["metric"]) == set(plain.metrics["metric"])
    # kiwi: 개/가/짖/는다 vs 개/가/자/ᆫ다 -> 2 of 4 morphemes shared -> 0.5; the first pair is identical -> 1.0
    rouge1 = result.metrics.filter(pl.col("metric") == "rouge1")["value"][0]
    assert rouge1 == pytest.approx((1.0 + 0.5) / 2)


def test_integer_labels_and_ids_and_object_gen_params_are_accepted(tmp_path: Path) -> None:
    row = {
        "prompt": "p",
        "reference": "r",
        "prediction": "x",
        "model": "m",
        "sample_id": 7,
        "label": 1,
        "latency_s": 2,
        "gen_params": {"max_new_tokens": 8},
    }
    frame = read_predictions_file(write_jsonl(tmp_path / "ints.jsonl", [row]))
    assert frame.row(0, named=True)["sample_id"] == "7" and frame.row(0, named=True)["label"] == "1"
    assert frame["latency_s"][0] == 2.0 and frame["gen_params"][0] == '{"max_new_tokens": 8}'


def test_label_acc_with_labels_unknown_to_the_training_data_is_one_line(
    workspace: Path, predictions_file: Path, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in predictions_file.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["label"] = "persona-x" if row.get("label") else None
    path = write_jsonl(tmp_path / "other-labels.jsonl", rows)
    with pytest.raises(UserError, match=r"label_acc: the predictions' labels \(persona-x\) occur nowhere"):
        score_file(path, workspace, embedding_model="use-v3", metrics=["rouge", "label_acc"])
