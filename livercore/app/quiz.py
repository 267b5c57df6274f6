"""The quiz: a teaching case, a category to pick, feedback, and a running score.

Pure logic, no Streamlit: the page keeps a :class:`QuizScore` and a seeded
``numpy.random.Generator`` in ``st.session_state`` and calls these functions. Categories the
resident misses come back more often: a case is drawn by first choosing a category with
weight ``1 + MISS_WEIGHT x (times that category was missed)``, then a case of that category
uniformly (so every category is equally likely at the start, however many cases it has).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd

from livercore.teaching.catalogue import TeachingCase
from livercore.teaching.features import FeatureMark
from livercore.vocab import CATEGORIES, PHASE_MODELS, SUBTYPE_LABELS, Category, Phase

MISS_WEIGHT = 2.0  # each miss of a category adds this much to its weight (the base weight is 1)
# What the resident is shown, named by the phase-model that sees exactly those phases.
PHASE_SETS: dict[str, str] = {
    "triphasic": "Triphasic: unenhanced, arterial, delayed",
    "art_del": "Arterial + delayed",
    "unenhanced": "Single phase: unenhanced",
    "arterial": "Single phase: arterial",
    "delayed": "Single phase: delayed",
}


def new_rng(seed: int | None = None) -> np.random.Generator:
    """The quiz's random generator (fresh entropy unless a seed is given, e.g. in tests)."""
    return np.random.default_rng(seed)


def shown_phases(phase_set: str) -> tuple[Phase, ...]:
    """The phases a question shows for a phase set (a PHASE_MODELS name)."""
    return PHASE_MODELS[phase_set].phases


def model_for(phase_set: str) -> str:
    """The phase-model that sees exactly the phases shown: the resident's fair comparison."""
    return PHASE_MODELS[phase_set].name


@dataclass(frozen=True)
class Answer:
    case_id: str
    truth: Category
    answer: Category
    phase_set: str

    @property
    def correct(self) -> bool:
        return self.truth is self.answer


@dataclass(frozen=True)
class QuizScore:
    """The session's answers, oldest first."""

    answers: tuple[Answer, ...] = field(default_factory=tuple)

    @property
    def asked(self) -> int:
        return len(self.answers)

    @property
    def correct(self) -> int:
        return sum(a.correct for a in self.answers)

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.asked if self.asked else 0.0

    def misses(self) -> dict[Category, int]:
        """Times each category (the right answer) was missed; every category present."""
        out = dict.fromkeys(CATEGORIES, 0)
        for a in self.answers:
            if not a.correct:
                out[a.truth] += 1
        return out

    def record(self, answer: Answer) -> QuizScore:
        return replace(self, answers=(*self.answers, answer))


def category_weights(
    score: QuizScore, categories: Collection[Category] = CATEGORIES
) -> dict[Category, float]:
    """Sampling weight of each category: 1 + MISS_WEIGHT x misses."""
    misses = score.misses()
    return {c: 1.0 + MISS_WEIGHT * misses[c] for c in CATEGORIES if c in categories}


def draw_case(
    entries: Sequence[TeachingCase],
    score: QuizScore,
    rng: np.random.Generator,
    *,
    categories: Collection[Category] | None = None,
    exclude: str | None = None,
) -> TeachingCase:
    """The next question: a category by category_weights (among `categories` that have cases),
    then one of its cases uniformly; never `exclude` (the last case) when another is available."""
    pool = [e for e in entries if categories is None or e.category in categories]
    if not pool:
        raise ValueError("no teaching case matches the chosen categories")
    if exclude is not None and len(pool) > 1:
        pool = [e for e in pool if e.case_id != exclude]
    present = {e.category for e in pool}
    weights = category_weights(score, present)
    cats = list(weights)
    p = np.array([weights[c] for c in cats])
    category = cats[int(rng.choice(len(cats), p=p / p.sum()))]
    within = [e for e in pool if e.category is category]
    return within[int(rng.integers(len(within)))]


@dataclass(frozen=True)
class Feedback:
    correct: bool
    headline: str  # "Correct: D haemangioma." / "Not quite: ..."
    truth: Category
    answer: Category
    subtype: str  # the case's subtype in words
    criteria: str  # what defines the right category (Category.info.description)
    chosen_criteria: str  # what would have defined the chosen one (empty when correct)
    findings: str  # this case's findings
    due: datetime | None = None  # when the learner's card of this case comes back (None: not kept)
    marks: tuple[FeatureMark, ...] = ()  # the findings offered, marked or not, against the truth
    steps: dict[str, str] = field(default_factory=dict)  # stepwise: phase value -> category value


def grade(
    entry: TeachingCase,
    answer: Category | str,
    *,
    due: datetime | None = None,
    marks: Sequence[FeatureMark] = (),
    steps: dict[str, str] | None = None,
) -> Feedback:
    """Feedback on one answer: the right category, its imaging criteria, the case's findings;
    with the features graded (`marks`), the stepwise answers and the card's next due time."""
    answer = Category(answer)
    truth = entry.category
    correct = answer is truth
    subtype = SUBTYPE_LABELS.get(entry.subtype, entry.subtype)
    size = f"{entry.diameter_mm:.0f} mm"
    headline = (
        f"Correct: {truth.value} {truth.info.name} ({subtype}, {size})."
        if correct
        else f"Not quite: you chose {answer.value} {answer.info.name}; this is {truth.value} "
        f"{truth.info.name} ({subtype}, {size})."
    )
    return Feedback(
        correct=correct,
        headline=headline,
        truth=truth,
        answer=answer,
        subtype=subtype,
        criteria=truth.info.description,
        chosen_criteria="" if correct else answer.info.description,
        findings=entry.findings,
        due=due,
        marks=tuple(marks),
        steps=dict(steps or {}),
    )


def marks_table(marks: Sequence[FeatureMark]) -> pd.DataFrame:
    """The reveal's table of findings: phase, finding, you, the case, verdict."""
    return pd.DataFrame(
        {
            "phase": [m.feature.phase.value for m in marks],
            "finding": [m.feature.label for m in marks],
            "you": ["marked" if m.marked else "—" for m in marks],
            "this case": ["present" if m.present else "absent" for m in marks],
            "": [("right: " if m.right else "wrong: ") + m.verdict for m in marks],
        }
    ).set_index("phase")


def steps_sentence(steps: dict[str, str], truth: Category) -> str:
    """What the learner said after each phase, e.g. "after unenhanced C, after arterial A
    (right), after delayed A (right)"; where the right answer first came, in the paper's terms."""
    parts = [
        f"after {phase} {Category(value).value}" + (" (right)" if Category(value) is truth else "")
        for phase, value in steps.items()
    ]
    first = next((phase for phase, value in steps.items() if Category(value) is truth), None)
    tail = (
        f". You had it from the {first} phase on."
        if first and all(Category(v) is truth for p, v in list(steps.items())[list(steps).index(first) :])
        else "."
    )
    return ", ".join(parts) + tail


@dataclass(frozen=True)
class CategoryRecord:
    category: Category
    asked: int
    missed: int


def most_missed(score: QuizScore, n: int = 3) -> list[CategoryRecord]:
    """The categories missed at least once, most missed first (then by miss rate, then A-E)."""
    records = []
    for c in CATEGORIES:
        asked = sum(a.truth is c for a in score.answers)
        missed = sum(a.truth is c and not a.correct for a in score.answers)
        if missed:
            records.append(CategoryRecord(c, asked, missed))
    records.sort(key=lambda r: (-r.missed, -r.missed / r.asked, CATEGORIES.index(r.category)))
    return records[:n]


def model_sentence(phase_set: str, probabilities: np.ndarray, truth: Category) -> str:
    """What the phase-model matching the shown phases said, from its probabilities (5,) in A..E
    order, e.g. "The arterial model, which sees the same phases as you, said A classic HCC
    (81 %): wrong." """
    top = CATEGORIES[int(np.argmax(probabilities))]
    p = float(probabilities[top.output_index]) * 100
    label = PHASE_MODELS[model_for(phase_set)].label.lower()
    verdict = "right" if top is truth else "wrong"
    return f"The {label} model, which sees the same phases as you, said {top.value} {top.info.name} ({p:.0f} %): {verdict}."
