"""Audit: where the rows of one curation went, and why."""

import altair as alt
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, queries
from tunelab.dashboards.common import q
from tunelab.dashboards.diffview import compare_texts

db = common.page_start("Audit", "Every row of a curation: kept, dropped (and why), quarantined")

curations = q(queries.curations, db)
if curations.height == 0:
    st.info("No curation in the warehouse yet: run `tunelab curate RECIPE` or `tunelab demo`.")
    st.stop()

by_id = {row["curation_id"]: row for row in curations.to_dicts()}
# preference (DPO) data is curated as a side input: open on the newest instruction-data curation
default_index = next((i for i, c in enumerate(by_id.values()) if c["kind"] != "dpo"), 0)
curation_id = st.selectbox(
    "Curation",
    list(by_id),
    index=default_index,
    key="curation",
    bind="query-params",
)
curation = by_id[curation_id]

cols = st.columns(4)
cols[0].metric("Read", common.fmt_number(curation["read"]))
cols[1].metric("Kept", common.fmt_number(curation["kept"]))
cols[2].metric("Dropped", common.fmt_number(curation["dropped"]))
cols[3].metric("Quarantined", common.fmt_number(curation["quarantined"]))
st.caption(
    f"dataset {safetext.text(curation['dataset'])} · kind {safetext.text(curation['kind'])} · "
    f"data version {safetext.text(curation['data_version'])}"
)

# ---------------------------------------------------------------- funnel
st.subheader("Row funnel")
funnel = queries.funnel(curation, q(queries.stage_drops, db, curation_id))
funnel_chart = (
    alt.Chart(funnel.to_pandas())
    .mark_bar()
    .encode(
        y=alt.Y("step:N", sort=funnel["step"].to_list(), title=None),
        x=alt.X("rows:Q", title="rows remaining"),
        tooltip=["step", "rows", "dropped"],
    )
)
left, right = st.columns([3, 2])
left.altair_chart(funnel_chart, width="stretch")
right.dataframe(
    funnel, hide_index=True, key="funnel_table", height=35 * (funnel.height + 1) + 3
)  # every step, no scrolling
if funnel["rows"][-1] != curation["kept"]:
    st.warning(
        f"The funnel ends at {funnel['rows'][-1]:,} rows but the curation recorded {curation['kept']:,} kept: "
        "some stage dropped rows without a decision, or dropped a row twice."
    )

# Only the open tab runs its queries (on_change="rerun"); the tab is in the URL (?tab=Duplicates).
reasons_tab, lengths_tab, dups_tab, labels_tab, quarantine_tab, signals_tab = st.tabs(
    ["Drop reasons", "Lengths", "Duplicates", "Labels", "Quarantine", "Signals"],
    key="tab",
    on_change="rerun",
    bind="query-params",
)

# ---------------------------------------------------------------- drop reasons + click-through
with reasons_tab:
    if reasons_tab.open:
        reasons = q(queries.drop_reasons, db, curation_id)
        if reasons.height == 0:
            st.success("No row was dropped.")
        else:
            event = st.dataframe(
                reasons,
                hide_index=True,
                on_select="rerun",
                selection_mode="single-row",
                key="reasons_table",
                column_config={"pct": st.column_config.NumberColumn("% of read", format="%.2f")},
            )
            options = [(r["stage"], r["reason"]) for r in reasons.to_dicts()]
            picked_rows = event.selection.rows if event is not None else []
            # a click on a row of the table picks that reason below
            if picked_rows and st.session_state.get("_reason_row") != picked_rows[0]:
                st.session_state["_reason_row"] = picked_rows[0]
                st.session_state["reason_pick"] = options[picked_rows[0]]
            counts = {(r["stage"], r["reason"]): r["n"] for r in reasons.to_dicts()}
            stage, reason = st.selectbox(
                "Rows dropped for",
                options,
                format_func=lambda o: f"{o[0]} · {o[1]} ({counts[o]:,} rows)",
                key="reason_pick",
            )
            page_size = 25
            offset = common.pager("reason_page", counts[(stage, reason)], page_size)
            rows = q(queries.rows_for_reason, db, curation_id, stage, reason, limit=page_size, offset=offset)
            st.markdown(
                common.html_table(
                    rows.to_dicts(),
                    ["sample_id", "source_line", "label", "score", "ref_sample_id", "evidence", "text"],
                    text_columns=("text", "evidence"),
                ),
                unsafe_allow_html=True,
            )

# ---------------------------------------------------------------- lengths
with lengths_tab:
    if lengths_tab.open:
        hist = q(queries.length_histogram, db, curation_id)
        if hist.height:
            long = hist.unpivot(
                index=["bin_start", "bin_end"], on=["before", "after"], variable_name="set", value_name="rows"
            )
            chart = (
                alt.Chart(long.to_pandas())
                .mark_bar(opacity=0.65)
                .encode(
                    x=alt.X(
                        "bin_start:Q",
                        title="characters (bin start; the last bin is open-ended)",
                        bin="binned",
                    ),
                    x2="bin_end:Q",
                    y=alt.Y("rows:Q", stack=None),
                    color=alt.Color("set:N", sort=["before", "after"]),
                    tooltip=["bin_start", "bin_end", "set", "rows"],
                )
            )
            st.altair_chart(chart, width="stretch")
            st.dataframe(hist, hide_index=True, key="length_table")

# ---------------------------------------------------------------- duplicate clusters
with dups_tab:
    if dups_tab.open:
        dup_reasons = q(queries.duplicate_reasons, db, curation_id)
        if dup_reasons.height == 0:
            st.info("No duplicate was dropped in this curation.")
        else:
            all_reasons = dup_reasons["reason"].to_list()
            chosen = st.multiselect(
                "Reasons",
                all_reasons,
                default=[r for r in all_reasons if "dup" in r] or all_reasons,
                key="dup_reasons",
            )
            clusters = q(queries.duplicate_clusters, db, curation_id, chosen, limit=200)
            if clusters.height == 0:
                st.info("No cluster for these reasons.")
            else:
                total = clusters["total"][0]
                st.caption(f"{total:,} clusters; the 200 largest are listed")
                reps = clusters.to_dicts()
                rep = st.selectbox(
                    "Cluster (representative)",
                    [r["representative"] for r in reps],
                    key="cluster",
                    bind="query-params",
                )
                cluster = next(r for r in reps if r["representative"] == rep)
                rep_text = cluster["representative_text"]
                low, high = (common.fmt_number(cluster[k], 3) for k in ("min_score", "max_score"))
                members = f"{cluster['members']} member" + ("s" if cluster["members"] != 1 else "")
                similarity = low if low == high else f"{low}–{high}"
                st.caption(
                    f"{members} dropped as {safetext.text(cluster['reasons'])}; similarity {similarity}"
                )
                if rep_text is None:
                    st.caption("The representative is not a sample of this curation (e.g. an eval-set item).")
                for member in q(queries.cluster_members, db, curation_id, rep).to_dicts():
                    old, new, ratio = compare_texts(rep_text, member["text"])
                    score = "–" if member["score"] is None else f"{member['score']:.3f}"
                    st.markdown(
                        f"**{safetext.text(member['sample_id'])}** · {safetext.text(member['reason'])} · "
                        f"similarity {score} (stage) · {ratio:.3f} (characters)",
                        unsafe_allow_html=True,
                    )
                    a, b = st.columns(2)
                    a.markdown(
                        f'<div class="tl-box"><div class="tl-score">representative {safetext.text(rep)}</div>'
                        f'<div class="tl-text">{old}</div></div>',
                        unsafe_allow_html=True,
                    )
                    b.markdown(
                        f'<div class="tl-box"><div class="tl-score">member {safetext.text(member["sample_id"])}</div>'
                        f'<div class="tl-text">{new}</div></div>',
                        unsafe_allow_html=True,
                    )

# ---------------------------------------------------------------- labels
with labels_tab:
    if labels_tab.open:
        balance = q(queries.label_balance, db, curation_id)
        long = balance.unpivot(index="label", on=["before", "after"], variable_name="set", value_name="rows")
        chart = (
            alt.Chart(long.to_pandas())
            .mark_bar()
            .encode(
                x=alt.X("label:N", sort=balance["label"].to_list()),
                xOffset=alt.XOffset("set:N", sort=["before", "after"]),
                y="rows:Q",
                color=alt.Color("set:N", sort=["before", "after"]),
                tooltip=["label", "set", "rows"],
            )
        )
        st.altair_chart(chart, width="stretch")
        st.dataframe(balance, hide_index=True, key="label_table")

# ---------------------------------------------------------------- quarantine
with quarantine_tab:
    if quarantine_tab.open:
        n_quarantined = int(curation["quarantined"] or 0)
        if n_quarantined == 0:
            st.success("No malformed line.")
        else:
            offset = common.pager("quarantine_page", n_quarantined, 50)
            rows = q(queries.quarantine_rows, db, curation_id, limit=50, offset=offset)
            st.markdown(
                common.html_table(
                    rows.to_dicts(), ["source_file", "source_line", "error", "raw"], text_columns=("raw",)
                ),
                unsafe_allow_html=True,
            )

# ---------------------------------------------------------------- signals: what the signal stages measured
with signals_tab:
    if signals_tab.open:
        overview = q(queries.signal_overview, db, curation_id)
        if overview.height == 0:
            st.info(
                "No signal was measured in this curation: the stages language, pii, quality and pairs "
                "record one per row (add them to curate.stages)."
            )
        else:
            st.caption("Every number the signal stages measured per row, kept rows included.")
            st.dataframe(overview, hide_index=True, key="signal_overview")
            options = [(r["stage"], r["signal"], r["field"]) for r in overview.to_dicts()]
            ranges = {
                (r["stage"], r["signal"], r["field"]): (r["min"], r["max"]) for r in overview.to_dicts()
            }
            stage, signal, field = st.selectbox(
                "Signal",
                options,
                format_func=lambda o: f"{o[0]} · {o[1]} · {o[2] or 'row'}",
                key="signal_pick",
            )
            hist = q(queries.signal_histogram, db, curation_id, stage, signal, field)
            long = hist.unpivot(
                index=["bin_start", "bin_end"],
                on=["kept", "dropped"],
                variable_name="rows of",
                value_name="rows",
            )
            chart = (
                alt.Chart(long.to_pandas())
                .mark_bar()
                .encode(
                    x=alt.X("bin_start:Q", bin="binned", title=f"{signal} ({field or 'row'})"),
                    x2="bin_end:Q",
                    y=alt.Y("rows:Q", stack=True),
                    color=alt.Color("rows of:N", sort=["kept", "dropped"]),
                    tooltip=["bin_start", "bin_end", "rows of", "rows"],
                )
            )
            st.altair_chart(chart, width="stretch")
            low, high = (float(v) for v in ranges[(stage, signal, field)])
            if high > low:
                picked = st.slider(
                    "Rows with a value between", min_value=low, max_value=high, value=(low, high),
                    key=f"signal_range:{stage}:{signal}:{field}",
                )  # fmt: skip
                low, high = float(picked[0]), float(picked[1])
            page_size = 25
            first = q(queries.signal_rows, db, curation_id, stage, signal, field, low, high, limit=1)
            total = int(first["total"][0]) if first.height else 0
            st.caption(
                f"{total:,} rows with {safetext.text(signal)} in [{low:.4g}, {high:.4g}], highest first"
            )
            offset = common.pager(f"signal_page:{stage}:{signal}:{field}", total, page_size)
            rows = q(
                queries.signal_rows, db, curation_id, stage, signal, field, low, high,
                limit=page_size, offset=offset,
            )  # fmt: skip
            st.markdown(
                common.html_table(
                    rows.to_dicts(),
                    ["sample_id", "value", "outcome", "evidence", "text"],
                    text_columns=("outcome", "evidence", "text"),
                ),
                unsafe_allow_html=True,
            )
