"""What the loader derives from a record: one text per label class, labels from an id, the source id kept
through to train.parquet and the warehouse."""

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.errors import UserError
from tunelab.records.config import DatasetConfig
from tunelab.records.loader import load_dataset_records
from tunelab.warehouse import store
from tunelab.warehouse.connection import SCHEMA_VERSION, write_connection


def load(path, **kw):
    return load_dataset_records(DatasetConfig(path=path, name="t", **kw))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_labels_1_and_1_0_and_true_are_one_class(tmp_path: Path):
    values = [1, 1.0, "1", "1.0", True, "True", "TRUE", 0, 0.0, False, "false"]
    rows = [{"prompt": f"p{i}", "response": "r", "label": v} for i, v in enumerate(values)]
    result = load(write_jsonl(tmp_path / "bool.jsonl", rows))
    assert result.frame["label"].to_list() == ["true"] * 7 + ["false"] * 4
    (note,) = [n for n in result.source["notes"] if n.startswith("labels normalised")]
    assert note.startswith("labels normalised: 10 values rewritten")
    numbers = [{"prompt": "p", "response": "r", "label": v} for v in (1, 1.0, "2.0", 2, "2   ", 0.5)]
    result = load(write_jsonl(tmp_path / "num.jsonl", numbers))
    # whitespace is the normalize stage's to trim (it records the change); 0.5 stays a number's text
    assert result.frame["label"].to_list() == ["1", "1", "2", "2", "2   ", "0.5"]


def test_label_derived_from_an_id_prefix(tmp_path: Path):
    rows = [
        {"id": "conversation_915", "prompt": "a", "response": "b"},
        {"id": "qa_12", "prompt": "c", "response": "d"},
        {"id": "123", "prompt": "e", "response": "f"},
    ]
    path = write_jsonl(tmp_path / "ids.jsonl", rows)
    result = load(path, fields={"label": {"from": "id", "regex": "^([a-z]+)"}})
    assert result.frame["label"].to_list() == ["conversation", "qa", None]
    assert result.frame["source_id"].to_list() == ["conversation_915", "qa_12", "123"]
    assert "label: 1 record where 'id' did not match the regex (label null)" in result.source["notes"]
    with pytest.raises(UserError, match=r"dataset.fields.label.from: column 'ident' is in no record"):
        load(path, fields={"label": {"from": "ident", "regex": "^([a-z]+)"}})
    with pytest.raises(Exception, match="has no group"):
        DatasetConfig(path=path, name="t", fields={"label": {"from": "id", "regex": "^[a-z]+"}})


def test_id_field_names_the_source_id(tmp_path: Path):
    rows = [{"key": 10 + i, "uuid": f"u{i}", "prompt": "p", "response": "r"} for i in range(2)]
    path = write_jsonl(tmp_path / "keys.jsonl", rows)
    assert load(path).frame["source_id"].to_list() == ["u0", "u1"]
    assert load(path, id_field="key").frame["source_id"].to_list() == ["10", "11"]
    with pytest.raises(UserError, match="dataset.id_field: column 'nope' is in no record"):
        load(path, id_field="nope")


def test_source_id_reaches_train_parquet_and_the_warehouse(tmp_path: Path):
    rows = [{"id": f"conv_{i}", "prompt": f"질문 {i}번", "response": f"답변 {i}번입니다"} for i in range(6)]
    path = write_jsonl(tmp_path / "ids.jsonl", rows)
    dataset = DatasetConfig(path=path, name="ids")
    result = curate_dataset(dataset, CurateConfig(stages=["schema"]), tmp_path / "ws", show_progress=False)
    train = pl.read_parquet(result.train_path)
    assert sorted(train["source_id"].to_list()) == [f"conv_{i}" for i in range(6)]
    db = tmp_path / "ws" / "tunelab.duckdb"
    samples = store.query(db, "SELECT sample_id, source_id FROM samples ORDER BY sample_id")
    assert samples.rows() == [(f"ids:{i}", f"conv_{i}") for i in range(6)]
    report = json.loads((result.out_dir / "report.json").read_text(encoding="utf-8"))
    assert report["source"] == {
        "format": "jsonl",
        "encoding": "utf-8",
        "notes": ["source ids from 'id' (6 records)"],
    }
    stored = json.loads(store.query(db, "SELECT report FROM curations")["report"][0])
    assert stored["source"]["encoding"] == "utf-8"


def test_a_version_3_warehouse_gains_samples_source_id(tmp_path: Path):
    db = tmp_path / "old.duckdb"
    with write_connection(db):
        pass
    con = duckdb.connect(str(db))
    try:
        con.execute("ALTER TABLE samples DROP COLUMN source_id")
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (3, now())")
    finally:
        con.close()
    assert SCHEMA_VERSION >= 4
    names = store.query(db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'samples'")
    assert "source_id" in names["column_name"].to_list()
