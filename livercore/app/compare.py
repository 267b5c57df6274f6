"""The five phase-models side by side on one lesion, and what the paper reported for each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from livercore import paper
from livercore.app.figures import percent
from livercore.vocab import CATEGORIES, PHASE_MODELS, Category

if TYPE_CHECKING:
    from livercore.analysis import Analysis


def _b_note() -> str:
    low, high = paper.b_sensitivity_range()
    return (
        f"Category B (other malignant) was hard for every model in the paper (test sensitivity "
        f"{low:.2f}-{high:.2f}): treat a B prediction, or a missed B, with particular caution."
    )


def _unenhanced_note() -> str:
    return (
        "The unenhanced model was the weakest in the paper (test accuracy "
        f"{paper.median_test_accuracy('unenhanced'):.2f}): on its own, the unenhanced phase carries "
        "little of the pattern."
    )


def comparison_table(analysis: Analysis) -> pd.DataFrame:
    """One row per model: phases, P(A)..P(E) as text in %, the top category, and the paper's figures."""
    reference = paper.model_reference()
    rows = []
    for name, result in analysis.results.items():
        pm = PHASE_MODELS[name]
        top = result.predicted
        row: dict[str, object] = {"model": pm.label, "phases": " + ".join(p.short for p in pm.phases)}
        row |= {
            f"P({c.value})": percent(float(result.probabilities[i]) * 100)
            if c in result.categories
            else "not known"
            for i, c in enumerate(CATEGORIES)
        }
        row["top category"] = f"{top.value} {top.info.name}"
        row["like its training data"] = "no" if result.unlike_training else "yes"
        row |= reference.loc[name].to_dict()
        row["paper sensitivity for its top category"] = paper.sensitivity_text(name, top)
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Agreement:
    """Which models predict which category, and what that means in the paper's terms."""

    groups: dict[Category, list[str]]  # category -> model names predicting it, in model order
    sentences: list[str]

    @property
    def unanimous(self) -> bool:
        return len(self.groups) == 1


def agreement(analysis: Analysis) -> Agreement:
    """Group the models by their top category and explain disagreements with the paper's findings."""
    groups: dict[Category, list[str]] = {}
    for name, result in analysis.results.items():
        groups.setdefault(result.predicted, []).append(name)

    def names(models: list[str]) -> str:
        labels = [PHASE_MODELS[m].label for m in models]
        return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]

    if len(groups) == 1:
        ((category, models),) = groups.items()
        sentences = [f"All {len(models)} models agree: {category.value} {category.info.name}."]
    else:
        parts = [
            f"{names(m)} → {c.value} {c.info.name}"
            for c, m in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ]
        sentences = ["The models disagree: " + "; ".join(parts) + "."]
    predicted = {name: r.predicted for name, r in analysis.results.items()}
    reference = predicted.get("triphasic")
    for model, confusion in paper.CONFUSIONS.items():
        mine = predicted.get(model)
        if reference and mine and mine is not reference and {mine, reference} == {Category.A, Category.C}:
            sentences.append(confusion.sentence())
    if Category.B in groups:
        sentences.append(_b_note())
    if "unenhanced" in predicted and reference and predicted["unenhanced"] is not reference:
        sentences.append(_unenhanced_note())
    return Agreement(groups, sentences)
