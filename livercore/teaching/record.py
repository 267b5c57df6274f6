"""The teaching record in the store (livercore.store): learners, their attempts, their review
cards. One attempt and its card's review are one transaction, so a crash or two app processes
writing at once never leave an answer without its card or count one twice (`client_key`).

Only teaching case ids, feature keys and the learner's own note are stored: nothing of a
patient. `attempts_frame` gives a learner's history as a table (their CSV export);
`group_frame` gives everyone's without the notes (the educator view).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from livercore import store
from livercore.identity import Identity
from livercore.store.schema import Attempt, Learner, ReviewCard
from livercore.teaching import schedule
from livercore.vocab import Category

ATTEMPT_COLUMNS = (
    "answered_at",
    "case_id",
    "mode",
    "phase_set",
    "answer",
    "truth",
    "correct",
    "confidence",
    "features_marked",
    "features_truth",
    "features_asked",
    "steps",
    "seconds",
    "note",
)
GROUP_COLUMNS = (*(c for c in ATTEMPT_COLUMNS if c != "note"), "learner")


@dataclass(frozen=True)
class AttemptInput:
    """One answer, as the quiz page gives it."""

    case_id: str
    mode: str  # "features" or "stepwise"
    phase_set: str
    answer: Category
    truth: Category
    confidence: int  # 1 unsure, 2 fairly sure, 3 sure
    features_marked: Collection[str] = ()
    features_truth: Collection[str] = ()
    features_asked: Collection[str] = ()
    steps: Mapping[str, str] = field(default_factory=dict)  # phase value -> category value
    note: str = ""
    seconds: float | None = None
    client_key: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def correct(self) -> bool:
        return self.answer is self.truth

    @property
    def features_right(self) -> int:
        asked, marked, truth = set(self.features_asked), set(self.features_marked), set(self.features_truth)
        return sum((k in marked) == (k in truth) for k in asked)


@dataclass(frozen=True)
class Recorded:
    """What one answer did: its card's next due time and rating, and whether it was new."""

    due: datetime
    rating: str
    stored: bool  # False when this client_key was already stored (a rerun): nothing added


def learner_id(engine: Engine, who: Identity) -> int:
    """The learner's row id, created on their first visit; their name and role kept current."""
    with store.session(engine) as s:
        row = s.scalar(select(Learner).where(Learner.subject == who.subject))
        if row is not None:
            if (row.display_name, row.role) != (who.display_name, who.role):
                row.display_name, row.role = who.display_name, who.role
            return row.id
    try:
        with store.session(engine) as s:
            row = Learner(
                subject=who.subject, display_name=who.display_name, source=who.source, role=who.role
            )
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:  # another process created them first
        with store.session(engine) as s:
            found = s.scalar(select(Learner.id).where(Learner.subject == who.subject))
            assert found is not None
            return found


def _join(values: Collection[str]) -> str:
    return ",".join(sorted(values))


def record(engine: Engine, learner: int, attempt: AttemptInput, *, when: datetime | None = None) -> Recorded:
    """Store one attempt and review the learner's card of that case, in one transaction."""
    when = when or datetime.now(UTC)
    grade = schedule.rating(
        attempt.correct, attempt.confidence, attempt.features_right, len(attempt.features_asked)
    )
    try:
        with store.session(engine) as s:
            s.add(
                Attempt(
                    client_key=attempt.client_key,
                    learner_id=learner,
                    case_id=attempt.case_id,
                    mode=attempt.mode,
                    phase_set=attempt.phase_set,
                    answer=attempt.answer.value,
                    truth=attempt.truth.value,
                    correct=attempt.correct,
                    confidence=int(attempt.confidence),
                    features_marked=_join(attempt.features_marked),
                    features_truth=_join(attempt.features_truth),
                    features_asked=_join(attempt.features_asked),
                    steps=",".join(f"{k}:{v}" for k, v in attempt.steps.items()),
                    note=attempt.note.strip()[:2000],
                    seconds=attempt.seconds,
                    answered_at=when,
                )
            )
            s.flush()  # the client key's uniqueness is checked here, before the card is touched
            query = select(ReviewCard).where(
                ReviewCard.learner_id == learner, ReviewCard.case_id == attempt.case_id
            )
            if engine.dialect.name == "postgresql":
                query = query.with_for_update()
            card_row = s.scalar(query)
            card = schedule.review(card_row.fsrs_card if card_row else None, grade, when)
            if card_row is None:
                card_row = ReviewCard(learner_id=learner, case_id=attempt.case_id, reviews=0, lapses=0)
                s.add(card_row)
            card_row.fsrs_card = card.to_json()
            card_row.due = card.due
            card_row.reviews = (card_row.reviews or 0) + 1
            card_row.lapses = (card_row.lapses or 0) + (0 if attempt.correct else 1)
            due = card.due
    except IntegrityError:
        with store.session(engine) as s:
            existing = s.scalar(select(Attempt.case_id).where(Attempt.client_key == attempt.client_key))
            if existing is None:  # two first answers to one new card at once: the other won; retry
                return record(engine, learner, attempt, when=when)
            due_at = s.scalar(
                select(ReviewCard.due).where(ReviewCard.learner_id == learner, ReviewCard.case_id == existing)
            )
        return Recorded(_utc(due_at) if due_at else when, grade.name, stored=False)
    return Recorded(_utc(due), grade.name, stored=True)


def _utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def attempts_frame(engine: Engine, learner: int) -> pd.DataFrame:
    """A learner's attempts, oldest first (ATTEMPT_COLUMNS; their own CSV export)."""
    with store.session(engine) as s:
        rows = s.execute(
            select(*(getattr(Attempt, c) for c in ATTEMPT_COLUMNS))
            .where(Attempt.learner_id == learner)
            .order_by(Attempt.answered_at, Attempt.id)
        ).all()
    frame = pd.DataFrame(rows, columns=list(ATTEMPT_COLUMNS))
    if not frame.empty:
        frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True)
    return frame


def group_frame(engine: Engine) -> pd.DataFrame:
    """Every learner's attempts without their notes (GROUP_COLUMNS), `learner` their display
    name: the educator view."""
    columns = [getattr(Attempt, c) for c in GROUP_COLUMNS if c != "learner"]
    with store.session(engine) as s:
        rows = s.execute(
            select(*columns, Learner.display_name).join(Learner).order_by(Attempt.answered_at, Attempt.id)
        ).all()
    frame = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    if not frame.empty:
        frame["answered_at"] = pd.to_datetime(frame["answered_at"], utc=True)
    return frame


def cards_frame(engine: Engine, learner: int) -> pd.DataFrame:
    """A learner's review cards: case_id, due (UTC), reviews, lapses; soonest due first."""
    with store.session(engine) as s:
        rows = s.execute(
            select(ReviewCard.case_id, ReviewCard.due, ReviewCard.reviews, ReviewCard.lapses)
            .where(ReviewCard.learner_id == learner)
            .order_by(ReviewCard.due)
        ).all()
    frame = pd.DataFrame(rows, columns=["case_id", "due", "reviews", "lapses"])
    if not frame.empty:
        frame["due"] = pd.to_datetime(frame["due"], utc=True)
    return frame


def history(engine: Engine, learner: int) -> schedule.History:
    """What the queue needs: every card's due time, and the learner's misses by category and feature."""
    cards = cards_frame(engine, learner)
    attempts = attempts_frame(engine, learner)
    category_misses = (
        Counter(attempts.loc[~attempts.correct.astype(bool), "truth"]) if len(attempts) else Counter()
    )
    feature_misses: Counter[str] = Counter()
    for row in attempts.itertuples():
        asked = set(filter(None, row.features_asked.split(",")))
        marked = set(filter(None, row.features_marked.split(",")))
        truth = set(filter(None, row.features_truth.split(",")))
        feature_misses.update(k for k in asked if (k in marked) != (k in truth))
    due = {r.case_id: r.due.to_pydatetime() for r in cards.itertuples()}
    return schedule.History(due, dict(category_misses), dict(feature_misses))


def count_attempts(engine: Engine, learner: int | None = None) -> int:
    with store.session(engine) as s:
        query = select(func.count(Attempt.id))
        if learner is not None:
            query = query.where(Attempt.learner_id == learner)
        return int(s.scalar(query) or 0)
