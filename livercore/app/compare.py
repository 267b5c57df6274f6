"""The five phase-models side by side on one lesion, and what the paper reported for each."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

import livercore
from livercore.app.figures import percent
from livercore.vocab import CATEGORIES, PHASE_MODELS, Category

if TYPE_CHECKING:
    from livercore.analysis import Analysis

# The paper's published tables: livercore.evaluate.REFERENCE_DIR, found without importing
# livercore.evaluate (scikit-learn: two seconds the home page need not wait).
REFERENCE_DIR = Path(livercore.__file__).parent / "data"
# The paper's teaching points (Yasaka et al. 2018, Results and Discussion), keyed by the pair of
# categories a single-phase model confuses and the phase it lacks.
_CONFUSIONS = {
    ("arterial", frozenset({Category.A, Category.C})): (
        "In the paper the arterial model confused classic HCC with hypervascular category-C "
        "lesions (9 of 21 A read as C; 8 of 21 hypervascular C read as A): telling them apart "
        "needs the delayed phase (washout)."
    ),
    ("delayed", frozenset({Category.A, Category.C})): (
        "In the paper the delayed model confused classic HCC with hypovascular category-C "
        "lesions (9 of 21 A read as C; 5 of 14 hypovascular C read as A): telling them apart "
        "needs the arterial phase (vascularity)."
    ),
}
_B_NOTE = (
    "Category B (other malignant) was hard for every model in the paper (test sensitivity "
    "0.11-0.33): treat a B prediction, or a missed B, with particular caution."
)
_UNENHANCED_NOTE = (
    "The unenhanced model was the weakest in the paper (test accuracy 0.48): on its own, the "
    "unenhanced phase carries little of the pattern."
)


def _range(median: float, low: float, high: float) -> str:
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


@lru_cache(maxsize=1)
def paper_reference() -> pd.DataFrame:
    """Per model (index = model name): the paper's test and training accuracy and AUC, median (range)."""
    accuracy = pd.read_csv(REFERENCE_DIR / "yasaka2018_accuracy.csv")
    auc = pd.read_csv(REFERENCE_DIR / "yasaka2018_auc.csv").set_index("model")
    rows = {}
    for name in PHASE_MODELS:
        test = accuracy[(accuracy.model == name) & (accuracy.split == "test")].iloc[0]
        train = accuracy[(accuracy.model == name) & (accuracy.split == "train")].iloc[0]
        a = auc.loc[name]
        rows[name] = {
            "paper test accuracy": _range(test["median"], test["low"], test["high"]),
            "paper training accuracy": _range(train["median"], train["low"], train["high"]),
            "paper AUC (A-B vs C-E)": _range(a["median"], a["low"], a["high"]),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


@lru_cache(maxsize=1)
def _sensitivity() -> pd.DataFrame:
    return pd.read_csv(REFERENCE_DIR / "yasaka2018_sensitivity.csv")


def paper_sensitivity(model: str, category: Category) -> str:
    """The paper's test sensitivity of `model` for `category`, e.g. "0.71 [15/21]"."""
    s = _sensitivity()
    row = s[(s.model == model) & (s.category == category.value)]
    if row.empty:
        return "—"
    r = row.iloc[0]
    return f"{r['median']:.2f} [{int(r['n_correct'])}/{int(r['n_total'])}]"


def comparison_table(analysis: Analysis) -> pd.DataFrame:
    """One row per model: phases, P(A)..P(E) as text in %, the top category, and the paper's figures."""
    reference = paper_reference()
    rows = []
    for name, result in analysis.results.items():
        pm = PHASE_MODELS[name]
        top = result.predicted
        row: dict[str, object] = {"model": pm.label, "phases": " + ".join(p.short for p in pm.phases)}
        row |= {
            f"P({c.value})": percent(float(result.probabilities[i]) * 100) for i, c in enumerate(CATEGORIES)
        }
        row["top category"] = f"{top.value} {top.info.name}"
        row |= reference.loc[name].to_dict()
        row["paper sensitivity for its top category"] = paper_sensitivity(name, top)
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
    for (model, pair), note in _CONFUSIONS.items():
        mine = predicted.get(model)
        if reference and mine and mine is not reference and {mine, reference} == pair:
            sentences.append(note)
    if Category.B in groups:
        sentences.append(_B_NOTE)
    if "unenhanced" in predicted and reference and predicted["unenhanced"] is not reference:
        sentences.append(_UNENHANCED_NOTE)
    return Agreement(groups, sentences)
