"""semantic, balance and split on a real Ray cluster (executors/ray_groups.py) give the local decisions.

semantic: embeddings from an actor pool, each in a fresh workspace so both executors really embed (and
write the same cache). balance + split: the driver decides on narrow columns only (recorded in
ray_groups.DRIVER_FRAMES), the rows and the '#dup' copies are joined back on the cluster. Uses the
session's cluster (`ray_address` in conftest.py); skipped without the ray extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tunelab.curate.config import CurateConfig
from tunelab.curate.pipeline import curate_dataset
from tunelab.raft import build
from tunelab.recipe import load_recipe
from tunelab.records.config import DatasetConfig
from tunelab.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tunelab" / "demo"


def _shards(lines: list[str], folder: Path, parts: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(lines) // parts)
    for k in range(parts):
        (folder / f"part-{k}.jsonl").write_text("".join(lines[k * size : (k + 1) * size]), encoding="utf-8")
    return folder / "part-*.jsonl"


def _both(dataset: DatasetConfig, curate: CurateConfig, address: str, tmp: Path):  # noqa: ANN202
    """Local, then Ray, each in its own workspace (own embedding cache)."""
    local = curate_dataset(dataset, curate, Workspace(tmp / "ws-local"), write=False, show_progress=False)
    on_ray = curate.model_copy(update={"executor": "ray", "ray_address": address})
    ray = curate_dataset(dataset, on_ray, Workspace(tmp / "ws-ray"), write=False, show_progress=False)
    return local, ray


def _assert_same(local, ray) -> None:  # noqa: ANN001 (two CurationResults)
    assert ray.decisions.equals(local.decisions)  # ids, reasons, ref_sample_id, scores, evidence, order
    assert ray.train.equals(local.train)
    assert ray.val.equals(local.val)
    assert ray.data_version == local.data_version


def test_semantic_embeds_in_an_actor_pool_with_the_local_decisions(ray_address: str, tmp_path: Path) -> None:
    from tunelab.curate.executors import ray_groups
    from tunelab.embeddings.loader import cache_path

    recipe = load_recipe(DEMO / "recipe.yaml")
    lines = (DEMO / "sft.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    dataset = recipe.dataset.model_copy(update={"path": _shards(lines, tmp_path / "demo", 2)})
    curate = recipe.curate.model_copy(update={"stages": ["schema", "normalize", "length", "semantic"]})
    local, ray = _both(dataset, curate, ray_address, tmp_path)
    _assert_same(local, ray)
    dropped = local.decisions.filter(pl.col("stage") == "semantic")
    assert dropped.height >= 5 and dropped["score"].min() >= curate.semantic.threshold
    assert ray.report["stage_stats"]["executor"]["grouped_on_ray"] == ["semantic"]
    seen = ray_groups.DRIVER_FRAMES["semantic"]
    # every distinct text was embedded by the actors (fresh cache); only (key, vector) came back
    assert seen["cached"] == 0 and seen["embedded"] > 300
    assert seen["columns"] == ["_key", "_vector"] and seen["rows"] == seen["embedded"]
    # the actors' vectors are the local ones bit for bit: the same cache file, key for key
    files = [cache_path(tmp_path / w / "cache" / "embeddings", "use-v3", 512) for w in ("ws-local", "ws-ray")]
    stored = [np.load(f) for f in files]
    assert np.array_equal(stored[0]["keys"], stored[1]["keys"])
    assert np.array_equal(stored[0]["vectors"], stored[1]["vectors"])
    # a second run reads the cache: nothing is embedded, the decisions stay
    again = curate_dataset(
        dataset, curate.model_copy(update={"executor": "ray", "ray_address": ray_address}),
        Workspace(tmp_path / "ws-ray"), write=False, show_progress=False,
    )  # fmt: skip
    assert ray_groups.DRIVER_FRAMES["semantic"]["embedded"] == 0
    assert again.decisions.equals(local.decisions)


def _labelled_rows(n: int) -> list[str]:
    """SFT rows with three unequal labels (a: 60 %, b: 30 %, c: 10 %) and wide text the driver must not get."""
    rows = []
    for i in range(n):
        label = "a" if i % 10 < 6 else ("b" if i % 10 < 9 else "c")
        rows.append({"instruction": f"질문 {i}: 이 문장은 몇 번째인가요?", "output": f"{i}번째 답입니다. " * 8,
                     "label": label})  # fmt: skip
    return [json.dumps(r, ensure_ascii=False) + "\n" for r in rows]


def test_balance_oversampling_and_stratified_split_decide_on_narrow_columns(
    ray_address: str, tmp_path: Path
) -> None:
    from tunelab.curate.executors import ray_groups

    glob = _shards(_labelled_rows(300), tmp_path / "labelled", 3)
    dataset = DatasetConfig(path=glob, name="lab", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": ["schema", "normalize", "balance", "split"],
            # 180 a capped at 100 (80 drops); 90 b and 30 c topped up to 100 with 10 + 70 '#dup' copies
            "balance": {"label": "label", "max_per_label": 100, "oversample": True, "seed": 3},
            "split": {"val_ratio": 0.2, "stratify": "label", "seed": 5},
        }
    )
    local, ray = _both(dataset, curate, ray_address, tmp_path)
    _assert_same(local, ray)
    copies = local.decisions.filter(pl.col("reason") == "oversampled")
    assert copies.height == 80 and copies["sample_id"].str.contains("#dup").all()
    assert local.decisions.filter(pl.col("reason") == "over_cap:label=a").height == 80
    both = pl.concat([ray.train, ray.val])
    assert both.height == 300 and both["sample_id"].is_in(copies["sample_id"].implode()).sum() == 80
    # a copy is its source row under its new id
    one = copies.row(0, named=True)
    copy = both.filter(pl.col("sample_id") == one["sample_id"]).drop("sample_id", "split", strict=False)
    source = both.filter(pl.col("sample_id") == one["ref_sample_id"]).drop("sample_id", "split", strict=False)
    assert copy.equals(source)
    assert set(ray.val["label"]) == {"a", "b", "c"}
    # the driver decided on (id, order, label): no text, and far fewer bytes than the rows
    for stage in ("balance", "split"):
        seen = ray_groups.DRIVER_FRAMES[stage]
        assert seen["columns"] == ["sample_id", "_order", "label"], stage
        assert seen["bytes_per_row"] * 4 < seen["full_bytes_per_row"], seen


def test_split_by_golden_document_on_ray(ray_address: str, tmp_path: Path) -> None:
    from tunelab.curate.executors import ray_groups

    docs = [(f"문서{d}", f"문서{d}의 이야기는 {d}년에 시작되었다. 주인공은 사람{d}이다. 장소는 도시{d}이다.")
            for d in range(12)]  # fmt: skip
    qas = []
    for d, (title, text) in enumerate(docs):
        for q, answer in enumerate((f"{d}년", f"사람{d}", f"도시{d}")):
            qas.append(build.QA(id=f"q{d}-{q}", question=f"{title}에 대한 질문 {q}?", answer=answer,
                                document=text))  # fmt: skip
    rows = build.build_rows(qas, build.BuildSettings(k=2, p_golden=0.5, seed=0)).rows
    path = tmp_path / "raft.jsonl"
    build.write_rows(rows, path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    dataset = DatasetConfig(path=_shards(lines, tmp_path / "raft", 2), name="raft", kind="raft")
    curate = CurateConfig.model_validate(
        {"stages": ["schema", "split"], "split": {"val_ratio": 0.25, "seed": 1}}
    )
    local, ray = _both(dataset, curate, ray_address, tmp_path)
    _assert_same(local, ray)
    # the stratify column (default: label) and the golden document: no question, context or answer
    assert ray_groups.DRIVER_FRAMES["split"]["columns"] == ["sample_id", "_order", "label", "_document"]
    stats = ray.report["stage_stats"]["split"]
    assert stats["documents"] == 12 and stats["documents_on_both_sides"] == 0 and stats["val"] > 0


@pytest.mark.parametrize("stage", ["balance", "split"])
def test_a_setting_naming_a_missing_column_is_the_local_message(
    ray_address: str, tmp_path: Path, stage: str
) -> None:
    from tunelab.errors import UserError

    glob = _shards(_labelled_rows(20), tmp_path / "bad", 2)
    dataset = DatasetConfig(path=glob, name="bad", kind="sft")
    settings = {"balance": {"label": "label", "ratios": {"A": 1.0}}, "split": {"stratify": "lable"}}[stage]
    curate = CurateConfig.model_validate({"stages": ["schema", stage], stage: settings})
    messages = []
    for executor in ("local", "ray"):
        with pytest.raises(UserError) as err:
            curate_dataset(dataset, curate.model_copy(update={"executor": executor, "ray_address": ray_address}),
                           Workspace(tmp_path / "ws"), write=False, show_progress=False)  # fmt: skip
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_the_planned_batches_are_the_local_stage_batches(tmp_path: Path) -> None:
    """Without a cluster: the misses grouped by semantic.encode_plan and encoded batch by batch (what the
    actors do) give embed_cached's vectors bit for bit, with part of the texts already cached."""
    from tunelab.curate import semantic
    from tunelab.curate.common import StageContext
    from tunelab.curate.config import SemanticSettings
    from tunelab.curate.executors.ray_groups import Encoder
    from tunelab.embeddings.loader import cache_lookup, cache_path, text_keys

    rows = [json.loads(line) for line in _labelled_rows(120)]
    texts = [f"{r['instruction']} {r['output'][: 20 + 7 * (i % 13)]}" for i, r in enumerate(rows)]
    texts += texts[:10]  # repeats: one vector per distinct text
    cfg = SemanticSettings(batch_size=16, max_tokens=24)  # a budget that cuts the longer rows
    semantic.embed(texts[:30], cfg, StageContext(cache_dir=tmp_path / "warm"))  # some hits
    local = semantic.embed(texts, cfg, StageContext(cache_dir=tmp_path / "warm"))

    budgeted = semantic.budget_texts(texts, cfg.max_tokens)
    keys = text_keys("use-v3", budgeted)
    # the cache as it was before the second call: only the first 30 texts
    semantic.embed(texts[:30], cfg, StageContext(cache_dir=tmp_path / "fresh"))
    found = cache_lookup(keys, 512, cache_path(tmp_path / "fresh", "use-v3", 512))
    assert 0 < found.hit.sum() < len(texts)
    lengths = np.array([len(t) for t in budgeted])[~found.hit][found.first_index]
    batch, position = semantic.encode_plan(found.miss_keys, lengths, cfg.batch_size)
    text_of = dict(zip(keys.tolist(), budgeted, strict=True))
    encoder = Encoder("use-v3", cfg.batch_size)
    vectors = np.zeros((found.miss_keys.size, 512), np.float32)
    for blocks in ([np.unique(batch)], np.array_split(np.unique(batch), 3)):  # one block, or three
        for members_of in blocks:
            members = np.flatnonzero(np.isin(batch, members_of))
            block = pl.DataFrame(
                {
                    "_batch": batch[members],
                    "_pos": position[members],
                    "_key": pl.Series(found.miss_keys[members], dtype=pl.UInt64),
                    "_text": [text_of[k] for k in found.miss_keys[members].tolist()],
                }
            ).reverse()  # the actor orders a block by planned position itself
            out = pl.from_arrow(encoder(block.to_arrow()))
            slots = np.searchsorted(found.miss_keys, out["_key"].to_numpy())
            vectors[slots] = np.asarray(out["_vector"].to_list(), dtype=np.float32)
    found.out[np.flatnonzero(~found.hit)] = vectors[found.inverse.reshape(-1)]
    assert np.array_equal(found.out, local)


def test_balance_and_split_follow_the_frame_order_whatever_order_says(ray_address: str) -> None:
    """Within a driver segment `_order` may be stale; the grouped steps decide in the frame's row order."""
    from tunelab.curate import balance, split
    from tunelab.curate.common import StageContext
    from tunelab.curate.executors import ray_groups
    from tunelab.curate.executors.ray import connect

    connect(ray_address)
    rows = [json.loads(line) for line in _labelled_rows(90)]
    frame = pl.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(90)],
            "text": [r["output"] for r in rows],
            "label": [r["label"] for r in rows],
            "_order": list(range(90))[::-1],  # stale: the reverse of the rows' order
        }
    )
    curate = CurateConfig.model_validate(
        {
            "balance": {"label": "label", "max_per_label": 30, "oversample": True, "seed": 4},
            "split": {"val_ratio": 0.3, "stratify": "label", "seed": 4},
        }
    )
    local_ctx, ray_ctx = StageContext(), StageContext()
    local = balance.run(frame.drop("_order"), curate.balance, local_ctx)
    local = split.run(local.frame, curate.split, local_ctx)
    on_ray = ray_groups.balance_on_ray(frame, curate, ray_ctx, 3)
    on_ray = ray_groups.split_on_ray(on_ray.frame, curate, ray_ctx, 3)
    assert on_ray.decisions.equals(local.decisions)
    assert on_ray.frame.drop("_order").equals(local.frame)
    assert ray_ctx.stats == local_ctx.stats
