"""Progress: a learner's accuracy per category and per finding over time, confidence against
correctness, streaks, the cards due and when each comes back, their own attempts as CSV; and,
for educators only, the group's weak categories and findings (never anyone's notes)."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from livercore.app import state, ui
from livercore.teaching import progress, record

ui.require_router()
st.title("Progress")
who = ui.sign_in()
if who is None:
    st.info("Your progress is kept once you are identified (above): then come back here.")
    st.stop()
engine = state.learner_engine()
lid = state.learner_id(who)
attempts = record.attempts_frame(engine, lid)
cards = record.cards_frame(engine, lid)
now = datetime.now(UTC)

tabs = st.tabs(["Your progress", "Group (educators)"] if who.is_educator else ["Your progress"])
with tabs[0]:
    if attempts.empty:
        st.info("No answers yet: the Quiz keeps each one here.")
        ui.page_link("pages/quiz.py", "Go to the Quiz", ":material/quiz:")
    else:
        days, right_run = progress.streaks(attempts, now.date())
        due = int((cards["due"] <= now).sum()) if len(cards) else 0
        m = st.columns(4)
        m[0].metric("Answers", len(attempts))
        m[1].metric("Right", f"{attempts.correct.mean() * 100:.0f} %")
        m[2].metric("Streak", f"{days} day{'s' if days != 1 else ''}", help=f"{right_run} right in a row")
        m[3].metric("Due for review now", due)
        over_time = st.columns(2)
        over_time[0].markdown("**Per category, over your answers**")
        over_time[0].plotly_chart(progress.accuracy_over_time(attempts), key="progress_over_time")
        over_time[1].markdown("**Per finding, over your answers**")
        over_time[1].plotly_chart(progress.features_over_time(attempts), key="progress_features_over_time")
        left, right = st.columns(2)
        by_category = progress.category_accuracy(attempts)
        left.markdown("**Per category** (the true category of each case)")
        left.plotly_chart(progress.bars(by_category, "category"), key="progress_categories")
        by_feature = progress.feature_accuracy(attempts)
        right.markdown("**Per finding** (marked or rightly left out)")
        if by_feature.empty:
            right.caption("No findings marked yet: answer in 'Findings first' mode.")
        else:
            right.plotly_chart(progress.bars(by_feature, "feature"), key="progress_features")
            right.dataframe(progress.as_percent(by_feature), hide_index=True)
        st.markdown("**How sure you were, and how often right**")
        st.table(progress.as_percent(progress.confidence_table(attempts)).set_index("confidence"))
        st.markdown("**When each case comes back** (spaced repetition, FSRS)")
        shown = cards.assign(
            **{"comes back": [progress.when_text(d.to_pydatetime(), now) for d in cards["due"]]}
        )
        st.dataframe(
            shown[["case_id", "comes back", "reviews", "lapses"]], hide_index=True, key="progress_cards"
        )
        st.download_button(
            "Your attempts (CSV)",
            attempts.to_csv(index=False).encode("utf-8"),
            "livercore-my-attempts.csv",
            "text/csv",
            on_click="ignore",
        )
if who.is_educator:
    with tabs[1]:
        group = record.group_frame(engine)
        st.caption(
            f"{group['learner'].nunique() if len(group) else 0} learners, {len(group)} answers. Their notes are "
            "theirs alone and are not shown here."
        )
        if group.empty:
            st.info("No answers from anyone yet.")
        else:
            categories, findings = progress.group_summary(group)
            left, right = st.columns(2)
            left.markdown("**Weakest categories first**")
            left.dataframe(progress.as_percent(categories), hide_index=True, key="group_categories")
            right.markdown("**Weakest findings first**")
            right.dataframe(progress.as_percent(findings), hide_index=True, key="group_features")
