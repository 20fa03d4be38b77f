"""Streamlit entry point: `streamlit run app.py -- --warehouse FILE` (what `tunelab dashboard` runs).

Each page is its own script under views/ (not pages/: that name would switch on Streamlit's older
automatic multipage mode next to st.navigation), so a test can run one page alone with AppTest.
"""

from pathlib import Path

import streamlit as st

# Material icons ship with Streamlit; emoji would need a colour-emoji font the machine may lack.
VIEWS_DIR = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="tunelab", page_icon=":material/science:", layout="wide")
navigation = st.navigation(
    [
        st.Page(
            str(VIEWS_DIR / "audit.py"),
            title="Audit",
            icon=":material/fact_check:",
            url_path="audit",
            default=True,
        ),
        st.Page(str(VIEWS_DIR / "diff.py"), title="Diff", icon=":material/difference:", url_path="diff"),
        st.Page(str(VIEWS_DIR / "runs.py"), title="Runs", icon=":material/show_chart:", url_path="runs"),
        st.Page(
            str(VIEWS_DIR / "predictions.py"),
            title="Predictions",
            icon=":material/forum:",
            url_path="predictions",
        ),
        st.Page(
            str(VIEWS_DIR / "thresholds.py"),
            title="Thresholds",
            icon=":material/tune:",
            url_path="thresholds",
        ),
        st.Page(str(VIEWS_DIR / "sql.py"), title="SQL", icon=":material/database:", url_path="sql"),
    ]
)
navigation.run()
