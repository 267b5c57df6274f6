import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from livercore.model import (
    LiverNet,
    ModelContract,
    ModelFileError,
    NetConfig,
    load_model,
    predict_proba,
    save_model,
    select_channels,
)
from livercore.vocab import PHASE_MODELS, PHASES


@pytest.fixture
def triphasic_images() -> np.ndarray:
    """(4, 3, 70, 70) uint8 where channel i holds the value 10 * (i + 1) everywhere."""
    x = np.zeros((4, len(PHASES), 70, 70), dtype=np.uint8)
    for i in range(len(PHASES)):
        x[:, i] = 10 * (i + 1)
    return x


@pytest.mark.parametrize("name", list(PHASE_MODELS))
def test_output_shapes_for_each_phase_model(name: str) -> None:
    model = LiverNet(PHASE_MODELS[name].in_channels)
    x = torch.rand(2, PHASE_MODELS[name].in_channels, 70, 70)
    assert model.forward_features(x).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 5)


def test_the_network_centres_its_input() -> None:
    # zero biases at initialisation: mid-grey in, nothing but zeros through every layer
    logits = LiverNet(3).eval()(torch.full((1, 3, 70, 70), 0.5))
    assert torch.equal(logits, torch.zeros(1, 5))


@pytest.mark.parametrize("name", list(PHASE_MODELS))
def test_select_channels_picks_the_phase_models_phases(name: str, triphasic_images) -> None:
    phase_model = PHASE_MODELS[name]
    expected = [10 * (PHASES.index(p) + 1) for p in phase_model.phases]
    picked = select_channels(triphasic_images, phase_model)
    assert picked.shape == (4, phase_model.in_channels, 70, 70)
    assert picked[0, :, 0, 0].tolist() == expected
    single = select_channels(torch.from_numpy(triphasic_images[0]), phase_model)
    assert single[:, 0, 0].tolist() == expected


def test_select_channels_refuses_images_without_three_phases(triphasic_images) -> None:
    with pytest.raises(ValueError, match="3 phase channels"):
        select_channels(triphasic_images[:, :2], PHASE_MODELS["arterial"])


def test_batch_norm_option_adds_a_norm_after_each_convolution() -> None:
    model = LiverNet(3, NetConfig(batch_norm=True))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 6
    assert model(torch.rand(2, 3, 70, 70)).shape == (2, 5)


def test_target_layer_is_the_activation_of_the_last_convolution() -> None:
    model = LiverNet(3).eval()
    layers = list(model.features)
    last_conv = max(i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d))
    assert model.target_layer is layers[last_conv + 1]
    with GradCAM(model=model, target_layers=[model.target_layer]) as cam:
        maps = cam(input_tensor=torch.rand(2, 3, 70, 70), targets=[ClassifierOutputTarget(0)] * 2)
    assert maps.shape == (2, 70, 70)


def test_predict_proba_gives_probabilities_independent_of_batching() -> None:
    model = LiverNet(2).train()
    x = np.random.default_rng(0).integers(0, 256, (7, 2, 70, 70), dtype=np.uint8)
    p = predict_proba(model, x)
    assert p.shape == (7, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(predict_proba(model, x, batch_size=3), p, atol=1e-6)
    assert model.training  # the caller's mode is restored


def test_predict_proba_refuses_the_wrong_channel_count(triphasic_images) -> None:
    with pytest.raises(ValueError, match="takes 1 channels"):
        predict_proba(LiverNet(1), triphasic_images)


def test_save_load_round_trip(tmp_path, triphasic_images) -> None:
    torch.manual_seed(0)
    phase_model = PHASE_MODELS["art_del"]
    model = LiverNet(2, NetConfig(dropout=0.3)).eval()
    card = {"seed": 3, "test_accuracy": 0.84}
    path = tmp_path / "art_del.pt"
    save_model(path, model, phase_model_name="art_del", card=card)
    saved = load_model(path)
    assert path.stat().st_size < 4_000_000
    assert (saved.phase_model, saved.card, saved.net.config) == (phase_model, card, model.config)
    assert saved.contract == ModelContract.current(phase_model)
    assert saved.contract.phases == ("arterial", "delayed") and saved.contract.crop_size == 70
    assert saved.contract.windows == {"arterial": (45, 290), "delayed": (45, 290)}
    assert not saved.net.training
    x = select_channels(triphasic_images, phase_model)
    np.testing.assert_allclose(predict_proba(saved.net, x), predict_proba(model, x), atol=2e-3)


def _rewrite(path: Path, **changes: object) -> None:
    blob = torch.load(path, weights_only=True)
    contract = json.loads(blob["contract"])
    for key, value in changes.items():
        if key in contract:
            contract[key] = value
        else:
            blob[key] = value
    blob["contract"] = json.dumps(contract)
    torch.save(blob, path)


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        ({"field_mm": 32.0}, "trained on crops of a 32 mm field"),
        ({"crop_size": 64}, "it takes 64 x 64 crops, not 70 x 70"),
        (
            {"windows": {"unenhanced": [40, 350], "arterial": [45, 290], "delayed": [45, 290]}},
            "unenhanced window is L40/W350",
        ),
        ({"categories": ["B", "A", "C", "D", "E"]}, "its categories are B, A, C, D, E, not two or more"),
        ({"categories": ["A", "F"]}, "its categories are A, F, not two or more of A, B, C, D, E"),
        ({"format": "livercore-model/1"}, "saved before livercore recorded the preprocessing"),
    ],
)
def test_load_refuses_a_contract_this_code_cannot_honour(tmp_path: Path, change: dict, sentence: str) -> None:
    path = tmp_path / "triphasic.pt"
    save_model(path, LiverNet(3), phase_model_name="triphasic", card={})
    _rewrite(path, **change)
    with pytest.raises(ModelFileError, match=sentence):
        load_model(path)


def test_load_refuses_a_damaged_file_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "broken.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(ModelFileError, match="could not be read as a livercore model file"):
        load_model(tmp_path / "broken.pt")


def test_shipped_models_carry_the_current_contract() -> None:
    from livercore.paths import default_models_dir

    for name, pm in PHASE_MODELS.items():
        saved = load_model(default_models_dir() / f"{name}.pt")
        assert saved.contract == ModelContract.current(pm)


def test_save_refuses_a_phase_model_with_other_channels(tmp_path) -> None:
    with pytest.raises(ValueError, match="channels"):
        save_model(tmp_path / "m.pt", LiverNet(3), phase_model_name="arterial", card={})


def test_load_refuses_a_file_that_is_not_a_livercore_model(tmp_path) -> None:
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="is not a livercore model file"):
        load_model(tmp_path / "other.pt")


def test_a_model_trained_without_a_category_knows_only_the_others(tmp_path: Path) -> None:
    """A site cohort without C: the file's contract lists A, B, D, E; loaded, C gets probability 0
    (after any temperature), never the top category, and the analysis says which it knows."""
    from livercore.analysis import analyse_crops, load_models

    torch.manual_seed(0)
    net = LiverNet(3)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 9.0, 0.0, 0.0]))  # C would win by far
    net.know_only(["A", "B", "D", "E"])
    save_model(tmp_path / "triphasic.pt", net, phase_model_name="triphasic", card={})
    saved = load_model(tmp_path / "triphasic.pt")
    assert saved.contract.categories == ("A", "B", "D", "E")
    assert [c.value for c in saved.net.known_categories] == ["A", "B", "D", "E"]
    crops = np.random.default_rng(0).integers(0, 256, (3, 70, 70), dtype=np.uint8)
    models = load_models(tmp_path)
    result = analyse_crops(crops, models, cam_method="GradCAM", cam_target="C").results["triphasic"]
    assert result.probabilities[2] == 0.0 and result.predicted.value != "C"
    assert abs(float(result.probabilities.sum()) - 1.0) < 1e-5
    assert [c.value for c in result.categories] == ["A", "B", "D", "E"]
    assert result.cam_target is not None and result.cam_target.value != "C"  # a CAM for one it knows
    assert result.cam is not None and float(result.cam.max()) > 0
