"""The paper's published numbers, in one place: Yasaka K, Akai H, Abe O, Kiryu S. Radiology 2018.

Tables 2 and 3 and the AUCs are packaged as CSV files in ``DATA_DIR`` (transcribed from the
paper; ../shared/reference); the few figures the paper gives only in its text (the confusions
of the single-phase models, the Kruskal-Wallis P) are constants here. Everything that shows
the paper's figures reads them from this module. It imports neither torch nor scikit-learn, so
a page that shows the paper's numbers does not wait for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from livercore.vocab import PHASE_MODELS, Category

DATA_DIR = Path(__file__).parent / "data"
KRUSKAL_WALLIS_P = "< .001"  # across the five models' session accuracies (Results)


@dataclass(frozen=True)
class Confusion:
    """How a single-phase model of the paper confused classic HCC with a kind of category C."""

    model: str
    subtype: str  # the category-C lesions it confused with classic HCC
    a_as_c: int  # classic HCCs read as C ...
    n_a: int  # ... of this many
    c_as_a: int  # category-C lesions of `subtype` read as classic HCC ...
    n_c: int  # ... of this many
    lacking: str  # the phase that tells them apart
    why: str  # what that phase shows

    def sentence(self) -> str:
        return (
            f"In the paper the {self.model} model confused classic HCC with {self.subtype} category-C "
            f"lesions ({self.a_as_c} of {self.n_a} A read as C; {self.c_as_a} of {self.n_c} {self.subtype} "
            f"C read as A): telling them apart needs the {self.lacking} phase ({self.why})."
        )


# The paper's teaching points on the single-phase models (Results and Discussion; paper.md).
CONFUSIONS: dict[str, Confusion] = {
    "arterial": Confusion("arterial", "hypervascular", 9, 21, 8, 21, "delayed", "washout"),
    "delayed": Confusion("delayed", "hypovascular", 9, 21, 5, 14, "arterial", "vascularity"),
}


@lru_cache(maxsize=3)
def _table(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA_DIR / f"yasaka2018_{name}.csv")


def accuracy() -> pd.DataFrame:
    """Table 2 (a copy): model, split (train / test), median, low, high, steel_p_vs_triphasic."""
    return _table("accuracy").copy()


def auc() -> pd.DataFrame:
    """AUC of A-B vs C-E from the clinical score (a copy): model, median, low, high."""
    return _table("auc").copy()


def sensitivity() -> pd.DataFrame:
    """Table 3 (a copy): model, category (A..E, C_hypervascular, C_hypovascular), median,
    n_correct, n_total, low, high."""
    return _table("sensitivity").copy()


def spread_text(median: float, low: float, high: float) -> str:
    """Median (low-high) with two decimals, as the paper prints it: "0.84 (0.82-0.90)"."""
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


@lru_cache(maxsize=1)
def model_reference() -> pd.DataFrame:
    """Per model (index = model name): the paper's test and training accuracy and AUC as text."""
    acc = accuracy().set_index(["model", "split"])
    area = auc().set_index("model")
    rows = {}
    for name in PHASE_MODELS:
        test, train, a = acc.loc[(name, "test")], acc.loc[(name, "train")], area.loc[name]
        rows[name] = {
            "paper test accuracy": spread_text(test["median"], test["low"], test["high"]),
            "paper training accuracy": spread_text(train["median"], train["low"], train["high"]),
            "paper AUC (A-B vs C-E)": spread_text(a["median"], a["low"], a["high"]),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def sensitivity_text(model: str, category: Category | str) -> str:
    """The paper's test sensitivity of `model` for `category`, e.g. "0.71 [15/21]"; "—" if none."""
    s = sensitivity()
    row = s[(s.model == model) & (s.category == Category(category).value)]
    if row.empty:
        return "—"
    r = row.iloc[0]
    return f"{r['median']:.2f} [{int(r['n_correct'])}/{int(r['n_total'])}]"


def b_sensitivity_range() -> tuple[float, float]:
    """The lowest and highest median test sensitivity for category B over the five models."""
    b = sensitivity().query("category == 'B'")["median"]
    return float(b.min()), float(b.max())


def median_test_accuracy(model: str) -> float:
    """The paper's median test accuracy of a model."""
    row = accuracy().query("model == @model and split == 'test'")
    return float(row["median"].iloc[0])
