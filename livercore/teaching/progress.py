"""A learner's progress, and a group's, from their attempts (livercore.teaching.record): accuracy
per category and per feature over time, confidence against correctness, streaks, and the charts
the progress page draws. Pure pandas and plotly: no store, no Streamlit."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import plotly.graph_objects as go

from livercore.teaching.features import BY_KEY
from livercore.vocab import CATEGORIES, Category

CONFIDENCE_WORDS = {1: "unsure", 2: "fairly sure", 3: "sure"}


def _keys(text: str) -> set[str]:
    return set(filter(None, str(text).split(",")))


def feature_rows(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per feature offered in an attempt: answered_at, feature, present, marked, right."""
    rows = []
    for a in attempts.itertuples():
        truth, marked = _keys(a.features_truth), _keys(a.features_marked)
        for key in sorted(_keys(a.features_asked)):
            rows.append(
                {
                    "answered_at": a.answered_at,
                    "feature": key,
                    "present": key in truth,
                    "marked": key in marked,
                    "right": (key in truth) == (key in marked),
                }
            )
    return pd.DataFrame(rows, columns=["answered_at", "feature", "present", "marked", "right"])


def category_accuracy(attempts: pd.DataFrame) -> pd.DataFrame:
    """Per true category: answers, right, accuracy (categories never asked left out)."""
    if attempts.empty:
        return pd.DataFrame(columns=["category", "answers", "right", "accuracy"])
    g = attempts.groupby("truth")["correct"].agg(["count", "sum"]).reindex([c.value for c in CATEGORIES])
    g = g.dropna()
    out = pd.DataFrame(
        {
            "category": [f"{c} {Category(c).info.name}" for c in g.index],
            "answers": g["count"].astype(int).to_numpy(),
            "right": g["sum"].astype(int).to_numpy(),
        }
    )
    out["accuracy"] = out["right"] / out["answers"]
    return out


def feature_accuracy(attempts: pd.DataFrame) -> pd.DataFrame:
    """Per feature: times offered, right decisions, accuracy, and how often it was missed
    (present, not marked) or wrongly marked (marked, absent)."""
    rows = feature_rows(attempts)
    if rows.empty:
        return pd.DataFrame(columns=["feature", "offered", "right", "accuracy", "missed", "wrongly marked"])
    out = []
    for key, g in rows.groupby("feature"):
        out.append(
            {
                "feature": BY_KEY[str(key)].label if key in BY_KEY else str(key),
                "offered": len(g),
                "right": int(g.right.sum()),
                "accuracy": float(g.right.mean()),
                "missed": int((g.present & ~g.marked).sum()),
                "wrongly marked": int((~g.present & g.marked).sum()),
            }
        )
    return pd.DataFrame(out).sort_values("accuracy").reset_index(drop=True)


def confidence_table(attempts: pd.DataFrame) -> pd.DataFrame:
    """Per confidence level: answers and share right (is the learner's sureness earned?)."""
    if attempts.empty:
        return pd.DataFrame(columns=["confidence", "answers", "accuracy"])
    g = attempts.groupby("confidence")["correct"].agg(["count", "mean"])
    return pd.DataFrame(
        {
            "confidence": [CONFIDENCE_WORDS.get(int(c), str(c)) for c in g.index],
            "answers": g["count"].astype(int).to_numpy(),
            "accuracy": g["mean"].astype(float).to_numpy(),
        }
    )


def streaks(attempts: pd.DataFrame, today: date) -> tuple[int, int]:
    """(consecutive days with at least one answer, up to today or yesterday; right answers in a
    row, most recent last)."""
    if attempts.empty:
        return 0, 0
    days = set(attempts["answered_at"].dt.date)
    day = today if today in days else today - pd.Timedelta(days=1)
    run = 0
    while day in days:
        run += 1
        day = day - pd.Timedelta(days=1)
    right = 0
    for correct in reversed(attempts["correct"].astype(bool).tolist()):
        if not correct:
            break
        right += 1
    return run, right


def _over_answers(fig: go.Figure, y_title: str) -> go.Figure:
    """The layout of a chart over the learner's answers (x: answer number, y: a percentage)."""
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "answer number", "tickformat": "d", "rangemode": "tozero"},
        yaxis={"title": y_title, "range": [-5, 105]},
        legend={"orientation": "h", "y": -0.35, "yanchor": "top", "font": {"size": 11}},
    )
    return fig


def accuracy_over_time(attempts: pd.DataFrame, *, window: int = 5) -> go.Figure:
    """Rolling accuracy over the learner's answers (window answers), overall and per category's
    answers as points."""
    fig = go.Figure()
    if not attempts.empty:
        a = attempts.reset_index(drop=True)
        n = pd.Series(range(1, len(a) + 1))
        fig.add_trace(
            go.Scatter(
                x=n,
                y=a["correct"].astype(float).rolling(window, min_periods=1).mean() * 100,
                mode="lines",
                name=f"all categories (last {window} answers)",
                line={"color": "#37474f", "width": 3},
            )
        )
        for c in CATEGORIES:
            mine = a[a.truth == c.value]
            if mine.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=mine.index + 1,
                    y=mine["correct"].astype(float).expanding().mean() * 100,
                    mode="lines+markers",
                    name=f"{c.value} {c.info.name}",
                    line={"color": c.info.colour, "dash": "dot"},
                )
            )
    return _over_answers(fig, "right (%)")


def features_over_time(attempts: pd.DataFrame) -> go.Figure:
    """Per finding, the share of right decisions (marked when present, left out when absent)
    so far, over the learner's answers that offered it."""
    fig = go.Figure()
    rows = feature_rows(attempts)
    if not rows.empty:
        number = {t: i + 1 for i, t in enumerate(attempts["answered_at"])}
        for key, g in rows.groupby("feature", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=[number.get(t) for t in g["answered_at"]],
                    y=g["right"].astype(float).expanding().mean() * 100,
                    mode="lines+markers",
                    name=BY_KEY[str(key)].label if key in BY_KEY else str(key),
                )
            )
    return _over_answers(fig, "right so far (%)")


def as_percent(table: pd.DataFrame, column: str = "accuracy") -> pd.DataFrame:
    """The table with `column` (a share 0-1) written as a percentage, for display."""
    return table.assign(**{column: [f"{v * 100:.0f} %" for v in table[column]]})


def bars(table: pd.DataFrame, label: str, *, height: int = 280) -> go.Figure:
    """Horizontal accuracy bars of a category_accuracy or feature_accuracy table."""
    fig = go.Figure(
        go.Bar(
            x=(table["accuracy"] * 100).tolist(),
            y=table[label].tolist(),
            orientation="h",
            text=[f"{a * 100:.0f} %" for a in table["accuracy"]],
            textposition="outside",
            cliponaxis=False,
            marker_color="#1565c0",
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 40, "t": 10, "b": 10},
        xaxis={"range": [0, 100], "title": "right (%)"},
        yaxis={"autorange": "reversed"},
    )
    return fig


def group_summary(group: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The educator's view of a group: (accuracy per category with the learners who answered
    it, accuracy per feature), weakest first. Built from attempts without notes."""
    if group.empty:
        return category_accuracy(group), feature_accuracy(group)
    categories = category_accuracy(group)
    learners = group.groupby("truth")["learner"].nunique()
    categories["learners"] = [int(learners.get(c.split()[0], 0)) for c in categories["category"]]
    return categories.sort_values("accuracy").reset_index(drop=True), feature_accuracy(group)


def when_text(due: datetime, now: datetime) -> str:
    """When a card comes back, in words ("now", "in 3 days", "on 2026-12-24")."""
    delta = due - now
    if delta.total_seconds() <= 0:
        return "due now"
    if delta.days < 1:
        hours = max(1, round(delta.total_seconds() / 3600))
        return f"in {hours} hour{'s' if hours > 1 else ''}"
    if delta.days < 14:
        return f"in {delta.days} day{'s' if delta.days > 1 else ''}"
    return f"on {due.date().isoformat()}"
