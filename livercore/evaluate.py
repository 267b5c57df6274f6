"""Evaluation of the phase-models' test predictions, the way the paper reports them.

Input everywhere is a predictions table, one row per (model, session, case), with the columns of
``PREDICTION_COLUMNS``: ``category`` is the reference standard and ``predicted`` the network's
highest-scoring category ("A".."E"), ``subtype`` a string of ``vocab.SUBTYPES`` and ``p_A``..``p_E``
the network's category probabilities (summing to 1).

The paper's figures, for side-by-side display, come from ``livercore.paper``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics

from livercore import paper
from livercore.errors import InputError
from livercore.stats import delong_auc_ci, kruskal_wallis, steel_many_to_one
from livercore.vocab import CATEGORIES, MALIGNANT, MODEL_NAMES, Category, clinical_score

LABELS: tuple[str, ...] = tuple(c.value for c in CATEGORIES)
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{label}" for label in LABELS)
PREDICTION_COLUMNS: tuple[str, ...] = (
    "model",
    "session",
    "case_id",
    "category",
    "subtype",
    "predicted",
    *PROBABILITY_COLUMNS,
)
# Table 3 reports category C's hyper- and hypovascular lesions as rows of their own.
C_SUBTYPE_ROWS: dict[str, str] = {
    "C_hypervascular": "hypervascular",
    "C_hypovascular": "hypovascular",
}
CONTROL_MODEL = "triphasic"  # the paper's control in the Steel test


# --- one table of predictions ---------------------------------------------------------------


def _labels(df: pd.DataFrame, column: str) -> np.ndarray:
    """Column ``column`` as an array (n,) of "A".."E" strings (accepts Category members)."""
    if column not in df.columns:
        raise InputError(f"The predictions table has no '{column}' column.")
    try:
        return np.array([Category(v).value for v in df[column]], dtype=object)
    except ValueError as err:
        raise InputError(f"Column '{column}' holds a value that is not a category A-E: {err}") from err


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def accuracy_score(df: pd.DataFrame) -> float:
    """Fraction of cases whose predicted category equals the reference category."""
    return float(metrics.accuracy_score(_labels(df, "category"), _labels(df, "predicted")))


def category_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Per-category test metrics (paper Table 3).

    Returns
    -------
    DataFrame indexed by "A".."E", "C_hypervascular", "C_hypovascular" with columns
    ``sensitivity``, ``specificity``, ``accuracy`` (fractions; NaN where undefined) and
    ``n_correct``, ``n_total`` (the sensitivity's numerator and denominator).
    Rows A-E are one-vs-rest; the C-subtype rows give the fraction of those lesions predicted C,
    with no specificity or accuracy.
    """
    y, y_pred = _labels(df, "category"), _labels(df, "predicted")
    n = len(y)
    # (5, 2, 2), each [[tn, fp], [fn, tp]] for one category against the rest
    per_category = metrics.multilabel_confusion_matrix(y, y_pred, labels=list(LABELS))
    rows: dict[str, dict[str, float]] = {}
    for label, ((tn, fp), (fn, tp)) in zip(LABELS, per_category, strict=True):
        rows[label] = {
            "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "accuracy": _ratio(tp + tn, n),
            "n_correct": int(tp),
            "n_total": int(tp + fn),
        }
    if "subtype" not in df.columns:
        raise InputError("The predictions table has no 'subtype' column.")
    subtype = df["subtype"].astype(str).to_numpy()
    for row, name in C_SUBTYPE_ROWS.items():
        lesions = (y == Category.C.value) & (subtype == name)
        n_correct = int(np.sum(y_pred[lesions] == Category.C.value))
        n_total = int(lesions.sum())
        rows[row] = {
            "sensitivity": _ratio(n_correct, n_total),
            "specificity": float("nan"),
            "accuracy": float("nan"),
            "n_correct": n_correct,
            "n_total": n_total,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.astype({"n_correct": int, "n_total": int})


def confusion(df: pd.DataFrame, *, normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix (5, 5): reference category in rows, predicted in columns, A..E.

    Counts, or with ``normalize=True`` fractions of each reference row (a row without cases is 0).
    """
    matrix = metrics.confusion_matrix(
        _labels(df, "category"),
        _labels(df, "predicted"),
        labels=list(LABELS),
        normalize="true" if normalize else None,
    )
    return pd.DataFrame(
        matrix, index=pd.Index(LABELS, name="true"), columns=pd.Index(LABELS, name="predicted")
    )


@dataclass(frozen=True)
class MalignancyRoc:
    """ROC curve and AUC of A-B (malignant, positive) versus C-E."""

    fpr: np.ndarray  # (t,) false-positive rate at each threshold, increasing
    tpr: np.ndarray  # (t,) true-positive rate (sensitivity for malignancy)
    thresholds: np.ndarray  # (t,) score thresholds, decreasing; the first is +inf (sklearn)
    auc: float
    ci_low: float  # DeLong 95 % confidence interval (or 1 - alpha), clipped to [0, 1]
    ci_high: float
    variance: float  # DeLong variance of the AUC


def roc_malignant(
    df: pd.DataFrame,
    *,
    score: Literal["clinical", "probability"] = "clinical",
    alpha: float = 0.05,
) -> MalignancyRoc:
    """ROC analysis of malignant (A, B) versus the rest (C, D, E).

    ``score="clinical"`` rates each case by the clinical score of its predicted category
    (A/B 4, C 3, D 2, E 1: the paper's ordinal rating); ``"probability"`` by p_A + p_B.
    """
    malignant = np.isin(_labels(df, "category"), [c.value for c in MALIGNANT])
    if score == "clinical":
        rating = np.array([clinical_score(c) for c in _labels(df, "predicted")], dtype=float)
    elif score == "probability":
        rating = df["p_A"].to_numpy(float) + df["p_B"].to_numpy(float)
    else:
        raise ValueError(f"score must be 'clinical' or 'probability', got {score!r}")
    fpr, tpr, thresholds = metrics.roc_curve(malignant, rating)
    auc, low, high, variance = delong_auc_ci(malignant, rating, alpha=alpha)
    return MalignancyRoc(fpr, tpr, thresholds, auc, low, high, variance)


# --- JSON-ready summaries -------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a plain Python one; NaN becomes None (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _auc_dict(df: pd.DataFrame, score: str) -> dict[str, float]:
    """AUC with its DeLong CI; NaN when the cohort has too few malignant or benign cases
    (a small site cohort must not stop the whole study at its metrics)."""
    try:
        roc = roc_malignant(df, score=score)  # type: ignore[arg-type]
    except ValueError:
        return {"auc": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    return {"auc": roc.auc, "ci_low": roc.ci_low, "ci_high": roc.ci_high}


def session_metrics(df: pd.DataFrame) -> dict[str, Any]:
    """All metrics of one training session of one model on the test set, JSON-serialisable.

    Keys: model, session, n_cases, accuracy, auc_clinical and auc_probability (each auc, ci_low,
    ci_high), categories (``category_metrics`` rows as dicts) and confusion (labels, counts (5, 5)).
    """
    runs = df[["model", "session"]].drop_duplicates()
    if len(runs) != 1:
        raise ValueError(f"session_metrics takes one model and session, got {len(runs)} pairs")
    model, session = runs.iloc[0]
    table = category_metrics(df)
    return {
        "model": str(model),
        "session": _plain(session),
        "n_cases": len(df),
        "accuracy": accuracy_score(df),
        "auc_clinical": _auc_dict(df, "clinical"),
        "auc_probability": _auc_dict(df, "probability"),
        "categories": {
            row: {col: _plain(v) for col, v in values.items()}
            for row, values in table.to_dict(orient="index").items()
        },
        "confusion": {"labels": list(LABELS), "counts": confusion(df).to_numpy().tolist()},
    }


def _spread(values: list[float]) -> dict[str, Any]:
    """Median and range over sessions, as the paper's "median (range)"."""
    return {
        "median": _plain(float(np.median(values))),
        "low": _plain(float(np.min(values))),
        "high": _plain(float(np.max(values))),
    }


def _sensitivity_spread(runs: list[dict[str, Any]], row: str) -> dict[str, Any]:
    """Sensitivity "median [n/N] (range)": the counts are those of the median session (for an
    even number of sessions, the lower of the two middle ones)."""
    cells = [r["categories"][row] for r in runs]
    values = [np.nan if c["sensitivity"] is None else c["sensitivity"] for c in cells]
    middle = cells[int(np.argsort(values, kind="stable")[(len(values) - 1) // 2])]
    return {**_spread(values), "n_correct": middle["n_correct"], "n_total": middle["n_total"]}


def study_summary(df: pd.DataFrame) -> dict[str, Any]:
    """The paper's results for all models and sessions, JSON-serialisable (plain Python types).

    Returns
    -------
    dict with keys
        control: the Steel control model ("triphasic");
        kruskal_wallis: {"h", "p"} across the models' session accuracies (None for < 2 models);
        models: per model name, in ``vocab.MODEL_NAMES`` order: n_sessions; accuracy
        {median, low, high, sessions}; auc_clinical and auc_probability {median, low, high};
        sensitivity per ``category_metrics`` row {median, low, high, n_correct, n_total};
        steel {"statistic", "p"} against the control, two-sided (None for the control itself,
        or when the control or two sessions per model are missing).
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"The predictions table lacks the columns {', '.join(missing)}.")
    by_model = {str(m): g for m, g in df.groupby("model")}
    order = [m for m in MODEL_NAMES if m in by_model] + sorted(set(by_model) - set(MODEL_NAMES))
    runs = {m: [session_metrics(g) for _, g in by_model[m].groupby("session")] for m in order}
    accuracies = {model: [r["accuracy"] for r in rs] for model, rs in runs.items()}

    kruskal = None
    if len(order) >= 2:
        h, p = kruskal_wallis(*accuracies.values())
        kruskal = {"h": _plain(h), "p": _plain(p)}
    others = [m for m in order if m != CONTROL_MODEL]
    steel: dict[str, dict[str, Any] | None] = dict.fromkeys(order)
    if CONTROL_MODEL in runs and others and min(len(a) for a in accuracies.values()) >= 2:
        tests = steel_many_to_one(accuracies[CONTROL_MODEL], *(accuracies[m] for m in others))
        steel.update({m: {"statistic": z, "p": p} for m, (z, p) in zip(others, tests, strict=True)})

    models = {}
    for model, rs in runs.items():
        models[model] = {
            "n_sessions": len(rs),
            "accuracy": {**_spread(accuracies[model]), "sessions": accuracies[model]},
            "auc_clinical": _spread([r["auc_clinical"]["auc"] for r in rs]),
            "auc_probability": _spread([r["auc_probability"]["auc"] for r in rs]),
            "sensitivity": {row: _sensitivity_spread(rs, row) for row in rs[0]["categories"]},
            "steel": steel[model],
        }
    return {"control": CONTROL_MODEL, "kruskal_wallis": kruskal, "models": models}


# --- the paper's figures beside ours --------------------------------------------------------


def _side_by_side(paper: pd.DataFrame, ours: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Left-join ``ours`` onto the paper's rows; columns paper_x, ours_x next to each other."""
    values = [c for c in paper.columns if c not in keys]
    table = paper.rename(columns={c: f"paper_{c}" for c in values}).merge(
        ours.rename(columns={c: f"ours_{c}" for c in values}), on=keys, how="left"
    )
    pairs = [f"{who}_{c}" for c in values for who in ("paper", "ours")]
    return table.reindex(columns=keys + pairs)


def compare_with_paper(
    summary: dict[str, Any], reference_dir: str | Path | None = None
) -> dict[str, pd.DataFrame]:
    """Our ``study_summary`` beside the paper's published figures (``livercore.paper``, or the
    yasaka2018_accuracy.csv, yasaka2018_auc.csv and yasaka2018_sensitivity.csv of
    ``reference_dir``).

    Returns DataFrames keyed "accuracy" (test split, with the Steel p-values), "auc"
    (clinical-score AUC) and "sensitivity" (per model and Table 3 row), one row per paper row,
    columns paper_x and ours_x side by side (ours NaN where we have no such model).
    """
    ref = Path(reference_dir) if reference_dir is not None else None

    def table(name: str) -> pd.DataFrame:
        if ref is None:
            return {"accuracy": paper.accuracy, "auc": paper.auc, "sensitivity": paper.sensitivity}[name]()
        return pd.read_csv(ref / f"yasaka2018_{name}.csv")

    models = summary["models"]
    accuracy = table("accuracy")
    accuracy = accuracy[accuracy["split"] == "test"].drop(columns="split")
    ours_accuracy = pd.DataFrame(
        [
            {
                "model": m,
                "median": s["accuracy"]["median"],
                "low": s["accuracy"]["low"],
                "high": s["accuracy"]["high"],
                "steel_p_vs_triphasic": s["steel"]["p"] if s["steel"] else None,
            }
            for m, s in models.items()
        ],
        columns=["model", "median", "low", "high", "steel_p_vs_triphasic"],
    )
    ours_auc = pd.DataFrame(
        [{"model": m, **s["auc_clinical"]} for m, s in models.items()],
        columns=["model", "median", "low", "high"],
    )
    ours_sensitivity = pd.DataFrame(
        [
            {"model": m, "category": row, **v}
            for m, s in models.items()
            for row, v in s["sensitivity"].items()
        ],
        columns=["model", "category", "median", "n_correct", "n_total", "low", "high"],
    )
    return {
        "accuracy": _side_by_side(accuracy.reset_index(drop=True), ours_accuracy, ["model"]),
        "auc": _side_by_side(table("auc"), ours_auc, ["model"]),
        "sensitivity": _side_by_side(table("sensitivity"), ours_sensitivity, ["model", "category"]),
    }
