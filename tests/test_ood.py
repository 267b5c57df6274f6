"""Out-of-distribution checks: feature distances, image checks, their storage in the model file,
and what the shipped models say on phantom, foreign and real CT inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from livercore import ood
from livercore.analysis import analyse_case, analyse_crops, load_models
from livercore.calibration import TemperatureScaling
from livercore.model import (
    LiverNet,
    add_statistics,
    load_model,
    predict_logits_and_features,
    save_model,
    select_channels,
)
from livercore.ood import FeatureDistance, OODStatistics
from livercore.phantom import generate_case
from livercore.preprocess import LesionBox, preprocess_case
from livercore.vocab import MODEL_NAMES, PHASE_MODELS, PHASES
from tests.conftest import REAL_CT
from tests.test_calibration import phantom_crops

U, A, D = PHASES
REAL_SLICES = sorted(REAL_CT.glob("slice_*.dcm"))
needs_real_ct = pytest.mark.skipif(len(REAL_SLICES) != 16, reason="real CT slices not available")


# --- the feature distances on synthetic features -----------------------------------------------


def _gaussian_classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in 4 dimensions, unit covariance, means 0, 10 e1 and 10 e2."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    means = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], float)
    return means[y] + rng.normal(size=(n, 4)), y


def test_distance_is_the_mahalanobis_distance_to_the_nearest_class() -> None:
    x, y = _gaussian_classes(30_000, 0)
    distance = FeatureDistance.fit("penultimate", x, y, n_classes=3)
    np.testing.assert_allclose(distance.class_means, [[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0]], atol=0.05)
    # unit covariance: 3 units from class 1 along e4, and 5 units from class 0 (nearest) at (3, 4, 0, 0)
    scores = distance.score(np.array([[10, 0, 0, 3], [3, 4, 0, 0], [0, 10, 0, 0]], float))
    np.testing.assert_allclose(scores, [3, 5, 0], atol=0.05)


def test_thresholds_let_the_stated_share_of_validation_through_every_space() -> None:
    x, y = _gaussian_classes(3_000, 1)
    features = {"penultimate": x, "convolutional": x[:, ::-1] * 2}
    stats = OODStatistics.fit(features, y, fitted_on="toy train", n_classes=3)
    v, _ = _gaussian_classes(500, 2)
    stats = stats.with_thresholds(
        {"penultimate": v, "convolutional": v[:, ::-1] * 2}, threshold_on="toy valid"
    )
    assert stats.thresholded and stats.in_distribution_rate == 0.99
    assert stats.validation_share is not None and stats.validation_share >= 0.99
    fresh, _ = _gaussian_classes(5_000, 3)
    share = stats.within({"penultimate": fresh, "convolutional": fresh[:, ::-1] * 2}).mean()
    assert 0.97 <= share <= 1.0
    far = np.full((1, 4), 50.0)
    assert not stats.within({"penultimate": far, "convolutional": far})[0]


def test_a_model_file_stores_its_statistics_and_keeps_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = LiverNet(1).eval()
    path = tmp_path / "arterial.pt"
    save_model(path, net, phase_model_name="arterial", card={"model": "arterial"})
    x = np.random.default_rng(0).integers(0, 256, (40, 1, 70, 70), dtype=np.uint8)
    y = np.arange(40) % 5
    logits, features = predict_logits_and_features(net, x)
    stats = OODStatistics.fit(features, y, fitted_on="noise", n_classes=5).with_thresholds(
        features, threshold_on="noise"
    )
    calibration = TemperatureScaling.fit(logits, y, fitted_on="noise")
    before = torch.load(path, weights_only=True)["state_dict"]
    add_statistics(path, path, calibration=calibration, ood=stats, card={"model": "arterial", "re": 1})
    after = torch.load(path, weights_only=True)
    assert after["format"] == "livercore-model/3"
    assert all(torch.equal(before[k], after["state_dict"][k]) for k in before)
    saved = load_model(path)
    assert saved.calibration == calibration and saved.card == {"model": "arterial", "re": 1}
    assert saved.ood is not None and saved.ood.thresholded and not saved.notes
    for space, d in stats.distances.items():
        np.testing.assert_array_equal(saved.ood.distances[space].precision, d.precision)
        assert saved.ood.distances[space].threshold == d.threshold


def test_an_old_format_model_file_loads_uncalibrated_and_unchecked_and_says_so(tmp_path: Path) -> None:
    """A livercore-model/2 file (before temperatures and OOD statistics) still loads."""
    path = tmp_path / "delayed.pt"
    save_model(path, LiverNet(1), phase_model_name="delayed", card={})
    blob = torch.load(path, weights_only=True)
    blob["format"] = "livercore-model/2"
    torch.save(blob, path)
    saved = load_model(path)
    assert saved.calibration.temperature == 1.0 and not saved.calibration.fitted and saved.ood is None
    assert any("carries no temperature" in n for n in saved.notes)
    assert any("no out-of-distribution statistics" in n for n in saved.notes)
    models = load_models(tmp_path)
    assert models["delayed"].notes == saved.notes
    result = analyse_crops(np.zeros((3, 70, 70), np.uint8), models, cam_method=None).results["delayed"]
    assert result.ood is not None and not result.ood.feature_check and result.ood.score is None
    assert not result.unlike_training and "no out-of-distribution statistics" in result.ood.headline
    assert result.raw_probabilities is not None
    np.testing.assert_array_equal(result.probabilities, result.raw_probabilities)


# --- the shipped models on phantom and foreign inputs ------------------------------------------


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.fixture(scope="module")
def fresh_crops() -> np.ndarray:
    """A fresh phantom cohort: 60 patients of another name and seed than any the models saw."""
    return phantom_crops("ood-check", 5, range(60), 60)[0]


def _flagged(m, x: np.ndarray) -> np.ndarray:
    _, features = predict_logits_and_features(m.net, select_channels(x, m.phase_model))
    return ~m.ood.within(features)


def test_shipped_models_pass_about_99_percent_of_a_fresh_phantom_cohort(models, fresh_crops) -> None:
    """The thresholds let 99 % of valid-2014 through; a fresh cohort of 60 should see at most a
    case or two flagged per model (on 200 fresh cases: 97-100 %, benchmarks/ship_statistics.py)."""
    for m in models.values():
        assert _flagged(m, fresh_crops).mean() <= 0.05


def test_shipped_models_flag_noise_and_flat_images(models) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (10, 3, 70, 70), dtype=np.uint8)
    flat = np.stack([np.full((3, 70, 70), v, np.uint8) for v in (0, 128)])
    for m in models.values():
        assert _flagged(m, noise).all() and _flagged(m, flat).all()
    result = analyse_crops(noise[0], models, cam_method=None)
    assert result.unlike_training == list(MODEL_NAMES)
    reason = result.results["triphasic"].ood.reasons[0]
    assert "brightness, contrast and texture" in reason and "99 % of the validation images" in reason
    json.dumps(result.ood_table())  # the report's scores are JSON


@pytest.fixture(scope="module")
def real_ct_case():
    """HCC048 (portal-venous real CT) slice 7 sliced as all three phases, a 2 cm box in the right lobe."""
    from livercore.dicom_io import read_series

    ct = read_series([str(p) for p in REAL_SLICES])[7]
    side = 20.0 / ct.pixel_spacing_mm[0]
    hu = dict.fromkeys(PHASES, ct.hu)
    return hu, dict.fromkeys(PHASES, LesionBox(210.0, 170.0, side, side)), ct.pixel_spacing_mm[0]


@needs_real_ct
def test_real_portal_venous_ct_as_three_phases_is_unlike_the_training_data(models, real_ct_case) -> None:
    """What the check says on a real patient's portal-venous slice given as all three phases: the
    phase-models that see the unenhanced or delayed slot are flagged by the image checks (an
    aorta of ~220 HU is no unenhanced and no 3-minute phase), the triphasic, art/del and
    unenhanced models also by their features. The arterial model alone sees nothing wrong: a
    portal-venous slice is close to a late arterial one (aorta 220 HU against 240-425)."""
    hu, boxes, spacing = real_ct_case
    analysis = analyse_case(hu, boxes, spacing, models, cam_method=None, contributions=False)
    assert analysis.unlike_training == ["triphasic", "art_del", "unenhanced", "delayed"]
    checks = {(f.phase, f.check) for f in analysis.findings}
    assert (U, "aorta_hu") in checks and (D, "aorta_hu") in checks and (U, "liver_hu") in checks
    unenhanced = analysis.results["unenhanced"].ood
    assert any("contrast has been given, so this is not an unenhanced image" in r for r in unenhanced.reasons)
    for name in ("triphasic", "art_del", "unenhanced"):
        assert analysis.results[name].ood.distances["convolutional"]["distance"] > 25
    delayed = analysis.results["delayed"].ood
    assert any("not the 3-minute delayed one" in r for r in delayed.reasons)
    assert analysis.results["delayed"].predicted is not None  # the prediction is still there


@needs_real_ct
def test_real_ct_crops_are_flagged_by_the_triphasic_and_unenhanced_features(models) -> None:
    from livercore.dicom_io import read_series

    series = read_series([str(p) for p in REAL_SLICES])
    side = 20.0 / series[0].pixel_spacing_mm[0]
    crops = np.stack(
        [
            preprocess_case(
                dict.fromkeys(PHASES, ct.hu), dict.fromkeys(PHASES, LesionBox(215, 160, side, side)), 0.703125
            )
            for ct in series[:11]  # the slices through the liver
        ]
    )
    assert _flagged(models["triphasic"], crops).all() and _flagged(models["unenhanced"], crops).all()


# --- every foreign input of the issue flagged for the triphasic model -----------------------------


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom's test data here")
    return Path(path)


def _head_ct() -> tuple[np.ndarray, float]:
    """pydicom-data's eCT_Supplemental.dcm: a real axial head CT (an enhanced CT object, which
    the app refuses as an upload, so its first frame is rescaled to HU here)."""
    import pydicom

    ds = pydicom.dcmread(_pydicom_file("eCT_Supplemental.dcm"))
    shared = ds.SharedFunctionalGroupsSequence[0]
    transform = shared.PixelValueTransformationSequence[0]
    hu = ds.pixel_array[0].astype(np.float32) * float(transform.RescaleSlope) + float(
        transform.RescaleIntercept
    )
    return hu, float(shared.PixelMeasuresSequence[0].PixelSpacing[0])


def _mr_slice() -> tuple[np.ndarray, float]:
    """pydicom's MR_small.dcm, its signal values taken as if they were HU."""
    import pydicom

    ds = pydicom.dcmread(_pydicom_file("MR_small.dcm"))
    return ds.pixel_array.astype(np.float32), float(ds.PixelSpacing[0])


def _triphasic_flag(models, hu: np.ndarray, centre: tuple[float, float], spacing: float):
    side = 20.0 / spacing
    analysis = analyse_case(
        dict.fromkeys(PHASES, hu),
        dict.fromkeys(PHASES, LesionBox(*centre, side, side)),
        spacing,
        models,
        cam_method=None,
        contributions=False,
    )
    return analysis.results["triphasic"]


@needs_real_ct
def test_all_16_real_hcc048_slices_as_three_phases_are_flagged(models) -> None:
    from livercore.dicom_io import read_series

    for ct in read_series([str(p) for p in REAL_SLICES]):
        result = _triphasic_flag(models, ct.hu, (215.0, 160.0), ct.pixel_spacing_mm[0])
        assert result.unlike_training, ct.position_z_mm
        assert result.ood.reasons and result.predicted is not None  # a reason, and the prediction kept


def test_a_real_head_ct_is_flagged(models) -> None:
    hu, spacing = _head_ct()
    result = _triphasic_flag(models, hu, (hu.shape[0] / 2, hu.shape[1] / 2), spacing)
    assert result.unlike_training and result.ood.reasons


def test_an_mr_slice_forced_through_the_hu_path_is_flagged(models) -> None:
    mr, spacing = _mr_slice()
    result = _triphasic_flag(models, mr, (mr.shape[0] / 2, mr.shape[1] / 2), spacing)
    assert result.unlike_training
    assert (
        result.ood.distances["convolutional"]["distance"] > result.ood.distances["convolutional"]["threshold"]
    )


def test_pure_noise_hu_and_a_crop_outside_the_body_are_flagged(models) -> None:
    noise = np.random.default_rng(3).uniform(-1000, 1000, (512, 512)).astype(np.float32)
    assert _triphasic_flag(models, noise, (256.0, 256.0), 0.7).unlike_training
    case = generate_case("valid-2014", 0, 3, 200)  # a phantom case, its box moved to the image's corner
    corner = LesionBox.from_center(14.0, 14.0, case.lesion_diameter_mm, case.spacing_mm)
    analysis = analyse_case(
        case.hu, dict.fromkeys(PHASES, corner), case.spacing_mm, models, cam_method=None, contributions=False
    )
    outside = analysis.results["triphasic"]
    assert outside.unlike_training
    assert any("outside the body" in r for r in outside.ood.reasons)


# --- the image checks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_case():
    case = generate_case("valid-2014", 0, 3, 200)
    boxes = {
        p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
        for p in PHASES
    }
    return case, boxes


def test_a_phantom_case_passes_every_image_check(phantom_case) -> None:
    case, boxes = phantom_case
    assert ood.check_images(case.hu, boxes, case.spacing_mm) == []
    stats = ood.image_statistics(case.hu, boxes, case.spacing_mm)
    assert 240 <= (stats[A].aorta_hu or 0) <= 425 and 35 <= (stats[U].aorta_hu or 0) <= 45


def test_an_unenhanced_image_given_as_arterial_is_named(phantom_case) -> None:
    case, boxes = phantom_case
    hu = {**case.hu, A: case.hu[U]}
    findings = ood.check_images(hu, {**boxes, A: boxes[U]}, case.spacing_mm)
    assert [(f.phase, f.check) for f in findings] == [(A, "aorta_hu")]
    assert findings[0].sentence.startswith("the arterial aorta measures 39 HU")  # the unenhanced 40 HU
    assert findings[0].sentence.endswith(
        "HU, far below the 240-425 HU of the training images: this looks like an unenhanced image, "
        "not an arterial phase."
    )


def test_image_findings_reach_only_the_models_that_see_their_phase(models, phantom_case) -> None:
    case, boxes = phantom_case
    hu = {**case.hu, A: case.hu[U]}
    analysis = analyse_case(hu, {**boxes, A: boxes[U]}, case.spacing_mm, models, cam_method=None)
    sentence = analysis.findings[0].sentence
    for name, r in analysis.results.items():
        assert r.ood is not None
        assert (sentence in r.ood.reasons) == (A in PHASE_MODELS[name].phases)
    assert analysis.results["unenhanced"].ood.findings == []
    assert analysis.results["arterial"].unlike_training


def test_a_lesion_box_off_the_body_and_added_noise_are_named(phantom_case) -> None:
    case, boxes = phantom_case
    corner = LesionBox(20, 20, 30, 30)  # the image's corner: air
    findings = ood.check_images(case.hu, {**boxes, D: corner}, case.spacing_mm)
    air = [f for f in findings if f.check == "air"]
    assert [f.phase for f in air] == [D] and "mostly outside the body" in air[0].sentence
    noisy = case.hu[A] + np.random.default_rng(0).normal(0, 60, case.hu[A].shape)
    findings = ood.check_images({**case.hu, A: noisy}, boxes, case.spacing_mm)
    noise = [f for f in findings if f.check == "noise"]
    assert [f.phase for f in noise] == [A] and "image noise beside the lesion" in noise[0].sentence


def test_the_pages_measurements_are_used_when_given(phantom_case) -> None:
    from livercore.measure import measure_case

    case, boxes = phantom_case
    spacing = dict.fromkeys(PHASES, case.spacing_mm)
    liver_on_fat = {p: case.aorta_center[p] for p in PHASES}  # a liver ROI put on the aorta
    measured = measure_case(case.hu, spacing, boxes, liver_on_fat, case.aorta_center)
    findings = ood.check_images(case.hu, boxes, spacing, measurements=measured)
    assert {(f.phase, f.check) for f in findings} >= {(A, "liver_hu")}


# --- ship: statistics fitted and stored ---------------------------------------------------------


def test_ship_stores_statistics_fitted_on_train_and_validation_with_the_weights_unchanged(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from livercore.study import run_study, ship
    from livercore.train import TrainConfig
    from tests.test_study import _toy

    study = tmp_path / "study"
    config = replace(TrainConfig(), variants_per_image=2, batch_size=32)
    train, test, valid = _toy(60, 0), _toy(25, 1), _toy(40, 2)
    run_study(
        train, test, study, sessions=1, models=("arterial",), config=config, device="cpu", progress=False
    )
    shipped = ship(
        study, tmp_path / "models", train=train, validation=valid, train_note="toy", validation_note="toy-v"
    )
    assert shipped == {"arterial": 1}
    saved = load_model(tmp_path / "models" / "arterial.pt")
    original = torch.load(study / "weights" / "arterial_s1.pt", weights_only=True)["state_dict"]
    stored = torch.load(tmp_path / "models" / "arterial.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(original[k], stored[k]) for k in original)
    assert saved.calibration.fitted_on == "toy-v" and saved.ood is not None and saved.ood.fitted_on == "toy"
    card = json.loads((tmp_path / "models" / "arterial.json").read_text())
    assert card == saved.card and card["ood"]["n_threshold"] == 40 and card["calibration"]["n"] == 40
    report = json.loads((tmp_path / "models" / "study" / "calibration.json").read_text())
    assert report["models"]["arterial"]["test"]["n"] == 25


def test_ship_refuses_the_test_cohort_for_validation(capsys: pytest.CaptureFixture[str]) -> None:
    from livercore.cli import main

    models = Path(__file__).resolve().parents[1] / "models"
    argv = ["study", "ship", str(models / "study"), "--statistics-only", "--valid", "test-2016"]
    assert main([*argv, "--models-dir", str(models)]) == 2
    assert "neither the test cohort" in capsys.readouterr().err
