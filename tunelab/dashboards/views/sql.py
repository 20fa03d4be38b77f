"""SQL: a read-only console over the warehouse (the same connection as `tunelab sql`).

The example queries (docs/warehouse.md) are pinned by id to the evaluation and curation chosen here, so
they show this warehouse's rows rather than the newest evaluation's or the demo dataset's.
"""

import duckdb
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, console, queries
from tunelab.dashboards.common import q
from tunelab.errors import UserError

db = common.page_start("SQL", "Read-only: external access is disabled and nothing can be written")

evals = q(queries.evals, db)
curations = q(queries.curations, db)
pins = st.columns(2)
eval_ids = evals["eval_id"].to_list() if evals.height else []
curation_ids = curations["curation_id"].to_list() if curations.height else []
eval_id = pins[0].selectbox(
    "Examples use the evaluation",
    eval_ids or ["(none)"],
    key="eval",
    bind="query-params" if eval_ids else None,
)
curation_id = pins[1].selectbox(
    "and the curation",
    curation_ids or ["(none)"],
    key="curation",
    bind="query-params" if curation_ids else None,
)
eval_id = eval_id if eval_ids else None
curation_id = curation_id if curation_ids else None
sample_id = q(queries.example_sample, db, curation_id) if curation_id else None
examples = [
    (title, queries.pin_example(sql, eval_id, curation_id, sample_id))
    for title, sql in console.example_queries()
]
pinned_to = (eval_id, curation_id)
if "sql_text" not in st.session_state or st.session_state.get("sql_pinned_to") != pinned_to:
    # a new pick re-pins the query on screen when it is still one of the examples
    previous = st.session_state.get("sql_examples", [])
    text = st.session_state.get("sql_text")
    if text is None or text in previous:
        index = previous.index(text) if text in previous else 0
        st.session_state["sql_text"] = examples[index][1]
        st.session_state["sql_run"] = True
st.session_state["sql_pinned_to"] = pinned_to
st.session_state["sql_examples"] = [sql for _, sql in examples]


def use_example(sql: str) -> None:
    st.session_state["sql_text"] = sql
    st.session_state["sql_run"] = True


st.markdown("**Example queries**")
example_columns = st.columns(3)
for i, (title, sql) in enumerate(examples):
    example_columns[i % 3].button(
        title, key=f"example_{i}", on_click=use_example, args=(sql,), width="stretch"
    )

st.text_area("SQL", key="sql_text", height=180)
if st.button("Run", type="primary", key="run_sql"):
    st.session_state["sql_run"] = True

if st.session_state.get("sql_run"):
    sql = st.session_state["sql_text"]
    try:
        frame, truncated = console.console_query(db, sql)
    except UserError as exc:  # already one line, phrased like `tunelab sql`'s
        st.error(safetext.text(str(exc)))
    except duckdb.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        st.error(f"sql: {safetext.text(message)}")
    else:
        note = f" (first {console.SQL_CONSOLE_ROW_LIMIT:,} rows)" if truncated else ""
        st.caption(f"{frame.height:,} rows{note}")
        st.dataframe(frame, hide_index=True, key="sql_result")
        st.download_button(
            "Download CSV",
            console.to_csv(frame),
            file_name="tunelab-query.csv",
            mime="text/csv",
            key="sql_csv",
        )
