"""MinHash and exact dedup grouped across a Ray cluster, with the local executor's exact answer.

MinHash, as the local stage computes it (tunelab/curate/minhash.py), in five cluster phases:

1. **Keys and scheme**: one task per block computes its dedup keys (left in the object store for phase 2)
   and sums their lengths; the global mean picks OPH or true permutations once (`minhash.scheme_for`), as
   the local stage picks it over all its texts.
2. **Signatures and band keys**: one task per block calls `minhash.signatures(scheme=)` and
   `minhash.band_keys` (the local functions; a row's keys depend on its signature alone) and returns its
   (band key, `_order`) rows already cut into P hash partitions by key: the map side of a hash shuffle.
3. **Buckets to star edges**: one task per key partition sorts its keys and links every row of a bucket
   to the bucket's lowest `_order` (what `minhash.star_pairs` does over all keys at once); edges come out
   partitioned by row, so every copy of an edge meets in one task, which counts the unique candidate pairs
   exactly as the local stage does.
4. **Connected components by large-star / small-star** (Kiveris et al., "Connected Components in
   MapReduce and Beyond", 2014; the Spark dedup approach): rounds of two hash-partitioned steps over the
   edge set; at convergence every component is a star around its lowest `_order`, which is its label. Why
   this and not a union-find over actors (Data-Juicer's BTS MinHash): the steps are stateless tasks over
   edges (a lost worker is a retried task, not lost union-find state), each round's memory is the edge set
   spread over P tasks, never one actor's table of every row, and it needs no actor placement; the cost is
   ~log(n) rounds where a union-find converges in one pass. Band buckets are already stars, so rounds are
   few (1 on benchmarks/ray_bench.py's data; long chains need ~log of their length). The loop stops when every node is a centre (all neighbours higher) or a leaf
   (exactly one neighbour, lower): checked by the large-star step itself, no extra pass.
5. **Verification**: rows of components larger than one are sent, with their text, to the task owning
   their component (hash of its label), which runs `minhash.greedy_component` (the local keep rule
   verbatim: rank order, exact Jaccard of shingle sets against the current representatives) per
   component. The driver turns the (row, ref, score, component) arrays into the stage's output with
   `minhash.outcome`, the local function; a component is labelled by its first row (`cluster_label`), so
   split sees the same groups under the same names.

Why Ray tasks with `num_returns=P` and not Ray Data `groupby`: a hash shuffle is exactly P map outputs per
task and one reduce task per partition; Ray Data's groupby has a fixed cost per shuffle that dominates here
(exact's whole-row groupby: 19.9 s at 100k rows for 2.5 s of local work, docs/scale.md), and components
need two shuffles per round.

Exact (`exact_narrow`): tasks hash each row's key (xxh64 of the content or of the dedup key, as exact
does) and shuffle only (key hash, `_order`, length for keep: longest): 24 bytes a row instead of the whole
row; each partition resolves its keys' representatives (best rank: `_order`, or longest then `_order`,
which is exact's `keep_order`), and the driver joins the drops back to sample ids.

`exact_blocks` and `minhash_blocks` run the same phases over object refs of Arrow blocks (ray.curate_blocks,
where the rows never come to the driver): they return a plan, the `_order`s to drop and their decision
rows, which ray.py applies to the blocks on the cluster. The driver holds only key-hash results for the
drops, arrays over the rows in an LSH component and those rows' sample ids.

Everything here equals the local stage on the same rows in the same order (tests/test_ray_minhash.py):
the rows go to the cluster numbered by their position in the stage's frame (`_order` there), which is the
local stage's index, so "lowest row" and the rank order are the local ones.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import polars as pl
import xxhash

from tunelab.curate import minhash
from tunelab.curate.common import StageContext, StageOutput, decisions, survivors, with_content
from tunelab.curate.config import CurateConfig, ExactSettings, MinhashSettings
from tunelab.curate.dedup_key import dedup_keys, describe
from tunelab.curate.executors.ray_groups import fetched

ORDER = "_order"


def _split_by(values: np.ndarray, rows: np.ndarray, parts: int) -> list[np.ndarray]:
    """`rows` (indexable along axis 0) cut into `parts` pieces by `values % parts`."""
    part = (values % np.uint64(parts)).astype(np.int64) if values.dtype == np.uint64 else values % parts
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(1, parts))
    return np.split(rows[order], bounds)


def _positions() -> pl.Expr:
    """Each row's position in the stage's frame, as `_order` of the rows sent to the cluster: the local
    stage's index, whatever the executor's own `_order` became after earlier steps of this segment."""
    return pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER)


# ---------------------------------------------------------------- MinHash: phases 1-3


def key_block(block: pl.DataFrame, cfg: MinhashSettings) -> tuple[list[str], tuple[int, int]]:
    """One block's dedup keys (kept in the object store for the signature pass) and (rows, total key
    characters): the scheme's cheap global aggregate."""
    keys = dedup_keys(block["content"], cfg.key)
    return keys, (len(keys), sum(len(k) for k in keys))


def band_rows(
    block: pl.DataFrame, texts: list[str], cfg: MinhashSettings, scheme: str, parts: int
) -> list[Any]:
    """Signatures and band keys of one block's dedup keys `texts` (the local functions, the global scheme),
    as P pieces of (key, _order) rows partitioned by key; the last return value is the bytes this task
    sends."""
    bands, rows = minhash.band_params(cfg.threshold, cfg.num_perm)
    sig = minhash.signatures(texts, cfg.ngram, cfg.num_perm, cfg.seed, scheme=scheme)
    keys = minhash.band_keys(sig, bands, rows, cfg.seed).reshape(-1)  # band-major: row k is keys[b*n + k]
    orders = np.tile(block[ORDER].to_numpy().astype(np.int64), bands)
    pairs = np.empty(keys.size, dtype=[("key", "<u8"), ("order", "<i8")])
    pairs["key"], pairs["order"] = keys, orders
    pieces = _split_by(keys, pairs, parts)
    return [*pieces, int(pairs.nbytes)]


def bucket_edges(parts: int, *pieces: np.ndarray) -> list[Any]:
    """Every bucket of this key partition as a star around its lowest `_order` (minhash.star_pairs's rule),
    as edges (row, root) partitioned by row."""
    rows = np.concatenate(pieces) if pieces else np.zeros(0, dtype=[("key", "<u8"), ("order", "<i8")])
    edges = np.zeros((0, 2), dtype=np.int64)
    if rows.size > 1:
        order = np.argsort(rows["key"])
        keys, docs = rows["key"][order], rows["order"][order]
        starts = np.empty(keys.size, dtype=bool)
        starts[0] = True
        np.not_equal(keys[1:], keys[:-1], out=starts[1:])
        roots = np.minimum.reduceat(docs, np.flatnonzero(starts))[np.cumsum(starts) - 1]
        member = docs != roots
        # a near-dup pair shares several bands: each copy of an edge would be shuffled again
        edges = _unique_rows(np.stack([docs[member], roots[member]], axis=1))
    return [*_split_by(edges[:, 0], edges, parts), int(edges.nbytes)]


# ---------------------------------------------------------------- connected components


def _unique_rows(edges: np.ndarray) -> np.ndarray:
    if edges.shape[0] == 0:
        return edges.reshape(0, 2)
    return np.unique(edges, axis=0)


def _both_ways(edges: np.ndarray, parts: int) -> list[np.ndarray]:
    return _split_by(
        np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges, edges[:, ::-1]]), parts
    )


def cc_start(parts: int, *pieces: np.ndarray) -> list[Any]:
    """Edges of this row partition made unique (their count is the candidate pairs) and sent both ways,
    keyed by each end, for the first large-star step."""
    edges = _unique_rows(np.concatenate(pieces) if pieces else np.zeros((0, 2), dtype=np.int64))
    out = _both_ways(edges, parts)
    return [*out, {"edges": int(edges.shape[0]), "bytes": int(sum(p.nbytes for p in out))}]


def large_star(parts: int, *pieces: np.ndarray) -> list[Any]:
    """Large-star at every node u of this partition (input: u's whole neighbourhood): link every higher
    neighbour to m(u) = min(u, neighbours). Also counts the nodes that are neither a centre (all neighbours
    higher) nor a leaf (one neighbour, lower): zero means the input is already stars around the minima."""
    edges = _unique_rows(np.concatenate(pieces))
    if edges.shape[0] == 0:
        return [*_split_by(edges[:, 0], edges, parts), {"bytes": 0, "unsettled": 0, "edges": 0}]
    u, v = edges[:, 0], edges[:, 1]  # sorted by u (np.unique)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    nodes = u[starts]
    low = np.minimum(np.minimum.reduceat(v, starts), nodes)
    degree = np.diff(np.r_[starts, u.size])
    has_lower = low < nodes
    unsettled = int(np.sum(has_lower & (degree > 1)))
    m = np.repeat(low, degree)
    higher = v > u
    out = np.stack([v[higher], m[higher]], axis=1)  # (higher neighbour, m(u)): first end is the larger
    pieces_out = _split_by(out[:, 0], out, parts)  # small-star reduces at the larger end
    return [
        *pieces_out,
        {"bytes": int(out.nbytes), "unsettled": unsettled, "edges": int(edges.shape[0] // 2)},
    ]


def small_star(parts: int, *pieces: np.ndarray) -> list[Any]:
    """Small-star at every node u (input: u's lower neighbours): link u and each lower neighbour to the
    lowest of them; sent both ways for the next large-star step."""
    edges = _unique_rows(np.concatenate(pieces))
    if edges.shape[0] == 0:
        return [*_both_ways(edges, parts), {"bytes": 0}]
    u, v = edges[:, 0], edges[:, 1]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    low = np.minimum.reduceat(v, starts)  # every v < u here
    degree = np.diff(np.r_[starts, u.size])
    m = np.repeat(low, degree)
    links = np.concatenate([np.stack([v, m], axis=1), np.stack([u[starts], low], axis=1)])
    links = links[links[:, 0] != links[:, 1]]
    out = _both_ways(links, parts)
    return [*out, {"bytes": int(sum(p.nbytes for p in out))}]


def connected_components(
    ray: Any, pieces: list[list[Any]], parts: int, max_rounds: int = 100
) -> tuple[list[Any], dict[str, Any]]:
    """Large-star / small-star rounds on the cluster over edges given as `pieces[task][partition]` (object
    refs or arrays of (a, b) int64 rows, partitioned by a). Returns refs to the final (leaf, centre) edges,
    one per partition, where the centre is its component's lowest node, and the rounds' numbers."""
    start = ray.remote(cc_start).options(num_returns=parts + 1)
    large = ray.remote(large_star).options(num_returns=parts + 1)
    small = ray.remote(small_star).options(num_returns=parts + 1)

    def step(fn: Any, inputs: list[list[Any]]) -> tuple[list[list[Any]], list[Any]]:
        outs = [fn.remote(parts, *[task[p] for task in inputs]) for p in range(parts)]
        return [o[:parts] for o in outs], [o[parts] for o in outs]

    stats: dict[str, Any] = {"rounds": 0, "shuffled_bytes": 0}
    current, info = step(start, pieces)
    started = [ray.get(i) for i in info]
    stats["candidate_pairs"] = sum(s["edges"] for s in started)
    stats["shuffled_bytes"] += sum(s["bytes"] for s in started)
    for _ in range(max_rounds):
        found, info = step(large, current)
        done = ray.get(info)
        stats["shuffled_bytes"] += sum(d["bytes"] for d in done)
        if sum(d["unsettled"] for d in done) == 0:
            # stars already: large-star's output is each leaf linked to its centre
            return [task[p] for p in range(parts) for task in found], stats
        stats["rounds"] += 1
        current, info = step(small, found)
        stats["shuffled_bytes"] += sum(d["bytes"] for d in ray.get(info))
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds; a tunelab bug")


def component_labels(ray: Any, refs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, label) of every node in a component of size > 1, label = the component's lowest node."""
    edges = [e for e in ray.get(refs) if e.shape[0]]
    if not edges:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    leaf_centre = np.unique(np.concatenate(edges), axis=0)
    centres = np.unique(leaf_centre[:, 1])
    nodes = np.concatenate([leaf_centre[:, 0], centres])
    labels = np.concatenate([leaf_centre[:, 1], centres])
    return nodes, labels


# ---------------------------------------------------------------- verification


def verify(block: pl.DataFrame, cfg: MinhashSettings) -> pl.DataFrame:
    """The local keep rule (minhash.greedy_component) per component of this block, members in rank order
    (keep_order's: `_order`, or longest content first then `_order`). Returns (_order, ref order, score)."""
    keys = dedup_keys(block["content"], cfg.key)
    table = block.select(ORDER, "component", length=pl.col("content").str.len_chars().fill_null(0))
    table = table.with_columns(doc=pl.int_range(pl.len(), dtype=pl.Int64))
    by = ["component", "length", ORDER] if cfg.keep == "longest" else ["component", ORDER]
    ordered = table.sort(by, descending=[False, True, False] if cfg.keep == "longest" else False)
    docs = ordered["doc"].to_numpy()
    comp = ordered["component"].to_numpy()
    sets = minhash.ShingleSets(keys, np.arange(len(keys)), cfg.ngram, cfg.seed)
    ref = np.full(len(keys), -1, dtype=np.int64)
    score = np.full(len(keys), np.nan)
    cuts = np.flatnonzero(comp[1:] != comp[:-1]) + 1
    for members in np.split(docs, cuts):
        ref[members], score[members] = minhash.greedy_component(members, sets.jaccard, cfg.threshold)
    orders = block[ORDER].to_numpy()
    dropped = ref >= 0
    return pl.DataFrame(
        {ORDER: orders[dropped], "ref": orders[ref[dropped]], "score": score[dropped]},
        schema={ORDER: pl.Int64, "ref": pl.Int64, "score": pl.Float64},
    )


def lsh_components(
    ray: Any,
    band_inputs: list[tuple[Any, Any]],
    cfg: MinhashSettings,
    scheme: str,
    parts: int,
    phases: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The phases both minhash paths share, on the cluster: band keys per block ((rows, keys) refs), star
    edges out of the band buckets, connected components. Returns the component members' node ids, their
    labels, and connected_components' stats with the bytes the band keys and edges moved."""
    clock = time.perf_counter()
    band = ray.remote(band_rows).options(num_returns=parts + 1)
    keyed = [band.remote(rows, keys, cfg, scheme, parts) for rows, keys in band_inputs]
    band_bytes = sum(ray.get([k[parts] for k in keyed]))
    phases["signatures_band_keys_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    bucket = ray.remote(bucket_edges).options(num_returns=parts + 1)
    star = [bucket.remote(parts, *[k[p] for k in keyed]) for p in range(parts)]
    edge_bytes = sum(ray.get([s[parts] for s in star]))
    phases["band_key_shuffle_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    final, cc = connected_components(ray, [s[:parts] for s in star], parts)
    nodes, labels = component_labels(ray, final)
    phases["components_s"] = time.perf_counter() - clock
    return nodes, labels, {**cc, "band_keys": band_bytes, "star_edges": edge_bytes}


def outcome_arrays(
    orders: np.ndarray, dropped: pl.DataFrame, member_at: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """minhash.outcome's ref / score / component arrays over `orders` (sorted `_order`s): the verified drops
    with their representative's index, and each member's component as its lowest row's index (as
    minhash.cluster labels it)."""
    ref = np.full(orders.size, -1, dtype=np.int64)
    score = np.full(orders.size, np.nan)
    at = np.searchsorted(orders, dropped[ORDER].to_numpy())
    ref[at] = np.searchsorted(orders, dropped["ref"].to_numpy())
    score[at] = dropped["score"].to_numpy()
    component = np.full(orders.size, -1, dtype=np.int64)
    component[member_at] = np.searchsorted(orders, labels)
    return ref, score, component


def ray_stats(
    scheme: str, parts: int, phases: dict[str, float], cc: dict[str, Any], **shuffled: int
) -> dict[str, Any]:
    """ctx.stats["minhash"]["ray"]: the scheme, rounds, per-phase seconds and the bytes each phase moved."""
    return {
        "scheme": scheme,
        "partitions": parts,
        "components_rounds": cc["rounds"],
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "shuffled_bytes": {
            "band_keys": cc["band_keys"],
            "star_edges": cc["star_edges"],
            "components": cc["shuffled_bytes"],
            **shuffled,
        },  # fmt: skip
    }


def minhash_on_ray(frame: pl.DataFrame, cfg: MinhashSettings, ctx: StageContext, blocks: int) -> StageOutput:
    """The minhash stage with every phase on the cluster; `frame` holds sample_id and content, in
    the local order. Same output as minhash.run on the same frame."""
    import ray

    parts = max(2, blocks)
    if frame.height < 2:
        return minhash.run(frame, cfg, ctx)  # nothing to compare: the local stage says so
    clock = time.perf_counter()
    phases: dict[str, float] = {}
    size = -(-frame.height // blocks)
    narrow = frame.select(_positions(), "content")
    block_refs = [ray.put(narrow.slice(k, size)) for k in range(0, frame.height, size)]
    orders_only = [ray.put(narrow.select(ORDER).slice(k, size)) for k in range(0, frame.height, size)]
    keyed_blocks = [ray.remote(key_block).options(num_returns=2).remote(b, cfg) for b in block_refs]
    counted = ray.get([k[1] for k in keyed_blocks])
    docs, chars = sum(c[0] for c in counted), sum(c[1] for c in counted)
    scheme = minhash.scheme_for(chars, docs, cfg.num_perm)
    phases["keys_scheme_s"] = time.perf_counter() - clock

    pairs = zip(orders_only, (k[0] for k in keyed_blocks), strict=True)
    nodes, labels, cc = lsh_components(ray, list(pairs), cfg, scheme, parts, phases)

    clock = time.perf_counter()
    position = nodes  # node ids are positions in `frame`
    members = narrow[position.tolist()].with_columns(component=pl.Series(labels, dtype=pl.Int64))
    owner = members["component"] % parts
    groups = [members.filter(owner == p) for p in range(parts)]
    found = ray.get([ray.remote(verify).remote(g, cfg) for g in groups if g.height])
    dropped = pl.concat(found) if found else pl.DataFrame(schema={ORDER: pl.Int64, "ref": pl.Int64})
    phases["verification_s"] = time.perf_counter() - clock

    # the local function's arrays, in frame positions
    orders = np.arange(frame.height, dtype=np.int64)
    ref, score, component = outcome_arrays(orders, dropped, position, labels)
    out = minhash.outcome(frame, cfg, ctx, ref, score, cc["candidate_pairs"], component)
    ctx.stats["minhash"]["ray"] = ray_stats(
        scheme, parts, phases, cc, verification=int(members.estimated_size())
    )
    return out


# ---------------------------------------------------------------- exact, narrow


def exact_keys(block: pl.DataFrame, cfg: ExactSettings, parts: int) -> list[Any]:
    """(key hash, _order, length) of one block's rows, P pieces by key: exact's key (the content, or its
    dedup key) hashed with xxh64, whose hex form is exact's content_hash."""
    texts = block["content"] if cfg.key is None else pl.Series(dedup_keys(block["content"], cfg.key))
    hashes = np.fromiter(
        (xxhash.xxh64_intdigest((t or "").encode("utf-8")) for t in texts.to_list()),
        dtype=np.uint64,
        count=block.height,
    )
    rows = np.empty(block.height, dtype=[("key", "<u8"), ("order", "<i8"), ("length", "<i8")])
    rows["key"], rows["order"] = hashes, block[ORDER].to_numpy()
    rows["length"] = block["content"].str.len_chars().fill_null(0).to_numpy() if cfg.keep == "longest" else 0
    return [*_split_by(hashes, rows, parts), int(rows.nbytes)]


def exact_resolve(keep: str, *pieces: np.ndarray) -> np.ndarray:
    """Per key of this partition: the representative (lowest rank: `_order`, or longest then `_order`),
    and for every other copy (order, ref order, copies)."""
    rows = np.concatenate(pieces)
    if rows.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    rank = (rows["order"],) if keep != "longest" else (rows["order"], -rows["length"])
    order = np.lexsort((*rank, rows["key"]))
    keys, orders = rows["key"][order], rows["order"][order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    copies = np.diff(np.r_[starts, keys.size])[group]
    ref = orders[starts][group]
    return np.stack([orders[~first], ref[~first], copies[~first]], axis=1)


def exact_narrow(frame: pl.DataFrame, curate: CurateConfig, ctx: StageContext, blocks: int) -> StageOutput:
    """The exact stage grouped on the cluster, shuffling 24 bytes a row; same output as exact.run."""
    import ray

    cfg = curate.exact
    if "content_hash" not in frame.columns:
        frame = with_content(frame, ctx.kind)  # as the local loop adds them before exact
    parts = max(2, blocks)
    size = max(1, -(-frame.height // blocks))
    narrow = frame.select(_positions(), "content")
    route = ray.remote(exact_keys).options(num_returns=parts + 1)
    keyed = [route.remote(narrow.slice(k, size), cfg, parts) for k in range(0, frame.height, size)]
    resolve = ray.remote(exact_resolve)
    found = ray.get([resolve.remote(cfg.keep, *[k[p] for k in keyed]) for p in range(parts)])
    drops = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    drops = drops[np.argsort(drops[:, 0])]  # exact.run lists its drops in frame order
    orders = np.arange(frame.height, dtype=np.int64)
    ids = frame["sample_id"]
    dropped_ids = ids.gather(np.searchsorted(orders, drops[:, 0]))
    ref_ids = ids.gather(np.searchsorted(orders, drops[:, 1]))
    # exact.py's evidence, word for word (tests/test_ray_minhash.py compares the decisions)
    what = "content hash" if cfg.key is None else f"dedup key ({describe(cfg.key)})"
    evidence = pl.DataFrame({"ref": ref_ids, "copies": drops[:, 2]}).select(
        pl.format(f"same {what} as {{}} ({{}} copies)", "ref", "copies")
    )
    ctx.stats["exact"] = {"dropped": int(drops.shape[0])}
    out = decisions(
        dropped_ids,
        "exact",
        False,
        "exact_dup",
        ref_sample_id=ref_ids,
        score=pl.Series([1.0] * drops.shape[0]),
        evidence=evidence.to_series(),
    )
    return survivors(frame, out)


# ---------------------------------------------------------------- on blocks (the rows stay on the cluster)
#
# ray.curate_blocks holds no rows on the driver: the stage's input is a list of object refs of Arrow blocks
# (each sorted by `_order`, block k's orders below block k+1's). The functions below are the phases above
# over such blocks; they return a plan (the `_order`s to drop, with the decision rows) that ray.py applies
# to the blocks on the cluster. `_order` there is the executor's own (gaps where earlier stages dropped
# rows); only its relative order matters to every rule here (lowest row, rank order), so it is used as is.


def _table_block(table: Any, columns: list[str]) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.select(columns)


def exact_keys_table(table: Any, cfg: ExactSettings, parts: int) -> list[Any]:
    """exact_keys of one Arrow block (its `_order` and `content`)."""
    return exact_keys(_table_block(table, [ORDER, "content"]), cfg, parts)


def ids_table(table: Any, orders: np.ndarray) -> pl.DataFrame:
    """(`_order`, sample_id) of the block's rows whose `_order` is in `orders`."""
    frame = _table_block(table, [ORDER, "sample_id"])
    return frame.filter(pl.col(ORDER).is_in(pl.Series(orders, dtype=pl.Int64).implode()))


def _ids(ray: Any, refs: list[Any], orders: np.ndarray) -> pl.DataFrame:
    """(`_order`, sample_id) of the rows `orders`, looked up in the blocks, sorted by `_order`."""
    if orders.size == 0:
        return pl.DataFrame(schema={ORDER: pl.Int64, "sample_id": pl.String})
    wanted = ray.put(np.unique(orders))
    found = ray.get([ray.remote(ids_table).remote(ref, wanted) for ref in refs])
    return fetched("exact ids", pl.concat(found, how="vertical_relaxed").sort(ORDER))


def exact_blocks(
    ray: Any, refs: list[Any], cfg: ExactSettings, ctx: StageContext, parts: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """exact over blocks: (its decisions, as exact.run makes them, and the `_order`s to drop)."""
    route = ray.remote(exact_keys_table).options(num_returns=parts + 1)
    keyed = [route.remote(ref, cfg, parts) for ref in refs]
    resolve = ray.remote(exact_resolve)
    found = ray.get([resolve.remote(cfg.keep, *[k[p] for k in keyed]) for p in range(parts)])
    drops = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    drops = drops[np.argsort(drops[:, 0])]  # exact.run lists its drops in frame order
    ids = _ids(ray, refs, np.concatenate([drops[:, 0], drops[:, 1]]))
    orders = ids[ORDER].to_numpy()
    dropped_ids = ids["sample_id"].gather(np.searchsorted(orders, drops[:, 0]))
    ref_ids = ids["sample_id"].gather(np.searchsorted(orders, drops[:, 1]))
    what = "content hash" if cfg.key is None else f"dedup key ({describe(cfg.key)})"
    evidence = pl.DataFrame({"ref": ref_ids, "copies": drops[:, 2]}).select(
        pl.format(f"same {what} as {{}} ({{}} copies)", "ref", "copies")
    )
    ctx.stats["exact"] = {"dropped": int(drops.shape[0])}
    out = decisions(
        dropped_ids,
        "exact",
        False,
        "exact_dup",
        ref_sample_id=ref_ids,
        score=pl.Series([1.0] * drops.shape[0]),
        evidence=evidence.to_series(),
    )
    return out, drops[:, 0].copy()


def key_table(table: Any, cfg: MinhashSettings) -> tuple[list[str], tuple[int, int], pl.DataFrame]:
    """key_block of one Arrow block, and the block's `_order` column for the signature pass."""
    block = _table_block(table, [ORDER, "content"])
    keys, counts = key_block(block, cfg)
    return keys, counts, block.select(ORDER)


def members_table(table: Any, nodes: np.ndarray, labels: np.ndarray, parts: int) -> list[Any]:
    """The block's rows that are in a component: P pieces of (`_order`, content, component) by the owner
    of their component (label % P), and their (`_order`, sample_id)."""
    block = _table_block(table, [ORDER, "sample_id", "content"])
    at = pl.DataFrame({ORDER: nodes, "component": labels}, schema={ORDER: pl.Int64, "component": pl.Int64})
    members = block.join(at, on=ORDER, how="inner").sort(ORDER)
    owner = (members["component"] % parts).to_numpy()
    pieces = [members.filter(owner == p).select(ORDER, "content", "component") for p in range(parts)]
    return [*pieces, members.select(ORDER, "sample_id")]


def verify_pieces(cfg: MinhashSettings, *pieces: pl.DataFrame) -> pl.DataFrame:
    """verify() over the members of the components this task owns."""
    rows = pl.concat([p for p in pieces if p.height], how="vertical_relaxed") if pieces else None
    if rows is None or rows.height == 0:
        return pl.DataFrame(schema={ORDER: pl.Int64, "ref": pl.Int64, "score": pl.Float64})
    return verify(rows, cfg)


def minhash_blocks(
    ray: Any, refs: list[Any], cfg: MinhashSettings, ctx: StageContext, parts: int
) -> tuple[pl.DataFrame, np.ndarray]:
    """minhash over blocks, every phase on the cluster: (the decisions minhash.run makes for the same rows
    in the same order, and the `_order`s to drop). The driver holds arrays over the rows that are in a
    component (node, label; their sample ids), never the rows."""
    clock = time.perf_counter()
    phases: dict[str, float] = {}
    keyed_blocks = [ray.remote(key_table).options(num_returns=3).remote(ref, cfg) for ref in refs]
    counted = ray.get([k[1] for k in keyed_blocks])
    docs, chars = sum(c[0] for c in counted), sum(c[1] for c in counted)
    scheme = minhash.scheme_for(chars, docs, cfg.num_perm)
    phases["keys_scheme_s"] = time.perf_counter() - clock

    nodes, labels, cc = lsh_components(ray, [(k[2], k[0]) for k in keyed_blocks], cfg, scheme, parts, phases)

    clock = time.perf_counter()
    nodes_ref, labels_ref = ray.put(nodes), ray.put(labels)
    routed = [
        ray.remote(members_table).options(num_returns=parts + 1).remote(ref, nodes_ref, labels_ref, parts)
        for ref in refs
    ]
    verify_task = ray.remote(verify_pieces)
    found = ray.get([verify_task.remote(cfg, *[r[p] for r in routed]) for p in range(parts)])
    dropped = pl.concat(found, how="vertical_relaxed")
    ids = [t for t in ray.get([r[parts] for r in routed]) if t.height]
    members = fetched(
        "minhash component members",
        pl.concat(ids, how="vertical_relaxed").sort(ORDER)
        if ids
        else pl.DataFrame(schema={ORDER: pl.Int64, "sample_id": pl.String}),
    )
    phases["verification_s"] = time.perf_counter() - clock

    # minhash.outcome's arrays over the members alone (in `_order`, which is the local order): the decisions
    # and split groups it makes depend only on rows that are in a component
    orders = members[ORDER].to_numpy()
    ref, score, component = outcome_arrays(orders, dropped, np.searchsorted(orders, nodes), labels)
    out = minhash.outcome(members.select("sample_id"), cfg, ctx, ref, score, cc["candidate_pairs"], component)
    ctx.stats["minhash"]["ray"] = {**ray_stats(scheme, parts, phases, cc), "members": int(orders.size)}
    return out.decisions, dropped[ORDER].to_numpy()
