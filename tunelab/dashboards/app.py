"""Streamlit entry point: `streamlit run app.py -- --warehouse FILE` (what `tunelab dashboard` runs).

Each page is its own script under pages/, so a test can run one page alone with AppTest.
"""

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="tunelab", page_icon="🧪", layout="wide")
navigation = st.navigation(
    [
        st.Page(str(PAGES_DIR / "audit.py"), title="Audit", icon="🔍", url_path="audit", default=True),
        st.Page(str(PAGES_DIR / "runs.py"), title="Runs", icon="📈", url_path="runs"),
        st.Page(str(PAGES_DIR / "predictions.py"), title="Predictions", icon="💬", url_path="predictions"),
        st.Page(str(PAGES_DIR / "sql.py"), title="SQL", icon="🗄️", url_path="sql"),
    ]
)
navigation.run()
