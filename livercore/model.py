"""The paper's network: [conv, conv, max-pool] x 3, then three fully connected layers.

Yasaka et al. give the layer pattern but not the filter counts, kernels or widths (their
appendix is unavailable to us); `NetConfig` records the choices, each with its reason.

Input contract: a float32 tensor (B, C, 70, 70) in [0, 1] (the 8-bit windowed phases / 255),
channels in the phase-model's order. The network centres it itself (minus 0.5), so every caller
(training, prediction, grad-cam) feeds the same [0, 1] images that a viewer would show.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from livercore.vocab import CATEGORIES, PHASE_MODELS, PHASES, PhaseModel

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

FORMAT = "livercore-model/1"  # bumped whenever the saved layout changes


@dataclass(frozen=True)
class NetConfig:
    filters: tuple[int, int, int] = (16, 32, 64)  # measured lean net: 4x cheaper than 32/64/128
    kernel_size: int = 3  # 70x70 crops: 3x3 pairs give 5x5 fields per block at a third the cost
    padding: int = 1  # keeps size within a block, so only the pools shrink 70 -> 35 -> 17 -> 8
    hidden: tuple[int, int] = (256, 64)  # two hidden FC layers + the output = the paper's three
    dropout: float = 0.5  # the paper used dropout; 0.5 is the classic rate before FC layers
    batch_norm: bool = False  # the paper (Chainer 1.18) used none; Adam trains 6 convs without it
    input_shift: float = 0.5  # centres [0, 1] inputs on 0, which Adam without BN likes better
    image_size: int = 70  # the paper resized every capture to 70 x 70 pixels
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
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):  # He init keeps a BN-free ReLU net's signal
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)  # type: ignore[arg-type]  # both layer types have a bias

    @property
    def target_layer(self) -> nn.Module:
        """The activation after the last convolution: grad-cam's `target_layers=[...]`."""
        last_conv = max(i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d))
        return next(m for m in list(self.features)[last_conv:] if isinstance(m, nn.ReLU))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 70, 70) in [0, 1] -> feature maps (B, filters[-1], 8, 8)."""
        return self.features(x - self.config.input_shift)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps (B, filters[-1], 8, 8) -> logits (B, 5)."""
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


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
            xb = torch.from_numpy(x_uint8[start : start + batch_size]).to(device)
            out.append(torch.softmax(model(xb.float() / 255), dim=1).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, len(CATEGORIES)), dtype=np.float32)
    return torch.cat(out).numpy()


def save_model(path: str | Path, model: LiverNet, *, phase_model_name: str, card: dict) -> None:
    """Write weights (float16, ~2.3 MB for the default net), NetConfig and a model card.

    Config and card go in as JSON strings, so `torch.load(weights_only=True)` reads the file.
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
            "card": json.dumps(card),
            "state_dict": state,
        },
        Path(path),
    )


def load_model(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[LiverNet, PhaseModel, dict[str, Any]]:
    """Read a `save_model` file: (model in eval mode on map_location, phase-model, card)."""
    blob = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(blob["config"]).items()
    }
    config = NetConfig(**fields)
    phase_model = PHASE_MODELS[blob["phase_model"]]
    model = LiverNet(phase_model.in_channels, config)
    model.load_state_dict(blob["state_dict"])  # copies float16 into the float32 parameters
    return model.to(map_location).eval(), phase_model, json.loads(blob["card"])
