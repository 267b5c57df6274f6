"""Quiz: mark the findings per phase, then the category and how sure you are; or step through
the phases. The reveal: truth, criteria, findings, your features graded, the model's view. Kept
per learner in the store, with spaced repetition (FSRS) deciding what comes back when."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import streamlit as st

from livercore.app import inputs, quiz, state, ui
from livercore.errors import InputError
from livercore.teaching import catalogue, features, progress, record, schedule, views
from livercore.teaching.catalogue import TeachingCase
from livercore.vocab import CATEGORIES, PHASE_MODELS, PHASES, Category

SCORE, RNG, CURRENT, FEEDBACK, STEPS = "quiz_score", "quiz_rng", "quiz_current", "quiz_feedback", "quiz_steps"
STARTED = "quiz_started"
CAM_OPACITY = 0.45
MODES = {"features": "Findings first, then the category", "stepwise": "Step through the phases"}

ui.require_router()
st.title("Quiz: which category?")
st.caption(
    "A lesion from the teaching library, centred in the view. Mark what you see in each phase, then the "
    "category and how sure you are; or step through the phases as the paper's models do, naming the "
    "category after each. Then compare your reading with the reference standard and the network."
)

who = ui.sign_in()
lid = state.learner_id(who) if who else None
engine = state.learner_engine() if lid is not None else None

entries = catalogue.library_cases() + (catalogue.site_cases() if catalogue.site_cases_dir() else [])
if not entries:
    st.info("No teaching cases are installed (cases/catalogue.csv).")
    st.stop()
score: quiz.QuizScore = st.session_state.setdefault(SCORE, quiz.QuizScore())
rng = st.session_state.setdefault(RNG, quiz.new_rng())

c1, c2 = st.columns([1, 1])
mode = c1.radio("How to answer", list(MODES), format_func=MODES.__getitem__, horizontal=True, key="quiz_mode")
phase_set = (
    c2.selectbox(
        "Phases shown", list(quiz.PHASE_SETS), format_func=quiz.PHASE_SETS.__getitem__, key="quiz_phases"
    )
    if mode == "features"
    else "triphasic"
)
categories = st.pills(
    "Categories to practise",
    CATEGORIES,
    selection_mode="multi",
    default=list(CATEGORIES),
    format_func=lambda c: f"{c.value} {c.info.name}",
    key="quiz_categories",
) or list(CATEGORIES)
pool = [e for e in entries if e.category in categories] or entries


def next_case(exclude: str | None = None) -> None:
    """Choose the next question: the learner's due cards and new cases (FSRS), or, without a
    learner, the session's own weighting of missed categories."""
    if lid is not None and engine is not None:
        history = record.history(engine, lid)
        truth = {e.case_id: features.case_truth(e) for e in pool}
        entry, why = schedule.next_case(
            pool, history, st.session_state[RNG], case_features=truth, exclude=exclude
        )
    else:
        entry, why = (
            quiz.draw_case(pool, st.session_state[SCORE], st.session_state[RNG], exclude=exclude),
            "new",
        )
    st.session_state[CURRENT] = (entry.case_id, why)
    st.session_state[FEEDBACK] = None
    st.session_state[STEPS] = {}
    st.session_state[STARTED] = time.monotonic()


held = st.session_state.get(CURRENT)
current = next((e for e in pool if held and e.case_id == held[0]), None)
if current is None:
    next_case(held[0] if held else None)
    current = next(e for e in pool if e.case_id == st.session_state[CURRENT][0])
question: TeachingCase = current  # the case asked (narrowed for the submit callback below)
why = st.session_state[CURRENT][1]

s1, s2, s3 = st.columns([1, 1, 2])
if lid is not None and engine is not None:
    history = record.history(engine, lid)
    due = schedule.due_now(history, datetime.now(UTC))
    s1.metric("Due for review now", len(due))
    s2.metric("Answers kept", record.count_attempts(engine, lid))
    ui.page_link(
        "pages/progress.py", "Your progress and when each case comes back", ":material/insights:", where=s3
    )
else:
    s1.metric(
        "Score this session",
        f"{score.correct}/{score.asked}" + (f" ({score.percent:.0f} %)" if score.asked else ""),
    )
    missed = quiz.most_missed(score)
    s3.markdown(
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

feedback: quiz.Feedback | None = st.session_state.get(FEEDBACK)
steps: dict[str, str] = st.session_state.setdefault(STEPS, {})
# Stepwise: the phases revealed so far (unenhanced, then arterial, then delayed); all at the reveal.
shown = PHASES[: len(steps) + 1] if mode == "stepwise" and feedback is None else quiz.shown_phases(phase_set)
reason = {"due": "a case due for review", "new": "a new case", "early": "reviewed early"}[why]
st.markdown(
    f"#### Question {score.asked + (0 if feedback else 1)} · {reason} · lesion {current.diameter_mm:.0f} mm"
)
for column, phase in zip(st.columns(3), PHASES, strict=True):
    if phase in shown:
        w = phase.window
        column.image(
            views.lesion_view(case, phase),
            caption=f"{phase.value} · L{w.level:.0f}/W{w.width:.0f}",
            width="stretch",
        )
    else:
        column.caption(
            f"{phase.value}: not shown yet"
            if mode == "stepwise"
            else f"{phase.value}: not shown in this quiz"
        )

truth = features.case_truth(current)
asked = features.features_of(shown) if mode == "features" else []


def submit(answer: Category, confidence: int, marked: list[str], note: str) -> None:
    """Grade the answer, keep it (the learner's store, else the session) and show the reveal."""
    attempt = record.AttemptInput(
        case_id=question.case_id,
        mode=mode,
        phase_set=phase_set,
        answer=answer,
        truth=question.category,
        confidence=confidence,
        features_marked=marked,
        features_truth=truth,
        features_asked=[f.key for f in asked],
        steps=dict(steps),
        note=note,
        seconds=round(time.monotonic() - st.session_state.get(STARTED, time.monotonic()), 1),
    )
    due = None
    if lid is not None and engine is not None:
        due = record.record(engine, lid, attempt).due
    st.session_state[FEEDBACK] = quiz.grade(
        question, answer, due=due, marks=features.grade(asked, marked, truth), steps=dict(steps)
    )
    st.session_state[SCORE] = score.record(
        quiz.Answer(question.case_id, question.category, answer, phase_set)
    )


if feedback is None:
    last_step = mode == "features" or len(steps) == len(PHASES) - 1
    with st.form(f"quiz_form_{current.case_id}_{score.asked}_{len(steps)}", border=False):
        marked: list[str] = []
        if asked:
            st.markdown("**What do you see?** Tick each finding present (leave the rest).")
            for column, phase in zip(st.columns(3), PHASES, strict=True):
                mine = [f for f in asked if f.phase is phase]
                if phase in shown and mine:
                    column.caption(f"{phase.value} phase")
                    marked += [
                        f.key
                        for f in mine
                        if column.checkbox(f.label, key=f"quiz_feature_{f.key}_{score.asked}", help=f.hint)
                    ]
        label = (
            f"After the {shown[-1].value} phase, the likely category"
            if mode == "stepwise"
            else "The category"
        )
        answer = st.radio(
            label,
            CATEGORIES,
            index=None,
            horizontal=True,
            format_func=lambda c: f"{c.value} {c.info.name}",
            key=f"quiz_answer_{score.asked}_{len(steps)}",
        )
        confidence = (
            st.radio(
                "How sure are you?",
                list(progress.CONFIDENCE_WORDS),
                index=1,
                horizontal=True,
                format_func=progress.CONFIDENCE_WORDS.__getitem__,
                key=f"quiz_confidence_{score.asked}",
            )
            if last_step
            else 2
        )
        note = (
            st.text_input("A note for yourself (optional, only you see it)", key=f"quiz_note_{score.asked}")
            if last_step and lid is not None
            else ""
        )
        submitted = st.form_submit_button(
            "Check my answer" if last_step else "Show the next phase", type="primary"
        )
    if submitted and answer is None:
        st.warning("Choose a category first.")
    elif submitted and answer is not None:
        if mode == "stepwise":
            steps[shown[-1].value] = Category(answer).value
        if last_step:
            submit(Category(answer), int(confidence), marked, note or "")
        st.rerun()
    st.stop()

(st.success if feedback.correct else st.error)(feedback.headline)
if feedback.due is not None:
    st.caption(
        f":material/event_repeat: This case comes back {progress.when_text(feedback.due, datetime.now(UTC))}."
    )
left, right = st.columns(2)
with left:
    st.markdown(f"**The answer, {feedback.truth.value} {feedback.truth.info.name}**: {feedback.criteria}.")
    if feedback.chosen_criteria:
        st.markdown(
            f"**Your answer, {feedback.answer.value} {feedback.answer.info.name}**: {feedback.chosen_criteria}."
        )
    if feedback.steps:
        st.markdown("**Phase by phase**: " + quiz.steps_sentence(feedback.steps, feedback.truth))
    if feedback.marks:
        right_count, offered = features.score(feedback.marks)
        st.markdown(f"**Your findings**: {right_count} of {offered} right")
        st.table(quiz.marks_table(feedback.marks))
    st.markdown("**This case, phase by phase**")
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
        result = state.analyse(crops, "GradCAM", None, state.models_key(models), explain=(name,)).results[
            name
        ]
        st.markdown(
            f"**What the network said.** {quiz.model_sentence(phase_set, result.probabilities, feedback.truth)}"
        )
        ui.probability_bars(result)
        st.markdown("**Which phase its answer rests on, and where it looked**")
        ui.contribution_bars(result)
        leading = result.contribution.leading if result.contribution else PHASE_MODELS[name].phases[0]
        ui.cam_panel(crops, result, leading, opacity=CAM_OPACITY, method="GradCAM", width=210)
        ui.cam_legend()
st.button("Next case", type="primary", on_click=next_case, args=(current.case_id,), key="quiz_next")
