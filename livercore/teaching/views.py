"""What the library and quiz pages show of a teaching case: a lesion-centred view of each phase
and its time-attenuation curve, measured on the case's own images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from livercore.measure import Measurements, locate_aorta, measure_case
from livercore.preprocess import crop_square, window_to_uint8
from livercore.review_case import ReviewCase
from livercore.vocab import PHASES, Phase

VIEW_FIELD_FACTOR = 2.5  # lesion-centred view: this many lesion diameters ...
VIEW_MIN_FIELD_MM = 60.0  # ... and never less than this (small nodules keep their surroundings)
VIEW_PX = 240  # side of the displayed view (pixels)


def lesion_view(case: ReviewCase, phase: Phase, *, size_px: int = VIEW_PX) -> np.ndarray:
    """(size_px, size_px) uint8: one phase in the paper's window, a lesion-centred field of
    VIEW_FIELD_FACTOR lesion diameters (at least VIEW_MIN_FIELD_MM), enlarged bicubically."""
    image = case.images[phase]
    box = case.lesion_boxes.get(phase)
    sp = case.spacing_mm.get(phase) or 1.0
    u8 = window_to_uint8(image, phase.window) if case.is_hu else np.asarray(image, np.uint8)
    if box is None:
        centre, side = (image.shape[0] / 2, image.shape[1] / 2), min(image.shape)
    else:
        centre = (box.row, box.col)
        side = round(max(VIEW_FIELD_FACTOR * max(box.height, box.width), VIEW_MIN_FIELD_MM / sp))
    crop = crop_square(u8, centre[0], centre[1], max(int(side), 2))
    return np.asarray(Image.fromarray(crop).resize((size_px, size_px), Image.Resampling.BICUBIC))


def view_field_mm(case: ReviewCase) -> float:
    """Side (mm) of the lesion-centred view of lesion_view."""
    box = case.lesion_boxes.get(Phase.ARTERIAL)
    sp = case.spacing_mm.get(Phase.ARTERIAL) or 1.0
    if box is None:
        return float(case.images[Phase.ARTERIAL].shape[0] * sp)
    return max(VIEW_FIELD_FACTOR * max(box.height, box.width) * sp, VIEW_MIN_FIELD_MM)


def time_attenuation(case: ReviewCase) -> Measurements:
    """Lesion, liver and aorta ROI means (HU) over U/A/D measured on the case's own images: the
    lesion box's central ellipse, the liver ROI (or a ring around the lesion) and the aorta
    (the case's, or found automatically)."""
    aorta = dict(case.aorta_centres)
    if not aorta:
        centre = locate_aorta(case.images, case.spacing_mm.get(Phase.ARTERIAL))
        aorta = dict.fromkeys(PHASES, centre) if centre is not None else {}
    return measure_case(case.images, case.spacing_mm, case.lesion_boxes, case.liver_centres, aorta)
