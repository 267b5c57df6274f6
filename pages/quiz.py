"""Quiz: which category is this lesion? Feedback with the criteria, the findings and the model's view."""

from __future__ import annotations

import streamlit as st

from livercore.app import figures, inputs, quiz, state, ui
from livercore.errors import InputError
from livercore.teaching import catalogue, views
from livercore.vocab import CATEGORIES, PHASE_MODELS, PHASES, Category

SCORE, RNG, CURRENT, FEEDBACK = "quiz_score", "quiz_rng", "quiz_current", "quiz_feedback"
CAM_OPACITY = 0.45

ui.require_router()
st.title("Quiz: which category?")
st.caption(
    "A lesion from the teaching library, centred in the view. Pick its category, then compare your "
    "reading with the reference standard, the imaging criteria and the network that sees the same phases. "
    "Categories you miss come back more often."
)

entries = catalogue.library_cases() + (catalogue.site_cases() if catalogue.site_cases_dir() else [])
if not entries:
    st.info("No teaching cases are installed (cases/catalogue.csv).")
    st.stop()
score: quiz.QuizScore = st.session_state.setdefault(SCORE, quiz.QuizScore())
rng = st.session_state.setdefault(RNG, quiz.new_rng())

categories = st.pills(
    "Categories to practise",
    CATEGORIES,
    selection_mode="multi",
    default=list(CATEGORIES),
    format_func=lambda c: f"{c.value} {c.info.name}",
    key="quiz_categories",
) or list(CATEGORIES)
phase_set = st.columns(3)[0].selectbox(
    "Phases shown", list(quiz.PHASE_SETS), format_func=quiz.PHASE_SETS.__getitem__, key="quiz_phases"
)


def next_case(exclude: str | None = None) -> None:
    entry = quiz.draw_case(
        entries, st.session_state[SCORE], st.session_state[RNG], categories=categories, exclude=exclude
    )
    st.session_state[CURRENT] = entry.case_id
    st.session_state[FEEDBACK] = None


current = next((e for e in entries if e.case_id == st.session_state.get(CURRENT)), None)
if current is None or current.category not in categories:
    next_case(current.case_id if current else None)
    current = next(e for e in entries if e.case_id == st.session_state[CURRENT])

s1, s2 = st.columns([1, 3])
s1.metric(
    "Score this session",
    f"{score.correct}/{score.asked}" + (f" ({score.percent:.0f} %)" if score.asked else ""),
)
missed = quiz.most_missed(score)
s2.markdown(
    "**Missed most**: "
    + (
        ", ".join(f"{r.category.value} {r.category.info.name} ({r.missed} of {r.asked})" for r in missed)
        if missed
        else "nothing yet."
    )
)

try:
    case = state.open_teaching_case(current.case_id)
except InputError as err:
    st.error(str(err), icon=":material/error:")
    st.stop()
shown = quiz.shown_phases(phase_set)
number = score.asked + (0 if st.session_state.get(FEEDBACK) else 1)
st.markdown(f"#### Question {number} · lesion {current.diameter_mm:.0f} mm")
for column, phase in zip(st.columns(3), PHASES, strict=True):
    if phase in shown:
        w = phase.window
        column.image(
            views.lesion_view(case, phase),
            caption=f"{phase.value} · L{w.level:.0f}/W{w.width:.0f}",
            width="stretch",
        )
    else:
        column.caption(f"{phase.value}: not shown in this quiz")

feedback: quiz.Feedback | None = st.session_state.get(FEEDBACK)
if feedback is None:
    with st.form(f"quiz_form_{current.case_id}_{score.asked}", border=False):
        answer = st.radio(
            "Your answer",
            CATEGORIES,
            index=None,
            horizontal=True,
            format_func=lambda c: f"{c.value} {c.info.name}",
            key=f"quiz_answer_{score.asked}",
        )
        submitted = st.form_submit_button("Check my answer", type="primary")
    if submitted and answer is None:
        st.warning("Choose a category first.")
    elif submitted and answer is not None:
        st.session_state[FEEDBACK] = quiz.grade(current, answer)
        st.session_state[SCORE] = score.record(
            quiz.Answer(current.case_id, current.category, Category(answer), phase_set)
        )
        st.rerun()
    st.stop()

(st.success if feedback.correct else st.error)(feedback.headline)
left, right = st.columns(2)
with left:
    st.markdown(f"**The answer, {feedback.truth.value} {feedback.truth.info.name}**: {feedback.criteria}.")
    if feedback.chosen_criteria:
        st.markdown(
            f"**Your answer, {feedback.answer.value} {feedback.answer.info.name}**: {feedback.chosen_criteria}."
        )
    st.markdown("**This case**")
    st.info(feedback.findings or "No findings were recorded for this case.", icon=":material/description:")
    if current.seen_in_training:
        st.caption("This case is from the training cohort: the shipped models were trained on it.")
    ui.review_link(current.case_id)
with right:
    models = state.get_models()
    name = quiz.model_for(phase_set)
    if name not in models:
        ui.no_models_message(state.refused_models())
    else:
        crops = inputs.crops_for(case, case.lesion_boxes)
        result = state.analyse(crops, "GradCAM", None, state.models_key(models)).results[name]
        st.markdown(
            f"**What the network said.** {quiz.model_sentence(phase_set, result.probabilities, feedback.truth)}"
        )
        st.plotly_chart(
            figures.probability_figure(result.probabilities, height=200, categories=result.categories),
            key="quiz_probabilities",
        )
        st.markdown("**Which phase its answer rests on, and where it looked**")
        ui.contribution_bars(result, key="quiz_contribution")
        leading = result.contribution.leading if result.contribution else PHASE_MODELS[name].phases[0]
        ui.cam_panel(crops, result, leading, opacity=CAM_OPACITY, method="GradCAM", width=210)
        ui.cam_legend()
st.button("Next case", type="primary", on_click=next_case, args=(current.case_id,), key="quiz_next")
