"""livercore's Streamlit app: the router. Run with `streamlit run streamlit_app.py`."""

import streamlit as st

from livercore.app import profiling, state, ui

st.set_page_config(page_title="livercore", page_icon=":material/radiology:", layout="wide")
page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/review.py", title="Review a lesion", icon=":material/search:", url_path="review"),
        st.Page(
            "pages/compare.py", title="Compare phase-models", icon=":material/compare:", url_path="compare"
        ),
        st.Page("pages/results.py", title="Study results", icon=":material/analytics:", url_path="results"),
        st.Page(
            "pages/library.py", title="Teaching library", icon=":material/menu_book:", url_path="library"
        ),
        st.Page("pages/quiz.py", title="Quiz", icon=":material/quiz:", url_path="quiz"),
        st.Page("pages/progress.py", title="Progress", icon=":material/insights:", url_path="progress"),
        st.Page(
            "pages/builder.py", title="Cohort builder", icon=":material/library_add:", url_path="builder"
        ),
    ]
)
ui.disclaimer()
ui.model_set_picker()
try:
    with ui.routed(), profiling.profiled(page.url_path or "home"):
        page.run()
finally:
    state.start_up()  # once, after the first page: torch threads set, models loaded in the background
