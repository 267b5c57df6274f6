"""Class activation maps (grad-cam) for the phase-models.

Two ways through pytorch-grad-cam, with the same maps bit for bit (tests/test_analysis.py):

- `class_activation_map`, the library's documented use: a CAM object built for one call, as a
  context manager, so its hooks are released after it. For scripts and one-off maps.
- `CamEngine`, what the app's analysis uses: each model's CAM objects are built once, on a
  private copy of its network, so the set-up (the library's hooks, its test-time-augmentation
  list) is paid once and the shared network never carries a hook. The copy's forward pass also
  gives the logits and the OOD features (LiverNet.forward_with_features), so one forward and
  one backward make a model's probabilities, features and CAM.

Callers that share a model or an engine between threads must hold `analysis.MODEL_LOCK` (hooks
on a shared model from two threads corrupt each other's maps: ../shared/docs/hardening.md).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from livercore.model import LiverNet, as_input

# The app offers those of vocab.CAM_METHODS; LayerCAM and ScoreCAM are for the benchmarks.
CAM_METHODS = {
    "GradCAM": GradCAM,
    "GradCAM++": GradCAMPlusPlus,
    "EigenCAM": EigenCAM,
    "LayerCAM": LayerCAM,
    "ScoreCAM": ScoreCAM,
}


def class_activation_map(
    model: LiverNet, x_uint8: np.ndarray, target: int, method: str = "GradCAM"
) -> np.ndarray:
    """CAM (H, W) float32 in [0, 1] of one input (C, 70, 70) uint8 for category index `target`.

    EigenCAM ignores the target (it is the first principal component of the activations).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    x = as_input(x_uint8, next(model.parameters()).device)
    model.eval()
    with CAM_METHODS[method](model=model, target_layers=[model.target_layer]) as cam:
        if method == "ScoreCAM":
            cam.batch_size = 32
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(target))])
    return np.nan_to_num(maps[0]).astype(np.float32)


class _WithFeatures(nn.Module):
    """A network whose forward returns its logits and keeps, from the same pass, the OOD
    features (LiverNet.forward_with_features) for the caller to read."""

    def __init__(self, net: LiverNet) -> None:
        super().__init__()
        self.net = net
        self.features: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, self.features = self.net.forward_with_features(x)
        return logits


@dataclass(frozen=True)
class CamPass:
    """One input through a CamEngine: what its forward pass and its CAM gave."""

    logits: np.ndarray  # (5,) float32, A..E (the network's, category offsets included)
    features: dict[str, np.ndarray]  # the OOD feature spaces {space: (1, D)}, float32
    cam: np.ndarray | None  # (H, W) float32 in [0, 1]; None without a method
    target: int  # the category index `choose` gave for these logits (the CAM's, with one)


class _Chosen:
    """A grad-cam target whose category is chosen from the model's own output when the
    library calls it: the score model_output[choose(logits)], as ClassifierOutputTarget(that
    category) would give it, so the CAM's category can follow the prediction of the same pass."""

    def __init__(self, choose: Callable[[np.ndarray], int]) -> None:
        self.choose = choose
        self.index: int | None = None

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        self.index = int(self.choose(model_output.detach().float().cpu().numpy()))
        return model_output[self.index]


class CamEngine:
    """One model's CAMs with the set-up paid once: a private copy of the network (the shared
    one never carries hooks) and, per method, a pytorch-grad-cam object built on first use.
    Not thread-safe: hold `analysis.MODEL_LOCK`. `engine_for` keeps one per network."""

    def __init__(self, net: LiverNet) -> None:
        self.net = copy.deepcopy(net).eval()
        self.stamp = _stamp(net)
        self._model = _WithFeatures(self.net)
        self._cams: dict[str, BaseCAM] = {}
        # One set of hooks for all methods: each CAM object's own would fire at every other's
        # forward pass too, and keep what it caught until its next call.
        self._hooks = ActivationsAndGradients(self._model, [self.net.target_layer], None)

    def _cam(self, method: str) -> BaseCAM:
        if method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
        if method not in self._cams:
            cam = CAM_METHODS[method](model=self._model, target_layers=[self.net.target_layer])
            cam.activations_and_grads.release()
            cam.activations_and_grads = self._hooks
            if method == "ScoreCAM":
                cam.batch_size = 32
            self._cams[method] = cam
        return self._cams[method]

    def run(self, x_uint8: np.ndarray, method: str | None, choose: Callable[[np.ndarray], int]) -> CamPass:
        """Logits, OOD features and the CAM of one input (C, 70, 70) uint8 from one forward pass
        (and one backward for the gradient methods). The CAM is for the category index that
        `choose` gives for the pass's logits (5,); the map is class_activation_map's for that
        category, bit for bit. Without a method, one forward pass in inference mode."""
        x = as_input(x_uint8, next(self.net.parameters()).device)
        if method is None:
            try:
                with torch.inference_mode():
                    logits = self._model(x)[0].float().numpy()
                return CamPass(logits, _numpy(self._model.features), None, int(choose(logits)))
            finally:
                self._hooks.clear()
                self._model.features = {}
        cam = self._cam(method)
        target = _Chosen(choose)
        try:
            maps = cam(input_tensor=x, targets=[target])
            logits = cam.outputs.detach()[0].float().numpy()
            chosen = target.index if target.index is not None else int(choose(logits))  # EigenCAM: no target
            return CamPass(
                logits, _numpy(self._model.features), np.nan_to_num(maps[0]).astype(np.float32), chosen
            )
        finally:  # this call's graph and tensors go now, not at the next call
            self._hooks.clear()
            cam.outputs = None
            self._model.features = {}


def _numpy(features: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in features.items()}


def _stamp(net: nn.Module) -> tuple[tuple[int, int], ...]:
    """Which tensors a network holds and how often each was changed in place (Tensor._version):
    a copy made at another stamp is stale."""
    return tuple((id(t), t._version) for t in (*net.parameters(), *net.buffers()))


_ENGINES: weakref.WeakKeyDictionary[nn.Module, CamEngine] = weakref.WeakKeyDictionary()


def engine_for(net: LiverNet) -> CamEngine:
    """The CamEngine of a network: made on first use, made anew when the network's weights or
    buffers changed since (know_only, a test's edit); gone with the network. Hold
    `analysis.MODEL_LOCK`."""
    engine = _ENGINES.get(net)
    if engine is None or engine.stamp != _stamp(net):
        engine = _ENGINES[net] = CamEngine(net)
    return engine


def lesion_energy_fraction(cam: np.ndarray, lesion_mask: np.ndarray) -> float:
    """Energy-based pointing game: the share of the CAM's total energy inside the lesion mask."""
    total = float(cam.sum())
    return float(cam[lesion_mask].sum() / total) if total > 0 else 0.0
