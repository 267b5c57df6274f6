"""The paper's network: [conv, conv, max-pool] x 3, then three fully connected layers.

Yasaka et al. give the layer pattern but not the filter counts, kernels or widths (their
appendix is unavailable to us); `NetConfig` records the choices, each with its reason.

Input: a float32 tensor (B, C, 70, 70) in [0, 1] (the 8-bit windowed phases / 255, `as_input`),
channels in the phase-model's order. The network centres it itself (minus 0.5), so every caller
(training, prediction, grad-cam) feeds the same [0, 1] images that a viewer would show.

A saved model carries its contract (`ModelContract`, as torchxrayvision's and timm's models
carry their labels and preprocessing): categories, phases, crop size, windows and the field of
view rule it was trained on. `load_model` refuses a file whose contract this code's
preprocessing does not honour, with a sentence: the field of view changed once already (twice
the lesion box -> a fixed 64 mm), and an old model fed the new crops would answer silently wrong.
Since livercore-model/3 a file also carries what `livercore study ship` fits on the validation
cohort: its temperature (livercore.calibration) and out-of-distribution statistics
(livercore.ood); a /2 file loads without them, and says so (`SavedModel.notes`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from livercore import preprocess
from livercore.calibration import TemperatureScaling
from livercore.errors import InputError
from livercore.ood import OODStatistics
from livercore.vocab import CATEGORIES, PHASE_MODELS, PHASES, Category, PhaseModel

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# Bumped whenever the saved layout changes (2: the contract is saved; 3: the temperature and the
# out-of-distribution statistics are saved). A /2 file still loads, uncalibrated and unchecked.
FORMAT = "livercore-model/3"
READABLE_FORMATS = ("livercore-model/2", FORMAT)
# The logit offset of a category the model does not know (its training cohort had none): its
# probability is exp(-10000) = 0 after any temperature, in float16 and bfloat16 too.
ABSENT_LOGIT = -1e4


@dataclass(frozen=True)
class NetConfig:
    filters: tuple[int, int, int] = (16, 32, 64)  # measured lean net: 4x cheaper than 32/64/128
    kernel_size: int = 3  # 70x70 crops: 3x3 pairs give 5x5 fields per block at a third the cost
    padding: int = 1  # keeps size within a block, so only the pools shrink 70 -> 35 -> 17 -> 8
    hidden: tuple[int, int] = (256, 64)  # two hidden FC layers + the output = the paper's three
    dropout: float = 0.5  # the paper used dropout; 0.5 is the classic rate before FC layers
    batch_norm: bool = False  # the paper (Chainer 1.18) used none; Adam trains 6 convs without it
    input_shift: float = 0.5  # centres [0, 1] inputs on 0, which Adam without BN likes better
    image_size: int = preprocess.CROP_SIZE  # the paper resized every capture to 70 x 70 pixels
    num_classes: int = len(CATEGORIES)  # one score per category A-E; the highest is the diagnosis


def _conv_block(in_ch: int, out_ch: int, cfg: NetConfig) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for c_in in (in_ch, out_ch):
        layers.append(nn.Conv2d(c_in, out_ch, cfg.kernel_size, padding=cfg.padding))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.MaxPool2d(2))
    return layers


class LiverNet(nn.Module):
    """Six 3x3 convolutions in three pooled blocks, then three fully connected layers.

    `forward(x)`: x (B, in_channels, 70, 70) float32 in [0, 1] -> logits (B, 5), A..E.
    """

    category_offset: torch.Tensor  # a buffer (register_buffer below)

    def __init__(self, in_channels: int, config: NetConfig | None = None) -> None:
        super().__init__()
        cfg = config or NetConfig()
        self.config = cfg
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise((in_channels, *cfg.filters)):
            layers += _conv_block(c_in, c_out, cfg)
        self.features = nn.Sequential(*layers)
        side = cfg.image_size
        for _ in cfg.filters:
            side //= 2
        widths = (cfg.filters[-1] * side * side, *cfg.hidden)
        head: list[nn.Module] = [nn.Flatten()]
        for w_in, w_out in itertools.pairwise(widths):
            head += [nn.Linear(w_in, w_out), nn.ReLU(), nn.Dropout(cfg.dropout)]
        head.append(nn.Linear(widths[-1], cfg.num_classes))
        self.head = nn.Sequential(*head)
        # Added to the logits: 0 for the categories the model knows, ABSENT_LOGIT for those its
        # training cohort lacked (know_only), so they never get probability. Not saved in the
        # weights: the file's contract lists the categories, and load_model applies them.
        self.register_buffer("category_offset", torch.zeros(cfg.num_classes), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):  # He init keeps a BN-free ReLU net's signal
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]  # both layer types have a bias

    def know_only(self, categories: Sequence[str]) -> LiverNet:
        """Give the outputs of categories not in `categories` (values "A".."E") no probability
        from now on: a model trained on a cohort without them (its contract's categories)."""
        known = {str(getattr(c, "value", c)) for c in categories}
        offset = [0.0 if c.value in known else ABSENT_LOGIT for c in CATEGORIES[: self.config.num_classes]]
        self.category_offset.copy_(torch.tensor(offset))
        return self

    @property
    def known_categories(self) -> tuple[Category, ...]:
        """The categories this network gives probability to (all five unless know_only)."""
        offset = self.category_offset.detach().cpu().tolist()
        return tuple(c for c, o in zip(CATEGORIES, offset, strict=False) if o == 0.0)

    @property
    def target_layer(self) -> nn.Module:
        """The activation after the last convolution: grad-cam's `target_layers=[...]`."""
        last_conv = max(i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d))
        return next(m for m in list(self.features)[last_conv:] if isinstance(m, nn.ReLU))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 70, 70) in [0, 1] -> feature maps (B, filters[-1], 8, 8)."""
        return self.features(x - self.config.input_shift)

    def forward_head(self, x: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Feature maps (B, filters[-1], 8, 8) -> logits (B, 5), or with `pre_logits` the
        penultimate layer (B, hidden[-1]): the last hidden layer after its ReLU (and dropout,
        inactive in eval mode), which livercore.ood measures distances in."""
        layers = list(self.head)
        for layer in layers[:-1]:
            x = layer(x)
        return x if pre_logits else layers[-1](x) + self.category_offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B, C, 70, 70) in [0, 1] -> logits (B, 5) and, from the same pass, the features
        livercore.ood measures distances in: "penultimate" (B, hidden[-1]), the last hidden layer
        after its ReLU, and "convolutional" (B, 2 * sum(filters)), the mean and SD over positions
        of every channel of each convolutional block's pooled output."""
        h = x - self.config.input_shift
        means, sds = [], []
        for layer in self.features:
            h = layer(h)
            if isinstance(layer, nn.MaxPool2d):
                sd, mean = torch.std_mean(h.flatten(2), dim=2)
                means.append(mean)
                sds.append(sd)
        penultimate = self.forward_head(h, pre_logits=True)
        logits = self.head[-1](penultimate) + self.category_offset
        return logits, {"penultimate": penultimate, "convolutional": torch.cat(means + sds, dim=1)}


class TemperatureScaled(nn.Module):
    """A network with its logits divided by a temperature: softmax of its output is the
    calibrated probability (livercore.calibration). Shares the network's parameters."""

    def __init__(self, net: LiverNet, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature


@dataclass(frozen=True)
class ModelContract:
    """What a model was trained on and so must be fed: saved in its file, checked on loading."""

    categories: tuple[str, ...]  # output order, e.g. ("A", "B", "C", "D", "E")
    phases: tuple[str, ...]  # input channel order
    crop_size: int  # pixels per side of each channel
    windows: dict[str, tuple[float, float]]  # phase -> (level, width) in HU, before 8 bits
    field_mm: float  # preprocess.FIELD_MM
    field_factor: float  # preprocess.FIELD_FACTOR
    field_factor_unscaled: float  # preprocess.FIELD_FACTOR_UNSCALED
    input_scale: str = "uint8 / 255"  # how the 8-bit crops become the network's [0, 1] input

    @classmethod
    def current(cls, phase_model: PhaseModel, categories: Sequence[str] | None = None) -> ModelContract:
        """The contract this code's preprocessing produces for a phase-model, for a model that
        knows `categories` (values, default all five: fewer when its training cohort lacked some)."""
        known = {str(getattr(c, "value", c)) for c in categories} if categories is not None else None
        return cls(
            categories=tuple(c.value for c in CATEGORIES if known is None or c.value in known),
            phases=tuple(p.value for p in phase_model.phases),
            crop_size=preprocess.CROP_SIZE,
            windows={p.value: (p.window.level, p.window.width) for p in phase_model.phases},
            field_mm=preprocess.FIELD_MM,
            field_factor=preprocess.FIELD_FACTOR,
            field_factor_unscaled=preprocess.FIELD_FACTOR_UNSCALED,
        )

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        data = json.loads(text)
        return cls(
            categories=tuple(data["categories"]),
            phases=tuple(data["phases"]),
            crop_size=int(data["crop_size"]),
            windows={k: (float(v[0]), float(v[1])) for k, v in data["windows"].items()},
            field_mm=float(data["field_mm"]),
            field_factor=float(data["field_factor"]),
            field_factor_unscaled=float(data["field_factor_unscaled"]),
            input_scale=str(data["input_scale"]),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def field_text(self) -> str:
        return (
            f"a {self.field_mm:g} mm field ({self.field_factor:g} x larger lesions, "
            f"{self.field_factor_unscaled:g} x the box without a pixel size)"
        )

    def mismatches(self, phase_model: PhaseModel) -> list[str]:
        """What of this contract the current preprocessing does not honour, in words."""
        now = ModelContract.current(phase_model, self.categories)
        out = []
        if self.categories != now.categories or len(self.categories) < 2:
            every = ", ".join(c.value for c in CATEGORIES)
            out.append(
                f"its categories are {', '.join(self.categories)}, not two or more of {every} in order"
            )
        if self.phases != now.phases:
            out.append(f"its phases are {', '.join(self.phases)}, not {', '.join(now.phases)}")
        if self.crop_size != now.crop_size:
            out.append(
                f"it takes {self.crop_size} x {self.crop_size} crops, not {now.crop_size} x {now.crop_size}"
            )
        for phase, (level, width) in self.windows.items():
            if now.windows.get(phase) != (level, width):
                out.append(f"its {phase} window is L{level:g}/W{width:g}, not {_window_text(now, phase)}")
        fields = (self.field_mm, self.field_factor, self.field_factor_unscaled)
        if fields != (now.field_mm, now.field_factor, now.field_factor_unscaled):
            out.append(f"it was trained on crops of {self.field_text()}, not {now.field_text()}")
        if self.input_scale != now.input_scale:
            out.append(f"its input scale is {self.input_scale!r}, not {now.input_scale!r}")
        return out


def _window_text(contract: ModelContract, phase: str) -> str:
    window = contract.windows.get(phase)
    return f"L{window[0]:g}/W{window[1]:g}" if window else "absent"


class ModelFileError(InputError):
    """A model file that this livercore cannot use, with the reason in a sentence."""


def as_input(x_uint8: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, C, H, W) or (C, H, W) uint8 crops -> float32 (N, C, H, W) in [0, 1] on `device`: the
    network's input (ModelContract.input_scale)."""
    x = np.ascontiguousarray(x_uint8)
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 crops, got {x.dtype}")
    t = torch.from_numpy(x[None] if x.ndim == 3 else x).to(device)
    return t.float() / 255


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, 5) logits -> category probabilities (N, 5), float32."""
    return torch.softmax(logits.float(), dim=1)


def select_channels(x: ArrayT, phase_model: PhaseModel) -> ArrayT:
    """The phase-model's channels of triphasic images.

    x: (..., 3, H, W), channels in `vocab.PHASES` order (unenhanced, arterial, delayed), numpy
    or torch. Returns (..., phase_model.in_channels, H, W) in the phase-model's order (a copy).
    """
    if x.shape[-3] != len(PHASES):
        raise ValueError(f"expected {len(PHASES)} phase channels at axis -3, got shape {x.shape}")
    index = [PHASES.index(p) for p in phase_model.phases]
    return x[..., index, :, :]


@torch.inference_mode()
def predict_proba(model: LiverNet, x_uint8: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Category probabilities (N, 5), A..E, for x_uint8 (N, C, 70, 70) uint8 windowed phases.

    C must already be the model's channels (see `select_channels`). Runs in eval mode, without
    gradients, on the model's device; the model's train/eval mode is restored afterwards.
    """
    if x_uint8.dtype != np.uint8 or x_uint8.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {x_uint8.dtype} {x_uint8.shape}")
    if x_uint8.shape[1] != model.in_channels:
        raise ValueError(f"model takes {model.in_channels} channels, got {x_uint8.shape[1]}")
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    try:
        out = []
        for start in range(0, len(x_uint8), batch_size):
            out.append(probabilities(model(as_input(x_uint8[start : start + batch_size], device))).cpu())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
    return torch.cat(out).numpy()


@torch.inference_mode()
def predict_logits_and_features(
    model: LiverNet, x_uint8: np.ndarray, *, batch_size: int = 256
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits (N, 5) A..E and the OOD feature spaces {space: (N, D)} (LiverNet.forward_with_features),
    float32, of x_uint8 (N, C, 70, 70) uint8 windowed phases (C the model's channels), from one
    forward pass; eval mode, the model's device, its train/eval mode restored. softmax(logits)
    is predict_proba's answer."""
    if x_uint8.dtype != np.uint8 or x_uint8.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {x_uint8.dtype} {x_uint8.shape}")
    if x_uint8.shape[1] != model.in_channels:
        raise ValueError(f"model takes {model.in_channels} channels, got {x_uint8.shape[1]}")
    device, was_training = next(model.parameters()).device, model.training
    model.eval()
    logits: list[torch.Tensor] = []
    features: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, max(len(x_uint8), 1), batch_size):
            out, spaces = model.forward_with_features(as_input(x_uint8[start : start + batch_size], device))
            logits.append(out.float().cpu())
            for k, v in spaces.items():
                features.setdefault(k, []).append(v.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits).numpy(), {k: torch.cat(v).numpy() for k, v in features.items()}


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict's names, dtypes, shapes and bytes: equal digests, equal
    weights. Model cards record it, so a re-saved file can prove its weights unchanged."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def stored_weights_digest(path: str | Path) -> str:
    """weights_digest of the tensors stored in a model file (float16, as saved)."""
    return weights_digest(torch.load(Path(path), map_location="cpu", weights_only=True)["state_dict"])


def _statistics_entries(calibration: TemperatureScaling | None, ood: OODStatistics | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if calibration is not None:
        out["calibration"] = json.dumps(calibration.to_dict())
    if ood is not None:
        state = ood.to_state()
        out["ood"] = {
            "meta": json.dumps(state["meta"]),
            "distances": {
                space: {
                    "class_means": torch.from_numpy(np.ascontiguousarray(d["class_means"], np.float64)),
                    "precision": torch.from_numpy(np.ascontiguousarray(d["precision"], np.float64)),
                    "meta": json.dumps(d["meta"]),
                }
                for space, d in state["distances"].items()
            },
        }
    return out


def _read_statistics(blob: dict[str, Any]) -> OODStatistics | None:
    if "ood" not in blob:
        return None
    stored = blob["ood"]
    return OODStatistics.from_state(
        {
            "meta": json.loads(stored["meta"]),
            "distances": {
                space: {
                    "class_means": d["class_means"].cpu().numpy(),
                    "precision": d["precision"].cpu().numpy(),
                    "meta": json.loads(d["meta"]),
                }
                for space, d in stored["distances"].items()
            },
        }
    )


def save_model(
    path: str | Path,
    model: LiverNet,
    *,
    phase_model_name: str,
    card: dict,
    calibration: TemperatureScaling | None = None,
    ood: OODStatistics | None = None,
    categories: Sequence[str] | None = None,
) -> None:
    """Write weights (float16, ~2.3 MB for the default net), NetConfig, the model's contract
    (this code's preprocessing for its phase-model), a model card and, when given, its
    temperature and out-of-distribution statistics (`add_statistics` adds them later).

    Config, contract, card and calibration go in as JSON strings and the OOD statistics as
    float64 tensors, so `torch.load(weights_only=True)` reads the file.
    """
    phase_model = PHASE_MODELS[phase_model_name]
    if phase_model.in_channels != model.in_channels:
        raise ValueError(
            f"{phase_model_name} has {phase_model.in_channels} channels, the model {model.in_channels}"
        )
    state = {
        k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    torch.save(
        {
            "format": FORMAT,
            "phase_model": phase_model_name,
            "config": json.dumps(asdict(model.config)),
            "contract": ModelContract.current(
                phase_model,
                categories if categories is not None else [c.value for c in model.known_categories],
            ).to_json(),
            "card": json.dumps(card),
            "state_dict": state,
            **_statistics_entries(calibration, ood),
        },
        Path(path),
    )


def add_statistics(
    path: str | Path,
    out_path: str | Path,
    *,
    calibration: TemperatureScaling,
    ood: OODStatistics,
    card: dict | None = None,
) -> None:
    """Re-save the model file `path` as `out_path` (the same path is fine) in this FORMAT with
    a temperature and OOD statistics, and `card` when given; its weights are written back as
    read, tensor for tensor (no retraining, no re-rounding)."""
    load_model(path)  # refuses, with its sentence, a file this code cannot use
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    blob.update(format=FORMAT, **_statistics_entries(calibration, ood))
    if card is not None:
        blob["card"] = json.dumps(card)
    torch.save(blob, Path(out_path))


@dataclass(frozen=True)
class SavedModel:
    """A model file, loaded: the network in eval mode, its phase-model, contract and card, its
    temperature (identity for a file without one) and OOD statistics (None without), and notes:
    sentences on what the file lacks."""

    net: LiverNet
    phase_model: PhaseModel
    contract: ModelContract
    card: dict[str, Any]
    calibration: TemperatureScaling = field(default_factory=TemperatureScaling)
    ood: OODStatistics | None = None
    notes: tuple[str, ...] = ()


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> SavedModel:
    """Read a `save_model` file onto map_location; ModelFileError (a sentence) when the file is
    not a livercore model, is of a format before livercore-model/2, or its contract is not what
    this code's preprocessing produces. A livercore-model/2 file loads with temperature 1 and no
    OOD statistics, and a note saying so."""
    name = Path(path).name
    try:
        blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise ModelFileError(f"{name} could not be read as a livercore model file.") from err
    if not isinstance(blob, dict) or not str(blob.get("format", "")).startswith("livercore-model/"):
        raise ModelFileError(f"{name} is not a livercore model file ({FORMAT}).")
    if blob["format"] not in READABLE_FORMATS:
        raise ModelFileError(
            f"{name} is a {blob['format']} file, saved before livercore recorded the preprocessing a "
            f"model was trained on; this version reads {' and '.join(READABLE_FORMATS)}. Retrain it, or "
            "re-save it with the livercore version that trained it."
        )
    phase_model = PHASE_MODELS.get(str(blob.get("phase_model")))
    if phase_model is None:
        raise ModelFileError(f"{name} is for an unknown phase-model {blob.get('phase_model')!r}.")
    contract = ModelContract.from_json(blob["contract"])
    problems = contract.mismatches(phase_model)
    if problems:
        raise ModelFileError(
            f"{name} cannot be used by this livercore: {'; '.join(problems)}. It would be fed inputs "
            "unlike those it was trained on."
        )
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(blob["config"]).items()
    }
    model = LiverNet(phase_model.in_channels, NetConfig(**fields))
    model.load_state_dict(blob["state_dict"])  # copies float16 into the float32 parameters
    model.know_only(contract.categories)
    calibration = (
        TemperatureScaling.from_dict(json.loads(blob["calibration"])) if "calibration" in blob else None
    )
    ood = _read_statistics(blob)
    notes = []
    if calibration is None:
        notes.append(
            f"{name} carries no temperature ({blob['format']}): its probabilities are the network's "
            "own, not calibrated."
        )
    if ood is None or not ood.thresholded:
        notes.append(
            f"{name} carries no out-of-distribution statistics ({blob['format']}): no feature-distance "
            "check is made on its inputs (re-ship it with `livercore study ship`)."
        )
    return SavedModel(
        model.to(map_location).eval(),
        phase_model,
        contract,
        json.loads(blob["card"]),
        calibration or TemperatureScaling(),
        ood,
        tuple(notes),
    )
