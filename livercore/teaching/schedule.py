"""Spaced repetition of the teaching cases with FSRS (the `fsrs` package): each answer is a
review of that case's card for that learner, and the next question comes from the cases due
today, mixed with new ones.

- **Rating**: wrong is Again; right and unsure Hard, fairly sure Good, sure Easy. A right
  category with half or more of the features wrong is at most Hard: the pattern is not yet read.
- **The queue** (`next_case`): a due card (most overdue first) with probability DUE_SHARE while
  any is due, else a case the learner has not seen, drawn with weight 1 + MISS_WEIGHT x the
  learner's misses of its category + FEATURE_WEIGHT x their misses of its features; when nothing
  is due and nothing is new, the card due soonest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from fsrs import Card, Rating, Scheduler

from livercore.teaching.catalogue import TeachingCase

DUE_SHARE = 0.7  # a due card is asked this often while any is due; new cases otherwise
MISS_WEIGHT = 2.0
FEATURE_WEIGHT = 1.0
SCHEDULER = Scheduler(enable_fuzzing=False)  # FSRS defaults (90 % desired retention), no fuzz: reproducible


def rating(correct: bool, confidence: int, features_right: int = 0, features_asked: int = 0) -> Rating:
    """The FSRS rating of one answer (confidence 1 unsure, 2 fairly sure, 3 sure)."""
    if not correct:
        return Rating.Again
    by_confidence = {1: Rating.Hard, 2: Rating.Good, 3: Rating.Easy}[int(confidence)]
    if features_asked and features_right * 2 <= features_asked:
        return min(by_confidence, Rating.Hard, key=int)
    return by_confidence


def review(card_json: str | None, grade: Rating, when: datetime) -> Card:
    """The card after one review at `when` (a new card when `card_json` is None)."""
    card = Card.from_json(card_json) if card_json else Card(due=when)
    updated, _ = SCHEDULER.review_card(card, grade, review_datetime=when)
    return updated


@dataclass(frozen=True)
class History:
    """What the queue needs of a learner: when each card is due, and what they miss."""

    due: Mapping[str, datetime]  # case_id -> due (UTC) of every card they have
    category_misses: Mapping[str, int]  # category value -> wrong answers
    feature_misses: Mapping[str, int]  # feature key -> features missed or wrongly marked


def due_now(history: History, now: datetime) -> list[str]:
    """The cases due at `now`, most overdue first."""
    return [c for c, d in sorted(history.due.items(), key=lambda kv: kv[1]) if d <= now]


def next_case(
    entries: Sequence[TeachingCase],
    history: History,
    rng: np.random.Generator,
    *,
    now: datetime | None = None,
    case_features: Mapping[str, frozenset[str]] | None = None,
    exclude: str | None = None,
) -> tuple[TeachingCase, str]:
    """The next question among `entries` and why it was chosen ("due" or "new", or "early":
    nothing due or new, the card due soonest); never `exclude` (the case just answered) when
    another is available."""
    now = now or datetime.now(UTC)
    by_id = {e.case_id: e for e in entries}
    pool = [e for e in entries if e.case_id != exclude] or list(entries)
    ids = {e.case_id for e in pool}
    due = [c for c in due_now(history, now) if c in ids]
    fresh = [e for e in pool if e.case_id not in history.due]
    if due and (not fresh or rng.random() < DUE_SHARE):
        return by_id[due[0]], "due"
    if fresh:
        features = case_features or {}
        weights = np.array(
            [
                1.0
                + MISS_WEIGHT * history.category_misses.get(e.category.value, 0)
                + FEATURE_WEIGHT * sum(history.feature_misses.get(k, 0) for k in features.get(e.case_id, ()))
                for e in fresh
            ]
        )
        return fresh[int(rng.choice(len(fresh), p=weights / weights.sum()))], "new"
    soonest = min((c for c in history.due if c in ids), key=lambda c: history.due[c])
    return by_id[soonest], "early"
