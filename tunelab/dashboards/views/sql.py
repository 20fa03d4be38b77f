"""SQL: a read-only console over the warehouse (the same connection as `tunelab sql`)."""

import duckdb
import streamlit as st

from tunelab import safetext
from tunelab.dashboards import common, console
from tunelab.errors import UserError

db = common.page_start("SQL", "Read-only: external access is disabled and nothing can be written")

examples = console.example_queries()
if "sql_text" not in st.session_state:
    st.session_state["sql_text"] = examples[0][1]
    st.session_state["sql_run"] = True


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
