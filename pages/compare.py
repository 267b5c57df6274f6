"""Compare the five phase-models on one lesion, beside what the paper reported for each."""

from __future__ import annotations

import streamlit as st

from livercore import paper
from livercore.app import compare, figures, inputs, state, ui
from livercore.errors import InputError
from livercore.teaching import catalogue
from livercore.vocab import PHASE_MODELS, PHASES

ui.require_router()
st.title("Compare the five phase-models")
st.caption(
    "The same lesion through the triphasic, arterial + delayed, unenhanced, arterial and delayed "
    "models: what each phase contributes (Yasaka et al., Radiology 2018, Tables 2-3)."
)
models = state.get_models()
if not models:
    ui.no_models_message(state.refused_models())
    st.stop()
ui.refused_models_message(state.refused_models(), models)

examples = catalogue.example_cases()
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
        [e.case_id for e in examples],
        key="compare_pick",
        format_func=lambda cid: next(e.label for e in examples if e.case_id == cid),
    )
    if picked and (case is None or case.case_id != picked):
        try:
            state.set_case(state.open_teaching_case(picked))
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

c1, c2, c3, c4 = st.columns(4)
cam = ui.cam_controls(
    (c1, c2, c4),
    keys=("compare_cam_method", "compare_cam_target", "compare_opacity"),
    top_label="each model's top category",
)
method, target, opacity = cam.method, cam.target, cam.opacity
over = c3.selectbox(
    "Draw each CAM over",
    [None, *PHASES],
    key="compare_cam_phase",
    format_func=lambda p: "the phase that carries most" if p is None else f"the {p.value} phase",
    help="A model that does not see the phase chosen is drawn over the phase that carries most.",
)
crops = inputs.crops_for(case, marks.boxes)
analysis = state.analyse(crops, method, target.value if target else None, state.models_key(models))
analysis = state.with_image_checks(analysis, case, marks)
verdict = compare.agreement(analysis)

st.markdown(f"#### {case.title}")
for name in analysis.unlike_training:
    ui.ood_notice(analysis.results[name], model_label=True)
if analysis.unlike_training:
    st.caption(
        "Their predictions are still shown below, labelled as made on images unlike the training data."
    )
(st.success if verdict.unanimous else st.warning)(verdict.sentences[0])
for sentence in verdict.sentences[1:]:
    st.info(sentence, icon=":material/menu_book:")

st.subheader("Probabilities")
st.html(figures.probability_table_html({n: r.probabilities for n, r in analysis.results.items()}))
st.table(compare.comparison_table(analysis).set_index("model"))
st.caption(
    "P(·): this lesion. 'paper …': median (range) over five training sessions in Yasaka et al. 2018; "
    "sensitivity: the paper's test sensitivity of that model for the category it predicts here."
)

st.subheader("Where each model looks, and which phase it rests on")
widths = [1.2, 1, 1.6, 1.2]
header = st.columns(widths)
for column, text in zip(
    header, ("model", "CAM, drawn once", "phase contributions", "the paper reported"), strict=True
):
    column.markdown(f"**{text}**")
reference = paper.model_reference()
for name, result in analysis.results.items():
    row = st.columns(widths, vertical_alignment="center")
    top = result.predicted
    row[0].markdown(
        f"**{PHASE_MODELS[name].label}**  \n{top.value} {top.info.name} "
        f"({result.probabilities[top.output_index] * 100:.0f} %)"
        + ("  \n:orange[on images unlike its training data]" if result.unlike_training else "")
    )
    seen = PHASE_MODELS[name].phases
    phase = over if over in seen else (result.contribution.leading if result.contribution else seen[0])
    with row[1]:
        ui.cam_panel(crops, result, phase, opacity=opacity, method=method, width=160, explain=False)
    with row[2]:
        ui.contribution_bars(result, explain=False)
    row[3].caption(
        f"test accuracy {reference.loc[name, 'paper test accuracy']}  \n"
        f"AUC {reference.loc[name, 'paper AUC (A-B vs C-E)']}  \n"
        f"sensitivity for {top.value}: {paper.sensitivity_text(name, top)}"
    )
ui.cam_legend()
target_text = "each model's top category" if target is None else f"{target.value} {target.info.name}"
st.caption(
    f"{ui.cam_caption(method, target_text)} A multiphase model's map is one map for all its phases "
    "(its last convolutional layer has already mixed them): it says where; the bars say in which "
    f"phase. {ui.CONTRIBUTION_CAPTION}"
)
