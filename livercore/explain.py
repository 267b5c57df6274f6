"""Class activation maps (grad-cam) for the phase-models.

Every CAM goes through pytorch-grad-cam as a context manager, so its hooks are released after
each call; callers that share a model between threads must hold `analysis.MODEL_LOCK` (hooks on
a shared model from two threads corrupt each other's maps: ../shared/docs/hardening.md).
"""

from __future__ import annotations

import numpy as np
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

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


def lesion_energy_fraction(cam: np.ndarray, lesion_mask: np.ndarray) -> float:
    """Energy-based pointing game: the share of the CAM's total energy inside the lesion mask."""
    total = float(cam.sum())
    return float(cam[lesion_mask].sum() / total) if total > 0 else 0.0
