"""Training augmentation as the paper: rotation, parallel shift, strong enlargement, added noise.

The paper made 52 augmented sets of each of its 1068 training image sets (55,536 in all); its
recipe is in an appendix we do not have. We draw the variants on the fly instead of storing
them: one training session makes `TrainConfig.variants_per_image` (52) passes over the training
set and each pass shows every image set through a fresh random transform, so a session sees 52
random variants of each training image set, 55,536 images for the paper's cohort.

Everything runs on batched tensors on the training device (one `affine_grid` + `grid_sample`
per batch) and draws from an explicit `torch.Generator`, so a seed fixes every variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation_deg: float = 180.0  # a lesion has no preferred orientation in an axial crop
    max_shift: float = 0.1  # fraction of the side (7 px): the lesion stays in view, off-centre
    min_zoom: float = 1.0  # the paper only enlarged; shrinking would pad the crop with no data
    max_zoom: float = 1.5  # "strong enlargement"; spans the test crops' 1.19-1.29x (500 of 594-644 px)
    max_noise_std: float = 0.03  # in [0, 1] units: ~9 HU at width 290, near the scanners' SD 11-13
    padding_mode: Literal["zeros", "border", "reflection"] = "reflection"  # corners mirror tissue


def random_affine(
    n: int, config: AugmentConfig, generator: torch.Generator, *, device: torch.device
) -> torch.Tensor:
    """Affine matrices (n, 2, 3) for `F.affine_grid`: output pixel -> input pixel, normalised.

    Each image gets a rotation in +/- max_rotation_deg, a zoom in [min_zoom, max_zoom] (> 1
    enlarges) and a shift in +/- max_shift of the side along each axis, drawn uniformly.
    """
    u = torch.rand(n, 4, generator=generator, device=device)
    angle = math.radians(config.max_rotation_deg) * (2 * u[:, 0] - 1)
    zoom = config.min_zoom + (config.max_zoom - config.min_zoom) * u[:, 1]
    shift = 2 * config.max_shift * (2 * u[:, 2:] - 1)  # normalised coordinates span 2 per side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def augment_batch(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """A random variant of each image set: x (B, C, H, W) float in [0, 1] -> same shape.

    All phases of one image set share one geometric transform (they show the same lesion);
    the noise is drawn per pixel and phase, with a standard deviation per image set in
    [0, max_noise_std]. The result is clamped to [0, 1], the range of a windowed image.
    `generator` must live on x's device.
    """
    n = x.shape[0]
    theta = random_affine(n, config, generator, device=x.device).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=config.padding_mode, align_corners=False)
    std = config.max_noise_std * torch.rand(n, 1, 1, 1, generator=generator, device=x.device)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return out.add_(noise.mul_(std)).clamp_(0.0, 1.0)
