"""Diff: two curations side by side (what `tunelab diff A B` prints), with the changed rows' texts.

Both curations are kept in the URL (?a=...&b=...), so a comparison can be shared as a link. The pairing
and the counts come from tunelab/curate/diff.py, the same code as the command.
"""

from pathlib import Path

import polars as pl
import streamlit as st

from tunelab import safetext
from tunelab.curate.diff import CHANGES, CurationDiff, diff_curations
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q
from tunelab.dashboards.diffview import compare_texts

db = common.page_start("Diff", "Two curations side by side: rows added and removed, decisions that changed")

curations = q(queries.curations, db)
if curations.height < 2:
    st.info("A diff needs two curations: curate the same data twice (other settings, or an edited file).")
    st.stop()

by_id = {row["curation_id"]: row for row in curations.to_dicts()}
ids = list(by_id)  # newest first
# after = the newest; before = the previous curation of the same dataset, else the next one in the list
newest = by_id[ids[0]]
previous = next((i for i, c in enumerate(by_id.values()) if i and c["dataset"] == newest["dataset"]), 1)


def label(curation_id: str) -> str:
    c = by_id[curation_id]
    return f"{c['dataset']} ({c['kind']}) · created {c['created_at']} · kept {c['kept']:,} of {c['read']:,}"


left, right = st.columns(2)
# plain ids as options: a bound widget writes its shown option into the URL, and an id is what a link needs
a_id = left.selectbox("Before (A)", ids, index=previous, key="a", bind="query-params")
left.caption(safetext.text(label(a_id)))
b_id = right.selectbox("After (B)", ids, index=0, key="b", bind="query-params")
right.caption(safetext.text(label(b_id)))
if a_id == b_id:
    st.info("Pick two different curations.")
    st.stop()


@st.cache_data(show_spinner="Comparing the two curations…", max_entries=16)
def compared(db_path: str, stamp: tuple[int, ...], a: dict, b: dict) -> CurationDiff:
    """The diff, cached per warehouse state: the pager and the pickers rerun the page, and pairing 200k
    rows takes seconds."""
    path = Path(db_path)
    a_id, b_id = a["curation_id"], b["curation_id"]
    return diff_curations(
        a,
        queries.diff_outcomes(path, a_id),
        queries.diff_reason_counts(path, a_id),
        b,
        queries.diff_outcomes(path, b_id),
        queries.diff_reason_counts(path, b_id),
    )


found = compared(str(db), common._stamp(db), by_id[a_id], by_id[b_id])

cols = st.columns(4)
for col, key in zip(cols, ("read", "kept", "dropped", "quarantined"), strict=True):
    before, after = int(found.a[key] or 0), int(found.b[key] or 0)
    # more kept rows is not "good" in itself: no colour, just the change
    col.metric(key.capitalize(), f"{after:,}", delta=f"{after - before:+,}", delta_color="off")
st.caption(
    f"B = {safetext.text(b_id)} against A = {safetext.text(a_id)}; exact counts over every row of both"
)

cols = st.columns(5)
cols[0].metric("Kept → dropped", f"{found.change_counts['kept_to_dropped']:,}")
cols[1].metric("Dropped → kept", f"{found.change_counts['dropped_to_kept']:,}")
cols[2].metric("Other reason", f"{found.change_counts['reason_changed']:,}")
cols[3].metric("Added (only B)", f"{found.added.height:,}")
cols[4].metric("Removed (only A)", f"{found.removed.height:,}")
st.caption(
    f"paired by sample id {found.paired_by_id:,} · by content (id changed) {found.paired_by_content:,} · "
    f"kept rows that moved between train and val {found.split_changed:,}"
)
for note in found.notes:
    st.caption(safetext.text(note))

st.subheader("Rows per reason")
st.dataframe(
    found.reasons.rename({"a": "A", "b": "B", "delta": "B − A"}),
    hide_index=True,
    key="diff_reasons",
)

st.subheader("Decisions that changed")
if found.changes.height == 0:
    st.success("Every row both curations read got the same decision.")
else:
    present = [code for code in CHANGES if found.change_counts[code]]
    code = st.selectbox(
        "Change",
        present,
        format_func=CHANGES.get,  # the URL holds this text: no counts in it, so a shared link stays valid
        key="change",
        bind="query-params",
    )
    rows = found.changes.filter(pl.col("change") == code)
    page_size = 25
    offset = common.pager("change_page", rows.height, page_size)
    page = rows.slice(offset, page_size)
    texts_b = dict(q(queries.diff_texts, db, b_id, page["sample_id_b"].to_list()).iter_rows())
    texts_a = dict(q(queries.diff_texts, db, a_id, page["sample_id_a"].to_list()).iter_rows())

    def why(stage: str | None, reason: str | None) -> str:
        return "kept" if stage is None else f"{stage} · {reason or ''}"

    shown = [
        {
            "sample (A → B)": r["sample_id_b"]
            if r["sample_id_a"] == r["sample_id_b"]
            else f"{r['sample_id_a']} → {r['sample_id_b']}",
            "A": why(r["stage_a"], r["reason_a"]),
            "B": why(r["stage_b"], r["reason_b"]),
            "evidence (A / B)": " / ".join(e for e in (r["evidence_a"], r["evidence_b"]) if e),
            "text (B)": texts_b.get(r["sample_id_b"]),
        }
        for r in page.to_dicts()
    ]
    st.markdown(
        common.html_table(
            shown,
            ["sample (A → B)", "A", "B", "evidence (A / B)", "text (B)"],
            text_columns=("evidence (A / B)", "text (B)"),  # the rest is short: no wrapping mid-word
        ),
        unsafe_allow_html=True,
    )
    # a row whose text changed as well (another file, other normalize settings): both texts, characters marked
    edited = [
        r for r in page.to_dicts() if texts_a.get(r["sample_id_a"]) != texts_b.get(r["sample_id_b"])
    ]  # fmt: skip
    if edited:
        pick = st.selectbox(
            "Text changed too: compare A and B",
            [r["sample_id_b"] for r in edited],
            key="diff_text_pick",
        )
        row = next(r for r in edited if r["sample_id_b"] == pick)
        old, new, ratio = compare_texts(texts_a.get(row["sample_id_a"]), texts_b.get(row["sample_id_b"]))
        st.caption(f"character similarity {ratio:.3f}")
        a_box, b_box = st.columns(2)
        a_box.markdown(
            f'<div class="tl-box"><div class="tl-score">A {safetext.text(row["sample_id_a"])}</div>'
            f'<div class="tl-text">{old}</div></div>',
            unsafe_allow_html=True,
        )
        b_box.markdown(
            f'<div class="tl-box"><div class="tl-score">B {safetext.text(row["sample_id_b"])}</div>'
            f'<div class="tl-text">{new}</div></div>',
            unsafe_allow_html=True,
        )

for title, frame, curation_id in (
    ("Added (only in B)", found.added, b_id),
    ("Removed (only in A)", found.removed, a_id),
):
    if frame.height == 0:
        continue
    with st.expander(f"{title}: {frame.height:,} rows"):
        part = frame.head(50)
        texts = dict(q(queries.diff_texts, db, curation_id, part["sample_id"].to_list()).iter_rows())
        listed = [
            {
                "sample_id": r["sample_id"],
                "outcome": r["outcome"] if r["stage"] is None else f"{r['stage']} · {r['reason'] or ''}",
                "text": texts.get(r["sample_id"]),
            }
            for r in part.to_dicts()
        ]
        st.markdown(
            common.html_table(listed, ["sample_id", "outcome", "text"], text_columns=("outcome", "text")),
            unsafe_allow_html=True,
        )
        if frame.height > 50:
            st.caption(f"the first 50 of {frame.height:,} (tunelab diff --format json --limit 0 lists all)")
