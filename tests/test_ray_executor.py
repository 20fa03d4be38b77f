"""`curate.executor: ray` gives the local executor's decisions, on a real Ray cluster this test starts.

One cluster per test session (`ray start --head --block --num-cpus 2` on free ports, its own temp dir),
shared by every test here and stopped by its process id afterwards; inputs come as several files so the
cluster reads and processes at least two blocks at once. Skipped when the `ray` extra is not installed
(`make test` installs it).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.recipe import load_recipe
from tunelab.records.config import DatasetConfig
from tunelab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tunelab" / "demo"
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shards(source: Path, folder: Path, parts: int) -> Path:
    """`source` cut into `parts` files (lines as they are, broken ones included); returns the glob."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    size = -(-len(lines) // parts)
    for k in range(parts):
        (folder / f"part-{k}.jsonl").write_text("".join(lines[k * size : (k + 1) * size]), encoding="utf-8")
    return folder / "part-*.jsonl"


def _assert_same(local, ray) -> None:  # noqa: ANN001 (two CurationResults)
    # frame-equal in the local order: same ids dropped, same reason, ref_sample_id, score, evidence
    assert ray.decisions.equals(local.decisions)
    assert ray.train.equals(local.train)
    assert ray.val.equals(local.val)
    assert ray.quarantine.equals(local.quarantine)
    sort = ["stage", "sample_id", "field", "signal"]
    assert ray.signals.sort(sort).equals(local.signals.sort(sort))
    assert (ray.read, ray.kept, ray.dropped, ray.quarantined) == (
        local.read, local.kept, local.dropped, local.quarantined,
    )  # fmt: skip
    assert ray.data_version == local.data_version

    # (sorted: report.py orders reasons of equal count as polars' group_by happens to, on either executor)
    def reasons(result) -> list:  # noqa: ANN001
        return sorted(tuple(r.values()) for r in result.report["reasons"])

    assert reasons(ray) == reasons(local)


def _both(dataset: DatasetConfig, curate: CurateConfig, address: str, tmp: Path, **kwargs):  # noqa: ANN202
    ws = Workspace(tmp / "ws")
    local = curate_dataset(dataset, curate, ws, write=False, show_progress=False, **kwargs)
    on_ray = curate.model_copy(update={"executor": "ray", "ray_address": address})
    ray = curate_dataset(dataset, on_ray, ws, write=False, show_progress=False, **kwargs)
    return local, ray


def test_demo_data_same_decisions_on_ray(ray_address: str, tmp_path: Path) -> None:
    recipe = load_recipe(DEMO / "recipe.yaml")
    glob = _shards(DEMO / "sft.jsonl", tmp_path / "demo", 2)
    dataset = recipe.dataset.model_copy(update={"path": glob})
    local, ray = _both(dataset, recipe.curate, ray_address, tmp_path, eval_set=recipe.evaluate.eval_set)
    _assert_same(local, ray)
    # the demo's planted duplicates and its broken lines are found, by both
    reasons = set(local.decisions["reason"].drop_nulls())
    assert {"exact_dup", "near_dup_minhash"} <= reasons
    assert local.quarantined > 0
    # rows in and dropped per stage (seconds differ: the cluster's are summed over workers)
    counts = [[(s["stage"], s["in"], s["dropped"]) for s in r.report["stages"]] for r in (local, ray)]
    assert counts[0] == counts[1]
    assert ray.report["source"]["executor"] == "ray"


def _noisy_corpus(path: Path, docs: int) -> None:
    """Near-dup-heavy Korean/English documents from benchmarks/minhash_bench.py, as SFT rows with labels,
    plus rows each row-local stage drops (PII, repetition, too short, Japanese) and a broken line."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from minhash_bench import make_corpus
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    texts = make_corpus(docs, seed=3)
    lines = []
    for i, text in enumerate(texts):
        cut = len(text) // 5
        row = {"prompt": text[:cut] + "?", "response": text[cut:] + ".", "label": "ab"[i % 3 == 0]}
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
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_noisy_near_dup_corpus_same_decisions_on_ray(ray_address: str, tmp_path: Path) -> None:
    source = tmp_path / "noisy.jsonl"
    _noisy_corpus(source, 800)
    glob = _shards(source, tmp_path / "noisy", 3)
    dataset = DatasetConfig(path=glob, name="noisy", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": [
                "schema", "normalize", "language", "pii", "quality", "length", "exact", "minhash", "balance",
                "split",
            ],
            "length": {"min_chars": {"response": 5}},
            "pii": {"action": "drop"},
            "exact": {"key": {}},
            "minhash": {"threshold": 0.7, "keep": "longest"},
            "balance": {"label": "label", "max_per_label": 250, "seed": 1},
            "split": {"val_ratio": 0.2, "stratify": "label", "seed": 7},
        }
    )  # fmt: skip
    local, ray = _both(dataset, curate, ray_address, tmp_path)
    _assert_same(local, ray)
    dropped = local.decisions.filter(~pl.col("kept"))
    stages = set(dropped["stage"])
    # every kind of stage decided something here: row-local on the cluster, grouping on the driver
    assert {"pii", "quality", "length", "language", "exact", "minhash", "balance"} <= stages
    assert dropped.filter(pl.col("stage") == "minhash")["ref_sample_id"].null_count() == 0
    # exact and minhash ran grouped on the cluster (hash shuffles by their keys), the row-local stages in
    # map_batches
    on_ray = ray.report["stage_stats"]["executor"]["on_ray"]
    assert on_ray == ["schema", "normalize", "language", "pii", "quality", "length", "exact", "minhash"]
    assert local.report["counts"]["val"] > 0


def test_cli_curate_executor_ray_writes_the_same_curation(ray_address: str, tmp_path: Path) -> None:
    """The curation folder and the warehouse rows, local and on Ray; on Ray the samples (every read row)
    come as Parquet shards from the workers, read by DuckDB by their glob."""
    from typer.testing import CliRunner

    from tunelab.cli import app
    from tunelab.warehouse import store

    glob = _shards(DEMO / "sft.jsonl", tmp_path / "cli", 2)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: '{glob}', name: cli, kind: sft}}\n"
        "curate: {stages: [schema, normalize, pii, length, balance, split], "
        "length: {min_chars: {response: 5}}, balance: {label: label, max_per_label: 60, oversample: true}}\n",
        encoding="utf-8",
    )
    ws = tmp_path / "ws"
    ids = []
    for flags in ([], ["--executor", "ray", "--ray-address", ray_address]):
        result = CliRunner().invoke(app, ["curate", str(recipe), "-w", str(ws), *flags])
        assert result.exit_code == 0, result.output
        ids.append(result.output.strip().splitlines()[-1])
    folders = [ws / "curations" / i for i in ids]
    assert sorted(p.name for p in folders[0].iterdir()) == sorted(p.name for p in folders[1].iterdir())
    for name in ("train.parquet", "val.parquet", "decisions.parquet", "quarantine.parquet"):
        assert pl.read_parquet(folders[0] / name).equals(pl.read_parquet(folders[1] / name)), name
    db = Workspace(ws).warehouse
    for table in ("samples", "decisions", "quarantine"):
        rows = [
            store.query(db, f"select * exclude (curation_id) from {table} where curation_id = ?", [i])
            for i in ids
        ]
        order = [c for c in ("sample_id", "stage", "source_line") if c in rows[0].columns]
        assert rows[0].height > 0 and rows[0].sort(order).equals(rows[1].sort(order)), table
    versions = store.query(db, "select data_version from curations where curation_id in (?, ?)", ids)
    assert versions["data_version"].n_unique() == 1


def test_unreachable_cluster_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'tunelab[ray]')")
    from tunelab.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"dataset: {{path: '{DEMO / 'sft.jsonl'}', name: x, kind: sft}}\n", encoding="utf-8")
    port = _free_port()  # nothing listens there; ray.init itself would wait minutes on it
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["curate", str(recipe), "-w", str(tmp_path / "ws"), "--executor", "ray", "--ray-address",
              f"127.0.0.1:{port}"])  # fmt: skip
    assert exit_.value.code == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: recipe.yaml: curate.ray_address: no Ray cluster answers at '127.0.0.1:{port}' (Connection "
        "refused); start one with `ray start --head` or give its address"
    ]


def test_missing_ray_extra_names_it(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"dataset: {{path: '{DEMO / 'sft.jsonl'}', name: x, kind: sft}}\ncurate: {{executor: ray}}\n",
        encoding="utf-8",
    )
    # `import ray` fails as it does where the extra is not installed
    code = (
        "import sys; sys.modules['ray'] = None; from tunelab.cli import main; "
        f"main(['curate', {str(recipe)!r}, '-w', {str(tmp_path / 'ws')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pip install 'tunelab[ray]'" in lines[0]
    assert "Traceback" not in done.stderr


def test_rows_stay_off_the_driver_and_decisions_come_from_shards(ray_address: str, tmp_path: Path) -> None:
    """Row-local stages, exact, minhash, balance and split: the Ray executor keeps the rows in the object
    store; the driver receives narrow columns only (sample ids, `_order`, label), the workers write the
    decisions and signals as shards and the warehouse reads them by their glob: the same rows as local."""
    from tunelab.curate.executors import ray as ray_executor
    from tunelab.warehouse import store

    source = tmp_path / "noisy.jsonl"
    _noisy_corpus(source, 400)
    dataset = DatasetConfig(path=_shards(source, tmp_path / "noisy", 2), name="noisy", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": ["schema", "normalize", "language", "pii", "quality", "exact", "minhash", "balance", "split"],
            "pii": {"action": "drop"},
            "minhash": {"threshold": 0.7},
            "balance": {"label": "label", "max_per_label": 150, "oversample": True, "seed": 1},
            "split": {"val_ratio": 0.2, "stratify": "label", "seed": 7},
        }
    )  # fmt: skip
    ws = Workspace(tmp_path / "ws")
    local = curate_dataset(dataset, curate, ws, show_progress=False)
    on_ray = curate.model_copy(update={"executor": "ray", "ray_address": ray_address})
    ray = curate_dataset(dataset, on_ray, ws, show_progress=False)
    fetches = ray.report["stage_stats"]["executor"]["driver_fetches"]
    assert {f["step"] for f in fetches} >= {"narrow columns", "exact ids", "minhash component members"}
    texts = {"prompt", "response", "content", "text"}
    for fetch in fetches:  # text reaches the driver only for the report's largest clusters (20 x 11 rows)
        assert not texts & set(fetch["columns"]) or (
            fetch["step"] == "report clusters" and fetch["rows"] <= 220
        )
    assert max(f["rows"] for f in fetches) <= ray.read  # narrow columns of every row, at most
    # the written curation and the warehouse rows are the local ones
    folders = [local.out_dir, ray.out_dir]
    for name in ("train.parquet", "val.parquet", "decisions.parquet", "quarantine.parquet"):
        assert pl.read_parquet(folders[0] / name).equals(pl.read_parquet(folders[1] / name)), name
    sort = ["stage", "sample_id", "field", "signal"]  # per stage, a stage's signals come block by block
    signals = [pl.read_parquet(f / "signals.parquet").sort(sort) for f in folders]
    assert signals[0].height and signals[0].equals(signals[1])
    for table, order in (("decisions", ["sample_id", "stage"]), ("signals", ["sample_id", "stage", "field", "signal"]),
                         ("samples", ["sample_id"])):  # fmt: skip
        rows = [
            store.query(ws.warehouse, f"select * exclude (curation_id) from {table} where curation_id = ?", [r.curation_id])
            for r in (local, ray)
        ]  # fmt: skip
        assert rows[0].height > 0 and rows[0].sort(order).equals(rows[1].sort(order)), table
    assert ray.data_version == local.data_version
    assert ray.report["counts"] == local.report["counts"]
    stages = [[(s["stage"], s["in"], s["dropped"]) for s in r.report["stages"]] for r in (local, ray)]
    assert stages[0] == stages[1]
    assert ray.report["stage_stats"]["labels"] == local.report["stage_stats"]["labels"]
    assert ray.report["largest_clusters"] == local.report["largest_clusters"]
    assert ray.report["length_input"] == local.report["length_input"]
    assert ray.report["length_output"] == local.report["length_output"]
    assert ray_executor.off_driver(on_ray) and ray.decisions.height == 0  # in the folder and the warehouse
