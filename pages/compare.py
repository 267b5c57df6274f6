"""Compare the five phase-models on one lesion, beside what the paper reported for each."""

from __future__ import annotations

import streamlit as st

from livercore.app import cases, compare, figures, inputs, state, ui
from livercore.errors import InputError
from livercore.vocab import CATEGORIES, PHASE_MODELS

ui.require_router()
st.title("Compare the five phase-models")
st.caption(
    "The same lesion through the triphasic, arterial + delayed, unenhanced, arterial and delayed "
    "models: what each phase contributes (Yasaka et al., Radiology 2018, Tables 2-3)."
)
models = state.get_models()
if not models:
    ui.no_models_message()
    st.stop()

library = cases.library_entries()
case, marks = state.current_case(), state.current_marks()
has_review = case is not None and marks.complete
choice = st.radio(
    "Lesion",
    ["The lesion on the Review page", "An example case"],
    horizontal=True,
    index=0 if has_review else 1,
    key="compare_source",
)
if choice == "An example case":
    picked = st.pills(
        "Example cases",
        [e.case_id for e in library],
        key="compare_pick",
        format_func=lambda cid: next(e.label for e in library if e.case_id == cid),
    )
    if picked and (case is None or case.case_id != picked):
        try:
            state.set_case(state.library_case(picked, str(cases.cases_dir())))
        except InputError as err:
            st.error(str(err))
            st.stop()
        case, marks = state.current_case(), state.current_marks()
    if not picked:
        st.info("Choose an example case.")
        st.stop()
elif not has_review:
    st.info(
        "No lesion is marked on the Review page yet: open a case there and mark its lesion, or choose an "
        "example case here."
    )
    st.page_link("pages/review.py", label="Go to the Review page", icon=":material/search:")
    st.stop()
assert case is not None

c1, c2, c3 = st.columns(3)
method = c1.selectbox("CAM method", ("GradCAM", "GradCAM++", "EigenCAM"), key="compare_cam_method")
target = c2.selectbox(
    "CAM for",
    [None, *CATEGORIES],
    key="compare_cam_target",
    format_func=lambda c: "each model's top category" if c is None else f"{c.value} {c.info.name}",
)
opacity = c3.slider("CAM opacity", 0.0, 1.0, 0.45, 0.05, key="compare_opacity")
crops = inputs.crops_for(case, marks.boxes)
analysis = state.analyse(crops, method, target.value if target else None, state.models_key(models))
verdict = compare.agreement(analysis)

st.markdown(f"#### {case.title}")
(st.success if verdict.unanimous else st.warning)(verdict.sentences[0])
for sentence in verdict.sentences[1:]:
    st.info(sentence, icon=":material/menu_book:")

st.subheader("Probabilities")
st.plotly_chart(
    figures.probability_heatmap({n: r.probabilities for n, r in analysis.results.items()}),
    key="compare_heatmap",
)
st.table(compare.comparison_table(analysis).set_index("model"))
st.caption(
    "P(·): this lesion. 'paper …': median (range) over five training sessions in Yasaka et al. 2018; "
    "sensitivity: the paper's test sensitivity of that model for the category it predicts here."
)

st.subheader("Where each model looks")
header = st.columns([1.3, 1, 1, 1, 1.6])
header[0].markdown("**model**")
for column, p in zip(header[1:4], ("unenhanced", "arterial", "delayed"), strict=True):
    column.markdown(f"**{p}**")
header[4].markdown("**the paper reported**")
reference = compare.paper_reference()
for name, result in analysis.results.items():
    row = st.columns([1.3, 1, 1, 1, 1.6])
    top = result.predicted
    row[0].markdown(
        f"**{PHASE_MODELS[name].label}**  \n{top.value} {top.info.name} "
        f"({result.probabilities[top.output_index] * 100:.0f} %)"
    )
    for column, p, crop in zip(row[1:4], ("unenhanced", "arterial", "delayed"), crops, strict=True):
        if any(ph.value == p for ph in PHASE_MODELS[name].phases) and result.cam is not None:
            column.image(figures.enlarge(figures.cam_overlay(crop, result.cam, opacity), 2), width=140)
        else:
            column.caption("not an input")
    row[4].caption(
        f"test accuracy {reference.loc[name, 'paper test accuracy']}  \n"
        f"AUC {reference.loc[name, 'paper AUC (A-B vs C-E)']}  \n"
        f"sensitivity for {top.value}: {compare.paper_sensitivity(name, top)}"
    )
ui.cam_legend("the category named above (each model's top category unless chosen)")
