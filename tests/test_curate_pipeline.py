"""The whole pipeline: demo data's planted defects, accounting under random dirty input, CLI, outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.recipe import load_recipe
from tunelab.records.config import DatasetConfig

DEMO = Path(__file__).resolve().parents[1] / "tunelab" / "demo"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CHATBOT = SHARED / "songys__Chatbot_data" / "ChatbotData.csv"


@pytest.fixture(scope="module")
def demo_curation(tmp_path_factory: pytest.TempPathFactory):
    if not (DEMO / "planted.json").exists():
        pytest.skip("demo data not generated yet (tunelab/demo/planted.json)")
    planted = json.loads((DEMO / "planted.json").read_text())
    recipe = load_recipe(DEMO / "recipe.yaml")
    # the shipped recipe must carry the threshold the data was calibrated for
    assert recipe.curate.semantic.threshold == planted["semantic_threshold"]
    workspace = tmp_path_factory.mktemp("ws")
    result = curate_dataset(
        recipe.dataset, recipe.curate, workspace, recipe.evaluate.eval_set, show_progress=False
    )
    return planted, result, workspace


def test_demo_planted_defects_are_found_sample_by_sample(demo_curation) -> None:
    planted, result, _ = demo_curation
    sft = planted["sft"]
    dropped = result.decisions.filter(~pl.col("kept") & (pl.col("stage") != "balance"))
    for key, expected in sft["drops"].items():
        code = key
        found = set(dropped.filter(pl.col("reason").str.starts_with(code))["sample_id"])
        assert found == set(expected), (
            f"{key}: missing {set(expected) - found}, extra {found - set(expected)}"
        )
    assert dropped.height == sft["drop_count"]
    assert sorted(result.quarantine["source_line"]) == sorted(q["line"] for q in sft["quarantined"])
    assert result.read == sft["read"] == result.kept + result.dropped + result.quarantined
    # every dedup drop names the planted representative
    refs = dict(
        dropped.filter(pl.col("ref_sample_id").is_not_null()).select("sample_id", "ref_sample_id").iter_rows()
    )
    for defect in planted["sft"]["defects"]:
        if defect.get("ref_sample_id") and defect["stage"] in ("exact", "minhash", "semantic"):
            assert refs[defect["sample_id"]] == defect["ref_sample_id"], defect


def test_demo_outputs_are_loadable_and_accounted_in_sql(demo_curation) -> None:
    from datasets import load_dataset

    _, result, workspace = demo_curation
    out = result.out_dir
    for name in (
        "train.parquet",
        "val.parquet",
        "train.jsonl",
        "val.jsonl",
        "decisions.parquet",
        "quarantine.parquet",
        "report.json",
        "report.md",
    ):
        assert (out / name).is_file(), name
    train = load_dataset("parquet", data_files=str(out / "train.parquet"), split="train")
    val_json = load_dataset("json", data_files=str(out / "val.jsonl"), split="train")
    assert len(train) == result.train.height and len(val_json) == result.val.height
    assert {"sample_id", "prompt", "response", "label", "content_hash"} <= set(train.column_names)
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["read"] == 392 and report["largest_clusters"]
    assert "Largest duplicate clusters" in (out / "report.md").read_text()
    decisions = pl.read_parquet(out / "decisions.parquet")
    assert decisions.columns == ["sample_id", "stage", "kept", "reason", "ref_sample_id", "score", "evidence"]
    dedup = decisions.filter(pl.col("reason").is_in(["exact_dup", "near_dup_minhash", "near_dup_semantic"]))
    assert dedup["ref_sample_id"].null_count() == 0 and dedup["score"].null_count() == 0
    with duckdb.connect(str(workspace / "tunelab.duckdb"), read_only=True) as con:
        rows = con.execute(
            """
            WITH outcome AS (
                SELECT sample_id, 'dropped' AS o FROM decisions WHERE curation_id = $id AND NOT kept
                UNION ALL SELECT sample_id, 'final' FROM decisions WHERE curation_id = $id AND stage = 'final'
                UNION ALL SELECT dataset || ':' || source_row, 'quarantine' FROM quarantine WHERE curation_id = $id)
            SELECT count(*), count(DISTINCT sample_id), (SELECT "read" FROM curations WHERE curation_id = $id)
            FROM outcome WHERE sample_id NOT LIKE '%#dup%'
            """,
            {"id": result.curation_id},
        ).fetchall()
    total, distinct, read = rows[0]
    assert total == distinct == read == 392


LINE = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "prompt": st.one_of(st.text(max_size=30), st.integers(), st.none(), st.just("같은 질문")),
            "response": st.one_of(
                st.text(max_size=40), st.lists(st.text(max_size=3), max_size=2), st.just("같은 답변입니다")
            ),
            "label": st.sampled_from(["a", "b", "c"]),
        },
    ).map(lambda d: json.dumps(d, ensure_ascii=False)),
    st.sampled_from(['{"prompt": "broken', "[1, 2]", "not json at all", '"a string"']),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=40))
def test_accounting_holds_on_random_dirty_input(lines: list[str], tmp_path: Path) -> None:
    path = tmp_path / "dirty.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    curate = CurateConfig.model_validate(
        {
            "stages": ["schema", "normalize", "length", "exact", "minhash", "balance", "split"],
            "length": {"min_chars": {"response": 2}},
            "balance": {"max_per_label": 3, "oversample": True},
            "split": {"val_ratio": 0.3},
        }
    )
    dataset = DatasetConfig(path=path, name="dirty", kind="sft")
    result = curate_dataset(dataset, curate, tmp_path, write=False, show_progress=False)
    assert result.kept + result.dropped + result.quarantined == result.read
    drops = result.decisions.filter(~pl.col("kept"))
    assert drops["reason"].null_count() == 0 and (drops["reason"].str.len_chars() > 0).all()
    assert drops["sample_id"].n_unique() == drops.height  # dropped once, by the first stage that saw it
    finals = result.decisions.filter(pl.col("stage") == "final")["sample_id"]
    assert set(finals).isdisjoint(set(drops["sample_id"]))
    assert result.train.height + result.val.height == result.kept + result.oversampled


def run_cli(args: list[str]):
    from tunelab.cli import app

    return CliRunner().invoke(
        app, args, catch_exceptions=True, env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    )


def test_cli_curate_chatbot_data_with_field_map(tmp_path: Path) -> None:
    if not CHATBOT.exists():
        pytest.skip(f"{CHATBOT} absent (shared datasets are not part of a fresh clone)")
    recipe = tmp_path / "chatbot.yaml"
    recipe.write_text(
        f"""
dataset: {{path: {CHATBOT}, name: chatbot, kind: sft, fields: {{prompt: Q, response: A, label: label}}}}
curate:
  stages: [schema, normalize, length, exact, minhash, balance, split]
  length: {{min_chars: {{response: 2}}}}
  balance: {{max_per_label: 3000, seed: 0}}
  split: {{val_ratio: 0.1, stratify: label}}
workspace: {{dir: {tmp_path / "ws"}}}
""",
        encoding="utf-8",
    )
    out = run_cli(["curate", str(recipe)])
    assert out.exit_code == 0, out.output
    curation_id = out.output.strip().splitlines()[-1]
    folder = tmp_path / "ws" / "curations" / curation_id
    train, val = pl.read_parquet(folder / "train.parquet"), pl.read_parquet(folder / "val.parquet")
    report = json.loads((folder / "report.json").read_text())
    c = report["counts"]
    assert c["read"] == 11823 and c["quarantined"] == 0
    assert train.height + val.height == c["kept"] and abs(val.height / c["kept"] - 0.1) < 0.01
    assert set(train["label"]) == {"0", "1", "2"}  # '2   ' was stripped by normalize
    assert train.filter(pl.col("label") == "0").height + val.filter(pl.col("label") == "0").height == 3000
    reasons = {r["reason"]: r["count"] for r in report["reasons"]}
    assert reasons["exact_dup"] > 0 and reasons["near_dup_minhash"] > 0
    assert set(train["sample_id"]).isdisjoint(set(val["sample_id"]))


def test_cli_audit_broken_file_prints_a_report(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(
        '{"prompt": "안녕", "response": "반가워요 정말로"}\n{"prompt": "x", broken\n{"prompt": 5, "response": "ok"}\n'
    )
    out = run_cli(
        ["audit", str(path), "--minhash-thresholds", "0.5,0.9", "--workspace", str(tmp_path / "ws")]
    )
    # 1 of 3 records quarantined is over curate.max_quarantine_ratio (0.05): printed in full, then exit 3
    assert out.exit_code == 3, out.output
    assert "error: broken (" in out.output and "1 of 3 records quarantined" in out.output
    assert (
        "invalid JSON" in out.output and "wrong_type:prompt" in out.output and "threshold sweep" in out.output
    )
    assert not (tmp_path / "ws" / "curations").exists()
    bad = run_cli(["audit", str(path), "--minhash-thresholds", "0.5,x"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_cli_audit_reads_an_unknown_extension_with_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("Q\tA\n안녕\t반가워요 오늘도 좋은 하루\n", encoding="utf-8")
    # a tab in the first line: read as TSV by content
    guessed = run_cli(["audit", str(path), "--field", "prompt=Q", "--field", "response=A"])
    assert guessed.exit_code == 0, guessed.output
    assert "read 1 = kept 1 + dropped 0 + quarantined 0" in guessed.output
    unknown = tmp_path / "notes.txt"
    unknown.write_text("그냥 글\n또 글\n", encoding="utf-8")
    refused = run_cli(["audit", str(unknown)])
    assert refused.exit_code != 0 and "cannot tell the format" in str(refused.exception or refused.output)
    told = run_cli(
        ["audit", str(path), "--input-format", "tsv", "--field", "prompt=Q", "--field", "response=A"]
    )
    assert told.exit_code == 0, told.output
    assert "read 1 = kept 1 + dropped 0 + quarantined 0" in told.output


def test_cli_audit_json_is_one_document_with_sweep_and_quarantine(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": f"질문 {i}번", "response": f"이것은 {i}번째 답변입니다 아주 길게 적어 봅니다"}
        for i in range(6)
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows + rows[:2]] + ['{"prompt": "x", broken']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_cli(
        [
            "audit",
            str(path),
            "--format",
            "json",
            "--minhash-thresholds",
            "0.5,0.9",
            "-w",
            str(tmp_path / "ws"),
        ]
    )
    assert out.exit_code == 3, out.output  # 1 of 9 quarantined is over curate.max_quarantine_ratio
    data = json.loads(out.stdout)  # stdout holds the JSON document and nothing else
    assert data["counts"]["read"] == 9 and data["counts"]["quarantined"] == 1
    assert data["counts"]["kept"] + data["counts"]["dropped"] + 1 == 9
    assert {r["reason"]: r["count"] for r in data["reasons"]}["exact_dup"] == 2
    assert (
        data["quarantined_lines"][0]["line"] == 9 and "invalid JSON" in data["quarantined_lines"][0]["error"]
    )
    sweep = data["sweep"]
    assert sweep["after"] == ["schema", "normalize", "length", "exact"] and sweep["rows"] == 6
    assert [(r["method"], r["threshold"]) for r in sweep["results"]] == [("minhash", 0.5), ("minhash", 0.9)]
    assert data["curation_id"].startswith("mixed-")
    assert not (tmp_path / "ws" / "curations").exists()


def test_cli_curate_json_and_table_modes(tmp_path: Path) -> None:
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    rows = [{"prompt": f"질문 {i}", "response": f"답변 {i}번입니다", "label": "ab"[i % 2]} for i in range(20)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows + rows[:3]) + "\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "dataset: {path: data/train.jsonl, name: small, kind: sft}\n"
        "curate: {stages: [normalize, exact, split], split: {val_ratio: 0.2}}\n",
        encoding="utf-8",
    )
    as_json = run_cli(["curate", str(recipe), "--format", "json", "-w", str(tmp_path / "ws")])
    assert as_json.exit_code == 0, as_json.output
    (curation,) = json.loads(as_json.stdout)["curations"]
    assert curation["counts"]["read"] == 23 and curation["counts"]["kept"] == 20
    assert [s["stage"] for s in curation["stages"]] == ["schema", "normalize", "exact", "split"]
    assert (Path(curation["out_dir"]) / "train.parquet").is_file()
    # another workspace: the same data curated in the same second gets the same id
    as_table = run_cli(["curate", str(recipe), "--workspace", str(tmp_path / "ws2")])
    assert as_table.exit_code == 0, as_table.output
    last = as_table.stdout.strip().splitlines()[-1]
    assert last.startswith("small-") and (tmp_path / "ws2" / "curations" / last / "report.json").is_file()


def test_cli_user_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "audit", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "nope.jsonl" in missing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "audit", str(tmp_path / "nope.jsonl"), "--field", "prompt"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "canonical=source" in bad.stderr


def test_cli_audit_with_recipe_runs_the_recipe_stages(tmp_path: Path) -> None:
    if not (DEMO / "sft.jsonl").exists():
        pytest.skip("demo data not generated yet")
    out = run_cli(
        [
            "audit",
            str(DEMO / "sft.jsonl"),
            "--recipe",
            str(DEMO / "recipe.yaml"),
            "--workspace",
            str(tmp_path),
        ]
    )
    assert out.exit_code == 0, out.output
    for reason in (
        "contaminated:eval",
        "near_dup_minhash",
        "exact_dup",
        "missing_field:response",
        "over_cap:label=teto",
    ):
        assert reason in out.output, reason
    assert not (tmp_path / "curations").exists() and not (tmp_path / "tunelab.duckdb").exists()


def test_cli_audit_threshold_sweep_counts(tmp_path: Path) -> None:
    import re

    if not (DEMO / "sft.jsonl").exists():
        pytest.skip("demo data not generated yet")
    out = run_cli(
        ["audit", str(DEMO / "sft.jsonl"), "--minhash-thresholds", "0.7,0.9", "--workspace", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    rows = dict(re.findall(r"minhash\s*│\s*([\d.]+)\s*│\s*(\d+)", out.output))
    # the 10 planted near-duplicates score 0.80-0.87 against their originals on the raw text, 0.81-0.96 on
    # the dedup key (curate/dedup_key.py) the sweep compares: 5 of them reach 0.9
    assert rows == {"0.7": "10", "0.9": "5"}


def test_stage_list_is_checked_once_schema_first_split_last() -> None:
    from tunelab.errors import UserError
    from tunelab.recipe import parse_recipe

    dataset = {"path": "x.jsonl", "name": "x"}
    assert parse_recipe({"dataset": dataset, "curate": {"stages": ["exact"]}}).curate.stages == [
        "schema",
        "exact",
    ]
    moved = CurateConfig(stages=["normalize", "schema", "split"])
    assert moved.stages == ["schema", "normalize", "split"]
    assert moved.with_stages(["exact"]).stages == ["schema", "exact"]
    with pytest.raises(UserError, match="curate.stages: split must be the last stage"):
        parse_recipe({"dataset": dataset, "curate": {"stages": ["split", "exact"]}})
