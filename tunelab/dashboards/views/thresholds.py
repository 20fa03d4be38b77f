"""Thresholds: a curation's candidate near-duplicate pairs by similarity band, side by side with their diff;
mark each pair duplicate or not, and read the precision of every band (with its interval) from the marks.

Pairs at or above the stage's threshold are the stage's own decisions (the dropped row, the kept row it
matched, the stage's similarity). Pairs under it (the near misses a lower threshold would add) are
recomputed here with the stage's own functions, on the rows that reached the stage, so their similarity is
the stage's number: MinHash at page load (the stage's LSH banded for the lowest band, every candidate
verified with the exact Jaccard of the dedup key), semantic on request (it embeds the rows; vectors the
curation already cached are reused). The recomputation reads at most NEAR_MISS_MAX_ROWS rows (a seeded
sample beyond that), and LSH proposes a sample of each band's pairs, not all of them: the page says how many.
"""

from pathlib import Path

import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.curate import calibrate as cal
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q
from tunelab.dashboards.diffview import compare_texts
from tunelab.errors import UserError
from tunelab.warehouse import store
from tunelab.workspace import Workspace

PAGE_SIZE = 5
DUPLICATE, NOT_DUPLICATE = ":material/check_circle:", ":material/cancel:"
MEASURE = {"minhash": "exact Jaccard of the dedup key", "semantic": "cosine"}
PAIR_SCHEMA = {
    "sample_id": pl.String,
    "ref_sample_id": pl.String,
    "similarity": pl.Float64,
    "source": pl.String,
}

db = common.page_start(
    "Thresholds", "Candidate near-duplicate pairs by similarity band: mark them, read each band's precision"
)

curations = q(queries.curations, db)
if curations.height == 0:
    st.info("No curation in the warehouse yet: run `tunelab curate RECIPE` or `tunelab demo`.")
    st.stop()
by_id = {row["curation_id"]: row for row in curations.to_dicts()}
top = st.columns([3, 2])
curation_id = top[0].selectbox("Curation", list(by_id), key="curation", bind="query-params")
curation = by_id[curation_id]
recipe_stages = queries.recipe_stages(curation.get("recipe"))
stages = [s for s in cal.MARK_STAGES if s in recipe_stages]
if not stages:
    st.info(
        "This curation ran neither the minhash nor the semantic stage, so it has no near-duplicate threshold "
        "to check. `tunelab audit FILE --minhash-thresholds 0.6,0.7,0.8` shows what each threshold would drop."
    )
    st.stop()
stage = top[1].radio("Stage", stages, key="stage", horizontal=True, bind="query-params")
settings = cal.stage_settings(curation.get("recipe"), stage)
threshold = float(settings.threshold)
per_unit = cal.BANDS_PER_UNIT[stage]
lowest = float(cal.band_low(max(threshold - cal.NEAR_MISS_SPAN[stage], 0.0), stage))
st.sidebar.text_input(
    "Reviewer", value=store.default_reviewer(), key="reviewer", help="recorded with every mark you give"
)
what = MEASURE[stage] + (f" ({safetext.text(settings.model)})" if stage == "semantic" else "")
st.caption(
    f"{safetext.text(stage)} threshold {threshold:g} · similarity = {what} · "
    f"bands of {1 / per_unit:g} from {lowest:g}"
)


@st.cache_data(show_spinner="Finding near misses under the threshold …", max_entries=16)
def near_misses(
    warehouse: str, curation_id: str, created_at: str, stage: str, recipe: str | None, kind: str, low: float
) -> tuple[pl.DataFrame, int, int, int | None]:
    """(pairs under the threshold, rows searched, rows that reached the stage, LSH candidates proposed);
    `created_at` keys the cache to this curation's samples (they never change under one id)."""
    order = queries.recipe_stages(recipe)
    earlier = order[: order.index(stage)] if stage in order else []
    limit = cal.NEAR_MISS_MAX_ROWS[stage]
    rows = queries.stage_input_samples(Path(warehouse), curation_id, earlier, limit)
    if rows.height < 2:
        return pl.DataFrame(schema=PAIR_SCHEMA), rows.height, rows.height, None
    reached = int(rows["reached"][0])
    texts = cal.contents(rows.drop("reached"), kind)
    cfg = cal.stage_settings(recipe, stage)
    proposed = None
    if stage == "minhash":
        found, proposed = cal.minhash_near_pairs(texts, cfg, low)
    else:
        vectors = cal.semantic_vectors(texts, cfg, Workspace(Path(warehouse).parent).embedding_cache)
        found = cal.semantic_near_pairs(vectors, low, float(cfg.threshold))
    ids = rows["sample_id"]
    pairs = pl.DataFrame(
        {
            "sample_id": ids.gather(found["i"]),
            "ref_sample_id": ids.gather(found["j"]),
            "similarity": found["similarity"],
            "source": "under the threshold",
        },
        schema=PAIR_SCHEMA,
    )
    return pairs, rows.height, reached, proposed


def save_mark(
    warehouse: str, curation_id: str, stage: str, sample_id: str, ref: str, similarity: float, dup: bool
) -> None:
    """The page's one write: a person's mark on one pair, through the warehouse API."""
    try:
        store.add_threshold_mark(
            Path(warehouse), curation_id, stage, sample_id, ref, similarity, dup,
            reviewer=st.session_state.get("reviewer") or None,
        )  # fmt: skip
    except UserError as exc:
        st.session_state["mark_error"] = str(exc)
        return
    verdict = "duplicate" if dup else "not a duplicate"
    st.session_state["mark_saved"] = f"Marked {ref} ⇄ {sample_id}: {verdict}"


if "mark_saved" in st.session_state:
    st.success(safetext.text(st.session_state.pop("mark_saved")))
if "mark_error" in st.session_state:
    st.error(safetext.text(st.session_state.pop("mark_error")))

drops = q(queries.threshold_drops, db, curation_id, stage).with_columns(source=pl.lit("dropped by the stage"))
searched = reached = proposed = None
near = pl.DataFrame(schema=PAIR_SCHEMA)
semantic_key = f"semantic_near|{curation_id}"
if stage == "minhash" or st.session_state.get(semantic_key):
    try:
        near, searched, reached, proposed = near_misses(
            str(db), curation_id, str(curation.get("created_at")), stage, curation.get("recipe"),
            str(curation.get("kind") or "sft"), lowest,
        )  # fmt: skip
    except UserError as exc:
        st.error(safetext.text(str(exc)))
else:
    st.button(
        f"Find near misses under {threshold:g}",
        key="semantic_near",
        on_click=lambda: st.session_state.update({semantic_key: True}),
        help=f"embeds up to {cal.NEAR_MISS_MAX_ROWS['semantic']:,} rows with {safetext.text(settings.model)}; "
        "vectors the curation cached are reused",
    )
if searched is not None:
    sampled = "" if searched == reached else f" (a seeded sample of the {reached:,} that reached the stage)"
    st.caption(
        f"Near misses: {near.height:,} pairs under {threshold:g} among {searched:,} rows{sampled}; "
        + (
            f"{proposed or 0:,} candidates from the stage's LSH banded for the lowest band"
            + (
                f" ({cal.NEAR_MISS_MAX_CANDIDATES:,} of them, a seeded sample, verified)"
                if (proposed or 0) > cal.NEAR_MISS_MAX_CANDIDATES
                else ""
            )
            + ", a sample of each band's pairs"
            if stage == "minhash"
            else "each row with its most similar other row under the threshold"
        )
    )

# a near miss the stage also dropped (only when the recomputation disagrees with the stored decision) is shown once
near = near.join(drops, on=["sample_id", "ref_sample_id"], how="anti").join(
    drops.rename({"sample_id": "ref_sample_id", "ref_sample_id": "sample_id"}),
    on=["sample_id", "ref_sample_id"],
    how="anti",
)
pairs = pl.concat([drops.select(PAIR_SCHEMA.keys()), near], how="vertical_relaxed")
pairs = pairs.with_columns(band=pl.Series(cal.band_low(pairs["similarity"].to_numpy(), stage)))
marks = q(queries.threshold_marks, db, curation_id, stage)
pairs = pairs.join(
    marks.select("sample_id", "ref_sample_id", "is_duplicate", "reviewer"),
    on=["sample_id", "ref_sample_id"],
    how="left",
)
precision = {
    round(row["band_low"], 4): row
    for row in q(queries.threshold_precision, db, curation_id, stage).to_dicts()
}

# ---------------------------------------------------------------- bands
st.subheader("Precision per band")
bands = [round(b / per_unit, 4) for b in range(int(round(lowest * per_unit)), per_unit)]
bands += sorted(b for b in set(pairs["band"].to_list()) | set(precision) if b not in bands and b >= 0)
rows = []
for band in sorted(bands):
    in_band = pairs.filter(pl.col("band") == band)
    marked = precision.get(band)
    rows.append(
        {
            "band": cal.band_label(band, stage),
            "stage": "drops"
            if band >= threshold - 1e-9
            else "keeps"
            if band + 1 / per_unit <= threshold + 1e-9
            else "both",
            "dropped pairs": in_band.filter(pl.col("source") == "dropped by the stage").height,
            "near misses": in_band.filter(pl.col("source") != "dropped by the stage").height,
            "marked (n)": marked["n"] if marked else 0,
            "duplicates": marked["duplicates"] if marked else 0,
            "precision": marked["precision"] if marked else None,
            "95% low": marked["ci_low"] if marked else None,
            "95% high": marked["ci_high"] if marked else None,
        }
    )
band_table = pl.DataFrame(rows)
st.dataframe(
    band_table,
    hide_index=True,
    key="bands_table",
    column_config={
        c: st.column_config.NumberColumn(c, format="%.3f") for c in ("precision", "95% low", "95% high")
    },
)
st.caption(
    "precision = share of the marked pairs in the band that were marked duplicate (the newest mark of each "
    "pair), with its 95 % Wilson interval; the same numbers are in the warehouse view v_threshold_precision. "
    f"`tunelab calibrate --marks {safetext.text(curation_id)} --stage {safetext.text(stage)}` turns the marks "
    "into a threshold."
)

# ---------------------------------------------------------------- pairs of one band
labels = band_table["band"].to_list()
default_band = next((i for i, r in enumerate(rows) if r["dropped pairs"] + r["near misses"]), len(labels) - 1)
band_name = st.selectbox("Band", labels, index=default_band, key="band", bind="query-params")
band = sorted(bands)[labels.index(band_name)]
in_band = (
    pairs.filter(pl.col("band") == band)
    .with_columns(
        unmarked=pl.col("is_duplicate").is_null(),
        order=pl.concat_str("sample_id", "ref_sample_id", separator="\x00").hash(seed=7),
    )
    .sort(["unmarked", "order"], descending=[True, False])
)
if in_band.height == 0:
    st.info("No candidate pair in this band.")
    st.stop()
st.caption(f"{in_band.height:,} pairs in {cal.band_label(band, stage)}; unmarked pairs first")
offset = common.pager("pair_page", in_band.height, PAGE_SIZE)
page = in_band.slice(offset, PAGE_SIZE)
ids = sorted(set(page["sample_id"].to_list()) | set(page["ref_sample_id"].to_list()))
texts = {r["sample_id"]: r for r in q(queries.pair_texts, db, curation_id, ids).to_dicts()}

for pair in page.to_dicts():
    sid, ref, similarity = pair["sample_id"], pair["ref_sample_id"], float(pair["similarity"])
    ref_text = (texts.get(ref) or {}).get("text")
    text = (texts.get(sid) or {}).get("text")
    old, new, ratio = compare_texts(ref_text, text)
    mark = ""
    if pair["is_duplicate"] is not None:
        verdict = "duplicate" if pair["is_duplicate"] else "not a duplicate"
        mark = f" · marked {verdict} by {safetext.text(pair['reviewer'])}"
    with st.container(border=True):
        st.markdown(
            f"**{safetext.text(ref)}** ⇄ **{safetext.text(sid)}** · similarity {similarity:.3f} (stage) · "
            f"{ratio:.3f} (characters) · {safetext.text(pair['source'])}{mark}",
            unsafe_allow_html=True,
        )
        left, right = st.columns(2)
        left.markdown(
            f'<div class="tl-box"><div class="tl-score">{"kept" if pair["source"].startswith("dropped") else "row"} '
            f'{safetext.text(ref)}</div><div class="tl-text">{old}</div></div>',
            unsafe_allow_html=True,
        )
        right.markdown(
            f'<div class="tl-box"><div class="tl-score">{"dropped" if pair["source"].startswith("dropped") else "row"} '
            f'{safetext.text(sid)}</div><div class="tl-text">{new}</div></div>',
            unsafe_allow_html=True,
        )
        yes, no = st.columns(2)
        key = f"{curation_id}|{stage}|{ref}|{sid}"
        yes.button(
            "duplicate",
            icon=DUPLICATE,
            key=f"dup|{key}",
            on_click=save_mark,
            args=(str(db), curation_id, stage, sid, ref, similarity, True),
        )
        no.button(
            "not duplicate",
            icon=NOT_DUPLICATE,
            key=f"notdup|{key}",
            on_click=save_mark,
            args=(str(db), curation_id, stage, sid, ref, similarity, False),
        )
