"""Temperature scaling, expected calibration error, the reliability diagram; the shipped models'
temperatures and their stored predictions reproduced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from livercore.calibration import (
    N_BINS,
    TemperatureScaling,
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    logits_from_probabilities,
    negative_log_likelihood,
    reliability_diagram,
)
from livercore.vocab import CATEGORIES, MODEL_NAMES

MODELS = Path(__file__).resolve().parents[1] / "models"


def _overconfident(n: int, temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits `temperature` times too sharp: labels drawn from softmax(g), logits = g * temperature."""
    rng = np.random.default_rng(seed)
    g = rng.normal(0, 1.5, (n, 5))
    labels = np.array([rng.choice(5, p=p) for p in special.softmax(g, axis=1)])
    return g * temperature, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(true_temperature: float) -> None:
    logits, labels = _overconfident(20_000, true_temperature, seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_the_fitted_temperature_minimises_the_nll_and_keeps_the_argmax() -> None:
    logits, labels = _overconfident(2_000, 2.0, seed=2)
    t = fit_temperature(logits, labels)
    best = negative_log_likelihood(logits, labels, t)
    assert best <= negative_log_likelihood(logits, labels, t * 1.1)
    assert best <= negative_log_likelihood(logits, labels, t / 1.1)
    assert best < negative_log_likelihood(logits, labels, 1.0)
    assert np.array_equal(calibrated_probabilities(logits, t).argmax(1), logits.argmax(1))


def test_ece_of_a_perfectly_calibrated_toy_is_about_zero() -> None:
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5) * 0.5, 50_000)
    labels = np.array([rng.choice(5, p=row) for row in p])  # each case's label drawn from its own p
    assert expected_calibration_error(p, labels) < 0.01


def test_ece_on_a_hand_computed_example() -> None:
    # confidences 0.9, 0.9 (bin 14: one right) and 0.6, 0.6 (bin 9: both right):
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.4
    p = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(p, labels) == pytest.approx(0.4)
    assert expected_calibration_error(p[[0, 2]], labels[[0, 2]]) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)


def test_reliability_diagram_has_15_equal_bins_closed_on_the_right() -> None:
    p = np.array([[1.0, 0.0], [0.2, 0.8], [0.8, 0.2], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0])
    diagram = reliability_diagram(p, labels)
    assert len(diagram.bins) == N_BINS == 15
    assert diagram.bins[0].lower == 0 and diagram.bins[-1].upper == 1
    assert sum(b.count for b in diagram.bins) == diagram.n == 4
    assert diagram.bins[-1].count == 1 and diagram.bins[-1].accuracy == 1.0  # confidence 1.0: last bin
    assert diagram.bins[11].count == 2  # 0.8 lies in (11/15, 12/15]
    assert diagram.bins[11].accuracy == 0.5 and diagram.bins[11].confidence == pytest.approx(0.8)
    assert diagram.bins[0].confidence is None and diagram.bins[0].accuracy is None
    json.dumps(diagram.to_dict())


def test_stored_probabilities_calibrate_like_their_logits() -> None:
    logits, _ = _overconfident(50, 2.0, seed=4)
    from_probabilities = logits_from_probabilities(special.softmax(logits, axis=1))
    np.testing.assert_allclose(
        calibrated_probabilities(from_probabilities, 1.7), calibrated_probabilities(logits, 1.7), atol=1e-9
    )


def test_temperature_scaling_records_its_fit_and_round_trips() -> None:
    logits, labels = _overconfident(3_000, 2.0, seed=5)
    fitted = TemperatureScaling.fit(logits, labels, fitted_on="toy validation")
    assert fitted.fitted and fitted.n == 3_000
    assert fitted.ece_after is not None and fitted.ece_before is not None
    assert fitted.ece_after < fitted.ece_before
    assert TemperatureScaling.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted
    assert not TemperatureScaling().fitted and TemperatureScaling().temperature == 1.0


# --- the shipped models ----------------------------------------------------------------------


def phantom_crops(
    cohort: str, seed: int, indices: range, size: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """(N, 3, 70, 70) crops and case ids of cases of a phantom cohort, as livercore.dataset makes them."""
    from livercore.phantom import generate_case
    from livercore.preprocess import LesionBox, preprocess_case
    from livercore.vocab import PHASES

    crops, ids = [], []
    for i in indices:
        case = generate_case(cohort, seed, i, size)
        boxes = {
            p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
            for p in PHASES
        }
        crops.append(preprocess_case(case.hu, boxes, case.spacing_mm))
        ids.append(case.case_id)
    return np.stack(crops), ids


@pytest.fixture(scope="module")
def test_cases() -> tuple[np.ndarray, list[str]]:
    """The first 20 image sets of test-2016, regenerated (a case is a pure function of its index)."""
    return phantom_crops("test-2016", 0, range(20))


def test_shipped_models_reproduce_their_stored_predictions_and_calibrate_without_changing_them(
    test_cases: tuple[np.ndarray, list[str]],
) -> None:
    """The re-shipped files carry the weights the study predicted with: their raw probabilities
    match predictions_test.csv for the shipped session. Not to 1e-5: the study predicted in float32
    on the GPU before the weights were stored in float16 (the shipped files have always held
    those float16 tensors; 8.7e-4 is the largest difference over all of test-2016)."""
    from livercore.analysis import analyse_crops, load_models
    from livercore.model import predict_proba, select_channels

    x, case_ids = test_cases
    stored = pd.read_csv(MODELS / "study" / "predictions_test.csv")
    shipped = json.loads((MODELS / "study" / "shipped.json").read_text())
    models = load_models(MODELS)
    for name, m in models.items():
        ours = predict_proba(m.net, select_channels(x, m.phase_model))
        theirs = stored[(stored.model == name) & (stored.session == shipped[name])].set_index("case_id")
        theirs = theirs.loc[case_ids, [f"p_{c.value}" for c in CATEGORIES]].to_numpy()
        assert np.abs(ours - theirs).max() < 1e-3
        assert np.array_equal(ours.argmax(1), theirs.argmax(1))
        assert m.calibration.fitted and m.calibration.temperature != 1.0
    for i in range(3):
        result = analyse_crops(x[i], models, cam_method=None, contributions=False)
        for r in result.results.values():
            assert r.raw_probabilities is not None
            assert r.predicted.output_index == int(np.argmax(r.raw_probabilities))


def test_shipped_cards_record_the_temperature_the_ood_threshold_and_unchanged_weights() -> None:
    from livercore.model import load_model, stored_weights_digest

    for name in MODEL_NAMES:
        card = json.loads((MODELS / f"{name}.json").read_text())
        saved = load_model(MODELS / f"{name}.pt")
        assert saved.card == card and not saved.notes
        assert card["weights_sha256"] == stored_weights_digest(MODELS / f"{name}.pt")
        cal = card["calibration"]
        assert cal["fitted_on"].startswith("valid-2014") and cal["n"] == 1000 and cal["ece_bins"] == 15
        assert cal["temperature"] == pytest.approx(saved.calibration.temperature, abs=1e-4)
        assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
        ood = card["ood"]
        assert ood["in_distribution_rate"] == 0.99 and ood["validation_share"] >= 0.99
        assert ood["threshold_on"].startswith("valid-2014") and ood["fitted_on"].startswith("train-2013")
        assert "test-2016" not in cal["fitted_on"] + ood["threshold_on"] + ood["fitted_on"]
        assert card["categories"] == ["A", "B", "C", "D", "E"] and sum(card["training_mix"].values()) == 1068
    report = json.loads((MODELS / "study" / "calibration.json").read_text())
    assert set(report["models"]) == set(MODEL_NAMES)
    for entry in report["models"].values():
        assert len(entry["test"]["reliability_after"]["bins"]) == 15 and entry["test"]["n"] == 100


def test_the_shipped_study_has_its_calibration_report_for_the_results_page(tmp_path: Path) -> None:
    from livercore.calibration import study_calibration

    report = study_calibration(MODELS / "study")
    assert report is not None and report["validation_cohort"].startswith("valid-2014")
    assert study_calibration(tmp_path) is None
