"""Tests for livercore.evaluate on a ten-case table whose metrics are computed by hand."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from livercore import paper
from livercore.errors import InputError
from livercore.evaluate import (
    accuracy_score,
    category_metrics,
    compare_with_paper,
    confusion,
    roc_malignant,
    session_metrics,
    study_summary,
)
from livercore.stats import delong_auc_ci, steel_many_to_one

# case, category, subtype, predicted, p_A..p_E. Correct: cases 1, 3, 5, 7, 8, 10 (6 of 10).
# Malignant probability p_A + p_B: positives (0.9, 0.4, 0.8, 0.7),
# negatives (0.1, 0.6, 0.2, 0.05, 0.3, 0.0).
CASES = [
    (1, "A", "imaging", "A", (0.70, 0.20, 0.05, 0.03, 0.02)),
    (2, "A", "histology", "C", (0.30, 0.10, 0.50, 0.05, 0.05)),
    (3, "B", "icc", "B", (0.20, 0.60, 0.10, 0.05, 0.05)),
    (4, "B", "colorectal_metastasis", "A", (0.50, 0.20, 0.20, 0.05, 0.05)),
    (5, "C", "hypervascular", "C", (0.05, 0.05, 0.80, 0.05, 0.05)),
    (6, "C", "hypervascular", "A", (0.50, 0.10, 0.30, 0.05, 0.05)),
    (7, "C", "hypovascular", "C", (0.10, 0.10, 0.70, 0.05, 0.05)),
    (8, "D", "typical", "D", (0.03, 0.02, 0.05, 0.80, 0.10)),
    (9, "D", "typical", "C", (0.20, 0.10, 0.40, 0.30, 0.00)),
    (10, "E", "simple_cyst", "E", (0.00, 0.00, 0.00, 0.10, 0.90)),
]


def _table(model: str = "triphasic", session: int = 1, changes: dict | None = None) -> pd.DataFrame:
    """The ten cases as one session's predictions, with ``changes`` {case_id: predicted}."""
    rows = []
    for case_id, category, subtype, predicted, p in CASES:
        predicted = (changes or {}).get(case_id, predicted)
        rows.append(
            {
                "model": model,
                "session": session,
                "case_id": case_id,
                "category": category,
                "subtype": subtype,
                "predicted": predicted,
                **{f"p_{c}": v for c, v in zip("ABCDE", p, strict=True)},
            }
        )
    return pd.DataFrame(rows)


# --- one session ----------------------------------------------------------------------------


def test_accuracy_score_is_fraction_predicted_correctly():
    assert accuracy_score(_table()) == pytest.approx(0.6)


def test_category_metrics_are_one_vs_rest():
    """A: 1 of 2 found; 2 non-A predicted A (cases 4, 6) so specificity 6/8; accuracy 7/10.
    C: 2 of 3 found; 2 non-C predicted C (cases 2, 9) so specificity 5/7; accuracy 7/10."""
    table = category_metrics(_table())
    assert table.loc["A"].to_dict() == pytest.approx(
        {"sensitivity": 0.5, "specificity": 0.75, "accuracy": 0.7, "n_correct": 1, "n_total": 2}
    )
    assert table.loc["C"].to_dict() == pytest.approx(
        {"sensitivity": 2 / 3, "specificity": 5 / 7, "accuracy": 0.7, "n_correct": 2, "n_total": 3}
    )


def test_category_metrics_c_subtype_rows_count_lesions_predicted_c():
    """Hypervascular C: cases 5 (C) and 6 (A) -> 1/2; hypovascular C: case 7 (C) -> 1/1."""
    table = category_metrics(_table())
    assert table.loc["C_hypervascular", ["n_correct", "n_total"]].tolist() == [1, 2]
    assert table.loc["C_hypovascular", "sensitivity"] == 1.0
    assert math.isnan(table.loc["C_hypervascular", "specificity"])


def test_category_metrics_rows_in_paper_order():
    assert list(category_metrics(_table()).index) == [
        *"ABCDE",
        "C_hypervascular",
        "C_hypovascular",
    ]


def test_category_metrics_sensitivity_of_absent_category_is_nan():
    table = category_metrics(_table().query("category != 'E'"))
    assert math.isnan(table.loc["E", "sensitivity"])
    assert table.loc["E", "n_total"] == 0


def test_confusion_counts_true_rows_predicted_columns():
    expected = [
        [1, 0, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 2, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    matrix = confusion(_table())
    assert matrix.to_numpy().tolist() == expected
    assert (matrix.index.name, matrix.columns.name) == ("true", "predicted")


def test_confusion_normalize_divides_each_true_row():
    matrix = confusion(_table(), normalize=True)
    np.testing.assert_allclose(matrix.loc["C"], [1 / 3, 0, 2 / 3, 0, 0])


def test_roc_malignant_clinical_score_auc_by_hand():
    """Clinical scores of the predictions: malignant (4, 3, 4, 4), others (3, 4, 3, 2, 3, 1).
    Each 4 beats five negatives and ties one (5.5); the 3 beats two and ties three (3.5):
    AUC = (3 * 5.5 + 3.5) / 24 = 5/6. First ROC point (score >= 4): FPR 1/6, TPR 3/4."""
    roc = roc_malignant(_table(), score="clinical")
    assert roc.auc == pytest.approx(5 / 6)
    assert (roc.fpr[1], roc.tpr[1]) == pytest.approx((1 / 6, 3 / 4))


def test_roc_malignant_clinical_ci_is_delongs():
    roc = roc_malignant(_table())
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    _, low, high, variance = delong_auc_ci(y, [4, 3, 4, 4, 3, 4, 3, 2, 3, 1])
    assert (roc.ci_low, roc.ci_high, roc.variance) == pytest.approx((low, high, variance))


def test_roc_malignant_probability_uses_p_a_plus_p_b():
    """Only the positive 0.4 loses, to the negative 0.6: AUC = 23/24."""
    assert roc_malignant(_table(), score="probability").auc == pytest.approx(23 / 24)


def test_roc_malignant_rejects_unknown_score():
    with pytest.raises(ValueError, match="clinical"):
        roc_malignant(_table(), score="logit")  # type: ignore[arg-type]


def test_session_metrics_is_plain_json():
    metrics = json.loads(json.dumps(session_metrics(_table()), allow_nan=False))
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["auc_clinical"]["auc"] == pytest.approx(5 / 6)
    assert metrics["categories"]["C_hypovascular"]["specificity"] is None
    assert metrics["confusion"]["counts"][2] == [1, 0, 2, 0, 0]


def test_session_metrics_rejects_more_than_one_session():
    two = pd.concat([_table(session=1), _table(session=2)])
    with pytest.raises(ValueError, match="one model and session"):
        session_metrics(two)


def test_unknown_category_is_an_input_error():
    with pytest.raises(InputError, match="predicted"):
        accuracy_score(_table(changes={1: "F"}))


def test_missing_column_is_an_input_error():
    with pytest.raises(InputError, match="subtype"):
        study_summary(_table().drop(columns="subtype"))


# --- the study ------------------------------------------------------------------------------

# triphasic sessions: accuracy 0.6, 0.5, 0.8; arterial sessions: 0.5, 0.4, 0.3.
SESSIONS = {
    ("triphasic", 1): {},
    ("triphasic", 2): {10: "D"},
    ("triphasic", 3): {2: "A", 9: "D"},
    ("arterial", 1): {1: "C"},
    ("arterial", 2): {1: "C", 3: "C"},
    ("arterial", 3): {1: "C", 3: "C", 5: "A"},
}
TRIPHASIC, ARTERIAL = [0.6, 0.5, 0.8], [0.5, 0.4, 0.3]


@pytest.fixture(scope="module")
def study() -> pd.DataFrame:
    # arterial first: the summary must still list models in the paper's order
    frames = [_table(model, session, changes) for (model, session), changes in SESSIONS.items()]
    return pd.concat(frames[3:] + frames[:3], ignore_index=True)


def _is_plain(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_study_summary_is_plain_json(study):
    summary = study_summary(study)
    assert _is_plain(summary)
    json.dumps(summary, allow_nan=False)


def test_study_summary_lists_models_in_paper_order(study):
    assert list(study_summary(study)["models"]) == ["triphasic", "arterial"]


def test_study_summary_accuracy_median_and_range(study):
    accuracy = study_summary(study)["models"]["triphasic"]["accuracy"]
    assert (accuracy["median"], accuracy["low"], accuracy["high"]) == pytest.approx((0.6, 0.5, 0.8))
    assert accuracy["sessions"] == pytest.approx(TRIPHASIC)


def test_study_summary_sensitivity_counts_come_from_median_session(study):
    """Triphasic A sensitivity per session 1/2, 1/2, 2/2: median 0.5 [1/2] (0.5-1.0)."""
    a = study_summary(study)["models"]["triphasic"]["sensitivity"]["A"]
    assert a == pytest.approx({"median": 0.5, "low": 0.5, "high": 1.0, "n_correct": 1, "n_total": 2})


def test_study_summary_auc_is_median_of_session_aucs(study):
    sessions = [
        session_metrics(_table("arterial", s, SESSIONS["arterial", s]))["auc_clinical"]["auc"]
        for s in (1, 2, 3)
    ]
    auc = study_summary(study)["models"]["arterial"]["auc_clinical"]
    assert auc["median"] == pytest.approx(float(np.median(sessions)))


def test_study_summary_kruskal_wallis_over_session_accuracies(study):
    expected = stats.kruskal(TRIPHASIC, ARTERIAL).pvalue
    assert study_summary(study)["kruskal_wallis"]["p"] == pytest.approx(expected)


def test_study_summary_steel_against_triphasic(study):
    models = study_summary(study)["models"]
    ((statistic, p_value),) = steel_many_to_one(TRIPHASIC, ARTERIAL)
    assert models["arterial"]["steel"] == pytest.approx({"statistic": statistic, "p": p_value})
    assert models["triphasic"]["steel"] is None


# --- the paper beside ours ------------------------------------------------------------------


def test_reference_dir_holds_the_papers_tables():
    """Table 2: triphasic test accuracy 0.84 (0.82-0.90); Table 3: hypervascular C 20/21."""
    accuracy = pd.read_csv(paper.DATA_DIR / "yasaka2018_accuracy.csv")
    test = accuracy.query("model == 'triphasic' and split == 'test'").iloc[0]
    assert (test["median"], test["low"], test["high"]) == (0.84, 0.82, 0.90)
    sensitivity = pd.read_csv(paper.DATA_DIR / "yasaka2018_sensitivity.csv")
    row = sensitivity.query("model == 'triphasic' and category == 'C_hypervascular'").iloc[0]
    assert (row["n_correct"], row["n_total"]) == (20, 21)


def test_compare_with_paper_accuracy_side_by_side(study):
    table = compare_with_paper(study_summary(study))["accuracy"].set_index("model")
    assert list(table.columns[:4]) == ["paper_median", "ours_median", "paper_low", "ours_low"]
    assert table.loc["triphasic", ["paper_median", "ours_median"]].tolist() == pytest.approx([0.84, 0.6])
    assert table.loc["arterial", "paper_steel_p_vs_triphasic"] == 0.031
    assert math.isnan(table.loc["art_del", "ours_median"])  # a model we did not run


def test_compare_with_paper_sensitivity_and_auc(study):
    summary = study_summary(study)
    tables = compare_with_paper(summary)
    sens = tables["sensitivity"].set_index(["model", "category"])
    assert len(sens) == 35  # five models x seven Table 3 rows
    row = sens.loc[("triphasic", "C_hypervascular")]
    assert (row["paper_n_correct"], row["ours_n_total"]) == (20, 2)
    auc = tables["auc"].set_index("model")
    expected = summary["models"]["triphasic"]["auc_clinical"]["median"]
    assert auc.loc["triphasic", ["paper_median", "ours_median"]].tolist() == pytest.approx([0.92, expected])


def test_compare_with_paper_reads_the_given_directory(study, tmp_path):
    for name in ("accuracy", "auc", "sensitivity"):
        shutil.copy(paper.DATA_DIR / f"yasaka2018_{name}.csv", tmp_path)
    auc = pd.read_csv(tmp_path / "yasaka2018_auc.csv")
    auc.loc[auc["model"] == "triphasic", "median"] = 0.5
    auc.to_csv(tmp_path / "yasaka2018_auc.csv", index=False)
    table = compare_with_paper(study_summary(study), tmp_path)["auc"].set_index("model")
    assert table.loc["triphasic", "paper_median"] == 0.5
