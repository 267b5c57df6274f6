"""The one entry point for analysing a case: probabilities, CAMs, thread safety."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from livercore.analysis import analyse_case, analyse_crops, load_models
from livercore.calibration import calibrated_probabilities
from livercore.errors import InputError
from livercore.model import predict_proba, select_channels
from livercore.phantom import generate_case
from livercore.preprocess import LesionBox, preprocess_case
from livercore.vocab import MODEL_NAMES, PHASES, Category


@pytest.fixture(scope="module")
def models():
    return load_models()


@pytest.fixture(scope="module")
def case_crops():
    case = generate_case("test-2016", 0, 3)
    boxes = {
        p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, case.spacing_mm)
        for p in PHASES
    }
    return case, boxes, preprocess_case(case.hu, boxes, case.spacing_mm)


def test_probabilities_match_the_models_own_prediction_calibrated_by_its_temperature(models, case_crops):
    _, _, crops = case_crops
    result = analyse_crops(crops, models, cam_method=None)
    assert list(result.results) == list(MODEL_NAMES)
    for name, r in result.results.items():
        m = models[name]
        expected = predict_proba(m.net, select_channels(crops[None], m.phase_model))[0]
        np.testing.assert_allclose(r.raw_probabilities, expected, atol=1e-6)
        calibrated = calibrated_probabilities(np.log(expected)[None], m.calibration.temperature)[0]
        np.testing.assert_allclose(r.probabilities, calibrated, atol=1e-5)
        assert r.temperature == m.calibration.temperature and r.ood is not None and r.ood.feature_check
        assert r.cam is None


def test_cams_cover_the_crop_and_follow_the_chosen_target(models, case_crops):
    case, boxes, _ = case_crops
    predicted = analyse_case(case.hu, boxes, case.spacing_mm, models, cam_method="GradCAM")
    for r in predicted.results.values():
        assert r.cam is not None and r.cam.shape == (70, 70)
        assert r.cam.min() >= 0 and r.cam.max() <= 1
        assert r.cam_target == r.predicted
    chosen = analyse_case(case.hu, boxes, case.spacing_mm, models, cam_method="GradCAM++", cam_target="E")
    assert all(r.cam_target is Category.E for r in chosen.results.values())


def test_explaining_one_model_gives_every_probability_and_that_models_cam_alone(models, case_crops):
    """The review page explains only the model it shows (issue 16): the others' probabilities
    and OOD checks stay those of the full analysis; the shown model's CAM and contributions too."""
    _, _, crops = case_crops
    full = analyse_crops(crops, models, cam_method="GradCAM")
    one = analyse_crops(crops, models, cam_method="GradCAM", explain=("art_del",))
    for name, r in one.results.items():
        whole = full.results[name]
        np.testing.assert_array_equal(r.probabilities, whole.probabilities)
        assert r.ood is not None and whole.ood is not None and r.ood.score == whole.ood.score
        if name == "art_del":
            np.testing.assert_array_equal(r.cam, whole.cam)
            assert r.cam_target == whole.cam_target and r.contribution == whole.contribution
        else:
            assert r.cam is None and r.contribution is None and r.cam_target is None


@pytest.mark.parametrize("method", ["GradCAM", "GradCAM++", "EigenCAM"])
def test_the_analysis_maps_are_the_librarys_per_call_maps_bit_for_bit(models, case_crops, method):
    """The engine (CAM objects built once, on a copy of the network, one forward pass for the
    probabilities, features and CAM) against pytorch-grad-cam's documented one-call use, for
    the predicted category and for each other category the model knows."""
    from livercore.explain import class_activation_map

    _, _, crops = case_crops
    rng = np.random.default_rng(1)
    inputs = [crops, rng.integers(0, 256, crops.shape, dtype=np.uint8)]
    for x in inputs:
        for target in (None, Category.A, Category.E):
            result = analyse_crops(x, models, cam_method=method, cam_target=target, contributions=False)
            for name, m in models.items():
                r = result.results[name]
                wanted = (target if target in m.categories else None) or r.predicted
                expected = class_activation_map(
                    m.net, select_channels(x, m.phase_model), wanted.output_index, method
                )
                assert np.array_equal(r.cam, expected), (name, method, target)


def test_a_network_edited_after_its_first_analysis_is_analysed_as_it_is_now(case_crops):
    """The engine's private copy follows the shared network: an edit in place (here the
    category offsets, as know_only makes them) gives a new copy, not stale answers."""
    _, _, crops = case_crops
    fresh = load_models()
    before = analyse_crops(crops, fresh, contributions=False)
    top = before.results["triphasic"].predicted
    fresh["triphasic"].net.know_only([c.value for c in Category if c is not top])
    after = analyse_crops(crops, fresh, contributions=False).results["triphasic"]
    assert after.probabilities[top.output_index] == 0 and after.predicted is not top
    assert after.cam_target is after.predicted


def test_no_hooks_are_left_on_the_shared_models(models, case_crops):
    _, _, crops = case_crops
    for method in ("GradCAM", "GradCAM++", "EigenCAM"):
        analyse_crops(crops, models, cam_method=method)
    for m in models.values():
        for module in m.net.modules():
            assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks


def test_8_threads_x_20_calls_are_bit_identical_to_a_sequential_run(models):
    """hardening.md: grad-cam hooks on a shared model corrupt concurrent maps without the lock."""
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (3, 70, 70), dtype=np.uint8) for _ in range(8)]
    sequential = [analyse_crops(x, models) for x in inputs]

    def worker(t: int) -> list[tuple[int, object]]:
        return [(t, analyse_crops(inputs[t], models)) for _ in range(20)]

    with ThreadPoolExecutor(8) as pool:
        runs = [r for part in pool.map(worker, range(8)) for r in part]
    assert len(runs) == 160
    for t, result in runs:
        ref = sequential[t]
        for name in MODEL_NAMES:
            assert np.array_equal(result.results[name].probabilities, ref.results[name].probabilities)
            assert np.array_equal(result.results[name].cam, ref.results[name].cam)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_soak_of_1000_cams_keeps_memory_flat_and_leaves_no_hooks(models, case_crops):
    _, _, crops = case_crops
    for _ in range(40):  # 200 CAMs of warm-up: allocator pools and caches settle
        analyse_crops(crops, models)
    before = _rss_mib()
    for _ in range(160):  # 160 calls x 5 models = 800 more CAMs, 1000 in all
        analyse_crops(crops, models)
    assert _rss_mib() - before < 30
    for m in models.values():
        for module in m.net.modules():
            assert not module._forward_hooks and not module._backward_hooks


def test_wrong_crops_are_refused_with_a_sentence(models):
    with pytest.raises(InputError, match="70 x 70"):
        analyse_crops(np.zeros((3, 64, 64), np.uint8), models)
