"""The paper's preprocessing, one path for training, evaluation and the app.

HU -> phase window -> 8 bits -> lesion-centred square crop -> 70 x 70 (Pillow) -> phases as
channels. The paper's radiologist captured an *enlarged view of the lesion* from the viewer,
and most of its crops (90 of 100) also showed surrounding tissue or organs. We reproduce that
with a field of view fixed in millimetres: a square of ``FIELD_MM`` (64 mm) around the lesion
centre, so the lesion is seen at its true size against the liver, vessels and organs around
it; a lesion too large for that field gets ``FIELD_FACTOR`` (1.25) times its box, so its border
stays in view.

Why fixed, not proportional to the lesion: a field that scales with the lesion tells the
network the lesion's size through the scale of everything else in the crop (noise grain,
vessels), even with the lesion painted over. The shortcut audit (phantom.md section 6) caught
exactly that with our first recipe (twice the lesion box, at least 32 mm): a triphasic model
that never saw a lesion scored 0.48 against a 0.35 largest-class share. With a fixed field the
size is only in the lesion itself (benchmarks/results/field_of_view.json).

Screen captures without a pixel size have no millimetres: their field is
``FIELD_FACTOR_UNSCALED`` (2.5) times the box, the fixed field of a 25 mm lesion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from livercore.errors import InputError
from livercore.vocab import PHASES, Phase, Window

CROP_SIZE = 70  # network input (pixels), as the paper
FIELD_MM = 64.0  # field of view (mm) around a lesion up to FIELD_MM / FIELD_FACTOR = 51 mm
FIELD_FACTOR = 1.25  # field / box side for larger lesions: their border stays in view
FIELD_FACTOR_UNSCALED = 2.5  # field / box side when the pixel size is unknown (screen captures)
FIELD_OF_VIEW_TEXT = (
    f"{CROP_SIZE} x {CROP_SIZE} pixels per phase, in the paper's windows, of a {FIELD_MM:g} mm field "
    f"around the lesion ({FIELD_FACTOR:g} times a lesion larger than {FIELD_MM / FIELD_FACTOR:.0f} mm; "
    f"{FIELD_FACTOR_UNSCALED:g} times the box for screen captures without a pixel size), so a small "
    "nodule looks small, as it does to a reader."
)
RESAMPLE = Image.Resampling.BILINEAR  # Pillow's bilinear filter antialiases when shrinking


@dataclass(frozen=True)
class LesionBox:
    """An axis-aligned box around the lesion in pixel coordinates (row/col of the centre,
    height/width in pixels), as drawn by a user or given by ground truth."""

    row: float
    col: float
    height: float
    width: float

    @classmethod
    def from_corners(cls, r0: float, c0: float, r1: float, c1: float) -> LesionBox:
        return cls((r0 + r1) / 2, (c0 + c1) / 2, abs(r1 - r0), abs(c1 - c0))

    @classmethod
    def from_center(cls, row: float, col: float, diameter_mm: float, spacing_mm: float) -> LesionBox:
        side = diameter_mm / spacing_mm
        return cls(row, col, side, side)


def window_to_uint8(hu: np.ndarray, window: Window) -> np.ndarray:
    """Map HU (H, W) through a display window to 8 bits: low -> 0, high -> 255, rounded."""
    scaled = (np.asarray(hu, np.float64) - window.low) / window.width * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def field_mm(diameter_mm: float) -> float:
    """Side (mm) of the square field of view around a lesion of this diameter (box side)."""
    return max(FIELD_MM, FIELD_FACTOR * diameter_mm)


def field_side_px(box: LesionBox, spacing_mm: float | None) -> int:
    """Side (pixels) of the square field of view around a lesion box."""
    longest = max(box.height, box.width, 1.0)
    side = field_mm(longest * spacing_mm) / spacing_mm if spacing_mm else FIELD_FACTOR_UNSCALED * longest
    return max(round(side), 2)


def crop_square(image: np.ndarray, row: float, col: float, side: int, *, fill: int = 0) -> np.ndarray:
    """A (side, side) crop centred on (row, col); parts outside the image are `fill`."""
    top = round(row - side / 2)
    left = round(col - side / 2)
    out = np.full((side, side), fill, dtype=image.dtype)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = image[r0:r1, c0:c1]
    return out


def resize_crop(crop: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Resize an 8-bit crop to (size, size) with Pillow, as the paper."""
    return np.asarray(Image.fromarray(crop).resize((size, size), RESAMPLE))


def lesion_crop_uint8(image_u8: np.ndarray, box: LesionBox, spacing_mm: float | None) -> np.ndarray:
    """(70, 70) uint8 lesion crop from an already windowed 8-bit image (H, W), e.g. a screen capture."""
    if image_u8.ndim != 2:
        raise InputError("The image must be a single grey-scale slice.")
    side = field_side_px(box, spacing_mm)
    return resize_crop(crop_square(image_u8, box.row, box.col, side))


def lesion_crop(hu: np.ndarray, phase: Phase, box: LesionBox, spacing_mm: float | None) -> np.ndarray:
    """(70, 70) uint8: one phase (H, W) in HU, windowed as the paper, cropped around the lesion."""
    return lesion_crop_uint8(window_to_uint8(hu, phase.window), box, spacing_mm)


def preprocess_case(
    hu: Mapping[Phase, np.ndarray],
    boxes: Mapping[Phase, LesionBox],
    spacing_mm: Mapping[Phase, float | None] | float | None,
    phases: Sequence[Phase] = PHASES,
) -> np.ndarray:
    """(len(phases), 70, 70) uint8: the network's input, one channel per phase in `phases` order.

    Each phase is cropped around its own lesion box: the phases are separate breath-holds and
    the lesion moves a few millimetres between them.
    """
    missing = [p.value for p in phases if p not in hu or p not in boxes]
    if missing:
        raise InputError(f"Missing phase(s) for this model: {', '.join(missing)}.")
    channels = []
    for p in phases:
        sp = spacing_mm.get(p) if isinstance(spacing_mm, Mapping) else spacing_mm
        channels.append(lesion_crop(hu[p], p, boxes[p], sp))
    return np.stack(channels)
