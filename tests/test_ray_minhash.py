"""MinHash and exact grouped across a real Ray cluster (tunelab/curate/executors/ray_minhash.py) give the
local stage's answer: same dropped ids, ref_sample_id, scores, reasons, split groups and data version.

Uses the session's local cluster (`ray_address`, tests/conftest.py). Skipped without the `ray` extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tunelab.curate import exact, minhash
from tunelab.curate.common import StageContext, with_content
from tunelab.curate.config import CurateConfig, ExactSettings, MinhashSettings
from tunelab.records.config import DatasetConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    from minhash_bench import make_corpus
finally:
    sys.path.remove(str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).parent))
try:
    from test_ray_executor import _assert_same, _both, _noisy_corpus, _shards
finally:
    sys.path.remove(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def cluster(ray_address: str):  # noqa: ANN201 (the ray module, connected)
    from tunelab.curate.executors import ray as ray_executor

    return ray_executor.connect(ray_address)


def _frame(texts: list[str]) -> pl.DataFrame:
    """Rows as the Ray executor holds them: `_order` increasing with gaps (earlier stages dropped rows)."""
    return pl.DataFrame(
        {
            "sample_id": [f"d:{i}" for i in range(len(texts))],
            "content": texts,
            "_order": pl.Series(np.arange(len(texts), dtype=np.int64) * 3 + 5),
        }
    )


def _graph(kind: str, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    if kind == "chains":  # long paths with shuffled labels: the worst case for star rounds
        n = 600
        perm = rng.permutation(n)
        edges = [(perm[i], perm[i + 1]) for i in range(n - 1) if i % 150 != 149]
    elif kind == "stars":
        n = 500
        edges = [(c, int(v)) for c in range(0, n, 50) for v in rng.integers(c, c + 50, 30) if v != c]
    elif kind == "small":  # many components of 2-4 rows, most rows alone
        n = 3000
        edges = [(int(a), int(a) + int(rng.integers(1, 4))) for a in rng.integers(0, n - 4, 700)]
    else:  # sparse random graph: a giant component and debris
        n = 800
        edges = [tuple(int(x) for x in rng.integers(0, n, 2)) for _ in range(700)]
    return n, np.array(edges, dtype=np.int64).reshape(-1, 2)


@pytest.mark.parametrize("kind", ["chains", "stars", "small", "random"])
def test_connected_components_match_scipy(cluster, kind: str) -> None:  # noqa: ANN001
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from tunelab.curate.executors import ray_minhash

    rng = np.random.default_rng(len(kind))
    n, edges = _graph(kind, rng)
    edges = edges[edges[:, 0] != edges[:, 1]]
    ids = np.arange(n, dtype=np.int64) * 7 + 11  # node ids as `_order` values: sparse, increasing
    parts = 3
    pieces = [ray_minhash._split_by(ids[e[:, 0]], ids[e], parts) for e in np.array_split(edges, 2)]
    final, stats = ray_minhash.connected_components(cluster, pieces, parts)
    nodes, labels = ray_minhash.component_labels(cluster, final)

    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    count, expected = connected_components(graph, directed=False)
    sizes = np.bincount(expected)
    lowest = np.full(count, n)
    np.minimum.at(lowest, expected, np.arange(n))
    involved = np.flatnonzero(sizes[expected] > 1)
    # exactly the rows of components > 1, each labelled with its component's lowest id
    assert np.array_equal(np.sort(nodes), ids[involved])
    got = dict(zip(nodes.tolist(), labels.tolist(), strict=True))
    assert [got[int(ids[i])] for i in involved] == ids[lowest[expected[involved]]].tolist()
    assert stats["candidate_pairs"] == len({(int(a), int(b)) for a, b in ids[edges]})
    # stars around their lowest row (what band buckets give) need no round; chains need several
    assert stats["rounds"] == 0 if kind == "stars" else 1 < stats["rounds"] < 30


def _stage_same(out_local, ctx_local, out_ray, ctx_ray) -> None:  # noqa: ANN001
    assert out_ray.decisions.equals(out_local.decisions)
    assert out_ray.frame.equals(out_local.frame)
    assert ctx_ray.clusters == ctx_local.clusters  # the split groups, names included
    ray_stats = {k: v for k, v in ctx_ray.stats["minhash"].items() if k != "ray"}
    assert ray_stats == ctx_local.stats["minhash"]


@pytest.mark.parametrize("length", ["long", "short"])
@pytest.mark.parametrize("keep", ["first", "longest"])
def test_minhash_on_ray_is_the_local_stage(cluster, length: str, keep: str) -> None:  # noqa: ANN001
    from tunelab.curate.executors import ray_minhash

    texts = make_corpus(1500, seed=5)
    if length == "short":  # mean key length < num_perm: true permutations, not OPH
        texts = [t[: 60 + i % 50] for i, t in enumerate(texts)]
    frame = _frame(texts)
    cfg = MinhashSettings(threshold=0.7, keep=keep)
    ctx_local, ctx_ray = StageContext(), StageContext()
    local = minhash.run(frame, cfg, ctx_local)
    on_ray = ray_minhash.minhash_on_ray(frame, cfg, ctx_ray, blocks=3)
    _stage_same(local, ctx_local, on_ray, ctx_ray)
    info = ctx_ray.stats["minhash"]["ray"]
    assert info["scheme"] == ("permutation" if length == "short" else "oph")
    # the corpus has near-dups, kept paraphrases and components of several rows
    assert ctx_local.stats["minhash"]["dropped"] > 50 and len(set(ctx_local.clusters.values())) > 20
    assert info["components_rounds"] >= 1 and info["shuffled_bytes"]["band_keys"] > 0


@pytest.mark.parametrize("keep", ["first", "longest"])
@pytest.mark.parametrize("key", [None, {}])
def test_exact_narrow_is_the_local_stage(cluster, keep: str, key: dict | None) -> None:  # noqa: ANN001
    from tunelab.curate.executors import ray_minhash

    base = ["같은 문장입니다", "Same words here.", "other", "짧다", "longer text, same key?"]
    texts = [base[i % 5] + ("" if i % 3 else " ") + ("!" * (i % 4 == 0)) for i in range(400)]
    texts += [f"unique row {i}" for i in range(100)]
    frame = with_content(
        _frame(texts).drop("content").with_columns(prompt=pl.Series(texts), response=pl.lit("x")), "sft"
    )
    cfg = ExactSettings.model_validate({"keep": keep, "key": key})
    curate = CurateConfig.model_validate({"exact": {"keep": keep, "key": key}})
    ctx_local, ctx_ray = StageContext(), StageContext()
    local = exact.run(frame, cfg, ctx_local)
    on_ray = ray_minhash.exact_narrow(frame, curate, ctx_ray, blocks=3)
    assert on_ray.decisions.equals(local.decisions)
    assert on_ray.frame.equals(local.frame)
    assert ctx_ray.stats == ctx_local.stats and local.decisions.height > 300


def _short_corpus(path: Path, docs: int) -> None:
    """_noisy_corpus's rows cut to ~100 characters: the permutation scheme."""
    _noisy_corpus(path, docs)
    import json

    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            lines.append(line)
            continue
        row["prompt"], row["response"] = row["prompt"][:30] + "?", row["response"][:70] + "."
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("length", ["long", "short"])
def test_pipeline_with_distributed_minhash_same_as_local(
    ray_address: str, tmp_path: Path, length: str
) -> None:
    source = tmp_path / "noisy.jsonl"
    (_noisy_corpus if length == "long" else _short_corpus)(source, 900)
    glob = _shards(source, tmp_path / "shards", 3)
    dataset = DatasetConfig(path=glob, name="noisy", kind="sft")
    curate = CurateConfig.model_validate(
        {
            "stages": ["schema", "normalize", "length", "exact", "minhash", "split"],
            "length": {"min_chars": {"response": 5}},
            "exact": {"key": {}},
            "minhash": {"threshold": 0.7, "keep": "longest"},
            "split": {"val_ratio": 0.3, "stratify": "label", "seed": 7},
        }
    )
    local, ray = _both(dataset, curate, ray_address, tmp_path)
    _assert_same(local, ray)
    minhash_stats = ray.report["stage_stats"]["minhash"]
    assert minhash_stats["ray"]["scheme"] == ("oph" if length == "long" else "permutation")
    assert {k: v for k, v in minhash_stats.items() if k != "ray"} == local.report["stage_stats"]["minhash"]
    assert minhash_stats["dropped"] > 20 and minhash_stats["kept_in_clusters"] > 10
    assert ray.report["stage_stats"]["executor"]["on_ray"] == [
        "schema",
        "normalize",
        "length",
        "exact",
        "minhash",
    ]
