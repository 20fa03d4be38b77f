"""`curate.executor: stream` gives the local executor's curation, batch by batch.

Batches of 37 rows, so every input here spans many batches: the row-local stages run per batch, exact and
minhash group narrow columns across all of them, balance and split run on (id, label) in local order. The
local executor on the same input in the same test is the reference: decisions frame-equal (same ids
dropped, same ref_sample_id, reason, score, evidence, in the same order), the same splits, quarantine,
signals, data version, report numbers and warehouse rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.errors import UserError
from tunelab.recipe import load_recipe
from tunelab.records.config import DatasetConfig
from tunelab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tunelab" / "demo"
BATCH = 37


def _assert_same(local, stream) -> None:  # noqa: ANN001 (two CurationResults)
    assert stream.decisions.equals(local.decisions)
    assert stream.train.equals(local.train)
    assert stream.val.equals(local.val)
    assert stream.quarantine.equals(local.quarantine)
    sort = ["stage", "sample_id", "field", "signal"]
    assert stream.signals.sort(sort).equals(local.signals.sort(sort))
    assert (stream.read, stream.kept, stream.dropped, stream.quarantined, stream.oversampled) == (
        local.read, local.kept, local.dropped, local.quarantined, local.oversampled,
    )  # fmt: skip
    assert stream.data_version == local.data_version
    a, b = local.report, stream.report
    # (sorted: report.py orders reasons of equal count as polars' group_by happens to)
    assert sorted(tuple(r.values()) for r in a["reasons"]) == sorted(tuple(r.values()) for r in b["reasons"])
    assert sorted(map(str, a["quarantine_errors"])) == sorted(map(str, b["quarantine_errors"]))
    for key in ("counts", "length_input", "length_output", "largest_clusters"):
        assert a[key] == b[key], key
    assert [(s["stage"], s["in"], s["dropped"]) for s in a["stages"]] == [
        (s["stage"], s["in"], s["dropped"]) for s in b["stages"]
    ]
    # the grouping stages' numbers are whole-data numbers on both (row-local ones are merged per batch)
    for stage in ("exact", "minhash", "balance", "split", "decontaminate", "labels"):
        assert a["stage_stats"].get(stage) == b["stage_stats"].get(stage), stage
    assert b["source"]["executor"] == "stream"


def _both(dataset: DatasetConfig, curate: CurateConfig, tmp: Path, **kwargs):  # noqa: ANN202
    ws = Workspace(tmp / "ws")
    local = curate_dataset(dataset, curate, ws, write=False, show_progress=False, **kwargs)
    streamed = curate.model_copy(update={"executor": "stream", "stream_batch_rows": BATCH})
    stream = curate_dataset(dataset, streamed, ws, write=False, show_progress=False, **kwargs)
    return local, stream


def _noisy_rows(docs: int) -> list[str]:
    """Near-dup-heavy Korean/English documents (benchmarks/minhash_bench.py) as SFT rows, with rows each
    row-local stage drops, labels 0/1 in the first half and false/true in the second (one pair of classes,
    as the loader pairs them over the whole file), blank lines, a CRLF line end and broken lines."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from minhash_bench import make_corpus
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    texts = make_corpus(docs, seed=3)
    lines = []
    for i, text in enumerate(texts):
        cut = len(text) // 5
        label = ("01" if i < docs // 2 else ["false", "true"])[int(i % 3 == 0)]
        row = {"prompt": text[:cut] + "?", "response": text[cut:] + ".", "label": label}
        if i % 97 == 5:
            row["response"] += " 연락처는 010-1234-5678 입니다."
        elif i % 89 == 7:
            row["response"] = "같은 말 " * 60
        elif i % 83 == 11:
            row["response"] = "네"
        elif i % 79 == 13:
            row["response"] = "これは日本語の回答です。よろしくお願いします。ありがとうございました。"
        lines.append(json.dumps(row, ensure_ascii=False))
    lines.insert(docs // 2, '{"prompt": "broken')
    lines.insert(docs // 3, "")
    lines.insert(docs // 3, "[1, 2]")
    lines.insert(docs // 4, '{"prompt": "crlf", "response": "한 줄 끝이 CRLF 입니다", "label": "1"}\r')
    return lines


NOISY = {
    "stages": [
        "schema", "normalize", "language", "pii", "quality", "length", "exact", "minhash", "balance", "split",
    ],
    "length": {"min_chars": {"response": 5}},
    "pii": {"action": "drop"},
    "exact": {"key": {}},
    "minhash": {"threshold": 0.7, "keep": "longest"},
    "balance": {"label": "label", "ratios": {"false": 0.5, "true": 0.5}, "oversample": True, "seed": 1},
    "split": {"val_ratio": 0.2, "stratify": "label", "seed": 7},
}  # fmt: skip


@pytest.fixture(scope="module")
def noisy_lines() -> list[str]:
    return _noisy_rows(300)


def test_demo_recipe_same_curation_streamed(tmp_path: Path) -> None:
    recipe = load_recipe(DEMO / "recipe.yaml")
    curate = recipe.curate.model_copy(update={"stages": [s for s in recipe.curate.stages if s != "semantic"]})
    local, stream = _both(recipe.dataset, curate, tmp_path, eval_set=recipe.evaluate.eval_set)
    _assert_same(local, stream)
    # the demo's planted duplicates, contaminated rows and broken lines are found, by both
    assert {"exact_dup", "near_dup_minhash", "contaminated:eval"} <= set(
        local.decisions["reason"].drop_nulls()
    )
    assert local.quarantined > 0 and local.report["largest_clusters"]
    # decontaminate compares against the eval set with a scheme chosen from all rows: it holds its rows
    assert stream.report["stage_stats"]["executor"]["in_memory"] == ["decontaminate"]


def test_noisy_near_dup_corpus_many_batches(tmp_path: Path, noisy_lines: list[str]) -> None:
    source = tmp_path / "noisy.jsonl"
    source.write_text("\n".join(noisy_lines) + "\n", encoding="utf-8")
    dataset = DatasetConfig(path=source, name="noisy", kind="sft")
    local, stream = _both(dataset, CurateConfig.model_validate(NOISY), tmp_path)
    _assert_same(local, stream)
    dropped = local.decisions.filter(~pl.col("kept"))
    assert {"pii", "quality", "length", "language", "exact", "minhash"} <= set(dropped["stage"])
    assert local.oversampled > 0 and local.report["counts"]["val"] > 0
    assert set(local.train["label"]) == {"false", "true"}  # 0/1 paired with false/true across batches
    # malformed lines: the same quarantine ids (file lines), the CRLF row read
    assert stream.quarantine["source_line"].to_list() == local.quarantine["source_line"].to_list()
    assert sorted(stream.quarantine["error"].str.slice(0, 12)) == ["invalid JSON", "not a JSON o"]
    assert stream.read > 7 * BATCH  # 8+ batches
    # minhash found its clusters across batches: split kept each on one side
    assert local.report["stage_stats"]["minhash"]["candidate_pairs"] > 0


def test_glob_of_files_and_parquet(tmp_path: Path, noisy_lines: list[str]) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    size = -(-len(noisy_lines) // 3)
    for k in range(3):
        part = noisy_lines[k * size : (k + 1) * size]
        (folder / f"part-{k}.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
    curate = CurateConfig.model_validate(
        {**NOISY, "stages": ["schema", "normalize", "exact", "minhash", "split"]}
    )
    local, stream = _both(
        DatasetConfig(path=folder / "part-*.jsonl", name="glob", kind="sft"), curate, tmp_path
    )
    _assert_same(local, stream)
    assert stream.decisions["sample_id"].str.starts_with("glob:2-").any()
    assert stream.report["source"]["files"] == local.report["source"]["files"]
    rows = [
        json.loads(line) for line in noisy_lines if line.startswith('{"prompt": "') and "broken" not in line
    ]
    pl.DataFrame(rows).write_parquet(tmp_path / "rows.parquet")
    local, stream = _both(
        DatasetConfig(path=tmp_path / "rows.parquet", name="pq", kind="sft"), curate, tmp_path
    )
    _assert_same(local, stream)
    assert stream.report["source"]["format"] == "parquet"


def test_csv_is_read_whole_then_streamed(tmp_path: Path) -> None:
    lines = ["prompt,response,label"] + [
        f'"질문 {i}","답변 {i % 40} 입니다, 그렇죠",{"ab"[i % 2]}' for i in range(120)
    ]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    curate = CurateConfig.model_validate({"stages": ["schema", "normalize", "exact", "minhash", "split"]})
    local, stream = _both(DatasetConfig(path=tmp_path / "rows.csv", name="csv", kind="sft"), curate, tmp_path)
    _assert_same(local, stream)
    assert any("read whole by the loader" in note for note in stream.report["source"]["notes"])


def test_row_local_stage_after_a_grouping_stage(tmp_path: Path, noisy_lines: list[str]) -> None:
    source = tmp_path / "noisy.jsonl"
    source.write_text("\n".join(noisy_lines) + "\n", encoding="utf-8")
    curate = CurateConfig.model_validate(
        {**NOISY, "stages": ["schema", "exact", "normalize", "minhash", "length", "balance", "split"]}
    )
    local, stream = _both(DatasetConfig(path=source, name="order", kind="sft"), curate, tmp_path)
    _assert_same(local, stream)


def test_tokenizer_lengths_refused_in_one_line(tmp_path: Path) -> None:
    curate = CurateConfig.model_validate({"executor": "stream", "length": {"tokenizer": "tunelab-tiny"}})
    dataset = DatasetConfig(path=DEMO / "sft.jsonl", name="t", kind="sft")
    with pytest.raises(UserError, match=r"^curate.length.tokenizer: executor stream") as found:
        curate_dataset(dataset, curate, Workspace(tmp_path / "ws"), write=False, show_progress=False)
    assert "\n" not in str(found.value)


def test_cli_curate_executor_stream_writes_the_same_curation(tmp_path: Path) -> None:
    """The curation folder (files byte-equal but the report) and the warehouse rows, local and streamed."""
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse import store

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: '{DEMO / 'sft.jsonl'}', name: cli, kind: sft}}\n"
        "curate: {stages: [schema, normalize, pii, length, exact, minhash, balance, split], stream_batch_rows: 37,"
        " length: {min_chars: {response: 5}}, balance: {label: label, max_per_label: 60, oversample: true}}\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    ids = []
    for flags in ([], ["--executor", "stream"]):
        result = CliRunner().invoke(app, ["curate", str(recipe), "-w", str(ws), *flags])
        assert result.exit_code == 0, result.output
        ids.append(result.output.strip().splitlines()[-1])
    folders = [ws / "curations" / i for i in ids]
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(p.name for p in folders[1].iterdir())
    for name in sorted(p.name for p in folders[0].glob("*.parquet")):
        assert pl.read_parquet(folders[0] / name).equals(pl.read_parquet(folders[1] / name)), name
    for name in ("train.jsonl", "val.jsonl"):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    assert not list((ws / "cache").glob("tunelab-stream-*"))  # the scratch folder is gone
    db = Workspace(ws).warehouse
    for table in ("samples", "decisions", "quarantine"):
        rows = [
            store.query(db, f"select * exclude (curation_id) from {table} where curation_id = ?", [i])
            for i in ids
        ]
        order = [c for c in ("sample_id", "stage", "source_line", "field", "signal") if c in rows[0].columns]
        assert rows[0].height > 0 and rows[0].sort(order).equals(rows[1].sort(order)), table
    versions = store.query(db, "select data_version, read, kept, dropped, quarantined from curations")
    assert versions.unique().height == 1


def test_other_encodings_are_read_whole(tmp_path: Path) -> None:
    """A CP949 JSON-lines file, and a UTF-8 one with a broken byte: the loader decides the encoding of the
    whole file, so both are read whole (and said so), with the local quarantine."""
    rows = [
        json.dumps({"prompt": f"질문 {i}", "response": f"답변 {i % 30} 입니다"}, ensure_ascii=False)
        for i in range(90)
    ]
    (tmp_path / "cp949.jsonl").write_bytes(("\n".join(rows) + "\n").encode("cp949"))
    broken = ("\n".join(rows[:50]) + "\n").encode() + b'{"prompt": "\xff\xfe", "response": "x"}\n'
    (tmp_path / "broken.jsonl").write_bytes(broken + ("\n".join(rows[50:]) + "\n").encode())
    curate = CurateConfig.model_validate({"stages": ["schema", "normalize", "exact", "split"]})
    for name in ("cp949", "broken"):
        dataset = DatasetConfig(path=tmp_path / f"{name}.jsonl", name=name, kind="sft")
        local, stream = _both(dataset, curate, tmp_path)
        _assert_same(local, stream)
        assert any("read whole by the loader" in note for note in stream.report["source"]["notes"])
