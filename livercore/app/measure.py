"""Region-of-interest measurements in HU and the phase plausibility check from the aorta.

Coordinates are pixel (row, col) of the (H, W) image; lengths in mm are converted with the
phase's pixel spacing. Every statistic is over the pixels of one slice, in HU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Phase

ROI_DIAMETER_MM = 10.0  # liver and aorta ROIs: a 1 cm circle, as placed in clinical reading
LESION_ROI_FRACTION = (
    0.7  # lesion ROI: the ellipse of the box shrunk to 70 %, keeps the partial-volume rim out
)
RING_GAP_MM = 3.0  # default liver ROI: a ring starting this far outside the lesion box ...
RING_WIDTH_MM = 8.0  # ... and this wide
LIVER_RING_HU = (
    -30.0,
    250.0,
)  # ring pixels outside this range (fat, air, bone, contrast-filled vessels) are dropped
# Aorta search: a round blob of aortic calibre (adult aorta 15-35 mm at liver level) that
# enhances by at least this much between the phases (the protocol's aorta: about +300 HU).
AORTA_MIN_CHANGE_HU = 120.0
AORTA_DIAMETER_MM = (12.0, 40.0)
AORTA_MIN_FILL = 0.6  # pixels / area of the bounding box's inscribed circle: round, not a crescent
# The protocol's order of aortic attenuation: arterial well above delayed, delayed above unenhanced.
ARTERIAL_OVER_DELAYED_HU = 40.0
DELAYED_OVER_UNENHANCED_HU = 15.0

Point = tuple[float, float]


@dataclass(frozen=True)
class RoiStats:
    """Mean and standard deviation (HU) of the pixels in one ROI."""

    mean_hu: float
    sd_hu: float
    n_pixels: int

    def __str__(self) -> str:
        return f"{self.mean_hu:.0f} ± {self.sd_hu:.0f}"


def disc_mask(shape: tuple[int, int], center: Point, radius_px: float) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie within radius_px of center (row, col)."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= max(radius_px, 0.5) ** 2


def lesion_mask(shape: tuple[int, int], box: LesionBox, fraction: float = LESION_ROI_FRACTION) -> np.ndarray:
    """Boolean (H, W) mask: the ellipse inscribed in the lesion box, scaled by `fraction`."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    a = max(box.height * fraction / 2, 0.75)
    b = max(box.width * fraction / 2, 0.75)
    return ((rows - box.row) / a) ** 2 + ((cols - box.col) / b) ** 2 <= 1.0


def ring_mask(shape: tuple[int, int], box: LesionBox, spacing_mm: float | None) -> np.ndarray:
    """Boolean (H, W) mask: a ring around the lesion box, RING_GAP_MM out and RING_WIDTH_MM wide."""
    sp = spacing_mm or 1.0
    inner = max(box.height, box.width) / 2 + RING_GAP_MM / sp
    outer = inner + RING_WIDTH_MM / sp
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    d2 = (rows - box.row) ** 2 + (cols - box.col) ** 2
    return (d2 > inner**2) & (d2 <= outer**2)


def roi_stats(hu: np.ndarray, mask: np.ndarray) -> RoiStats | None:
    """Mean and SD (HU, ddof=1) of hu (H, W) over mask; None when fewer than 3 pixels."""
    values = np.asarray(hu, np.float64)[mask]
    if values.size < 3:
        return None
    return RoiStats(float(values.mean()), float(values.std(ddof=1)), int(values.size))


def disc_stats(
    hu: np.ndarray, center: Point, spacing_mm: float | None, diameter_mm: float = ROI_DIAMETER_MM
) -> RoiStats | None:
    """Mean ± SD (HU) in a circle of diameter_mm (default 1 cm) around center (row, col)."""
    radius_px = diameter_mm / 2 / (spacing_mm or 1.0)
    return roi_stats(hu, disc_mask(hu.shape, center, radius_px))


def liver_ring_stats(hu: np.ndarray, box: LesionBox, spacing_mm: float | None) -> RoiStats | None:
    """Mean ± SD (HU) of the liver in a ring around the lesion, soft-tissue pixels only."""
    mask = ring_mask(hu.shape, box, spacing_mm)
    mask &= (hu >= LIVER_RING_HU[0]) & (hu <= LIVER_RING_HU[1])
    return roi_stats(hu, mask)


@dataclass(frozen=True)
class Measurements:
    """Per phase: lesion, liver and aorta mean ± SD in HU (None where not measurable)."""

    lesion: dict[Phase, RoiStats | None]
    liver: dict[Phase, RoiStats | None]
    aorta: dict[Phase, RoiStats | None]
    liver_is_ring: dict[Phase, bool]

    def rows(self) -> list[dict[str, str]]:
        """One row per structure with a 'mean ± SD' cell per phase, for a table."""
        out = []
        for what, values in (("Lesion", self.lesion), ("Liver", self.liver), ("Aorta", self.aorta)):
            label = what
            if what == "Liver" and any(self.liver_is_ring.values()):
                label = "Liver (ring around the lesion)"
            row = {"ROI": label}
            for p in PHASES:
                s = values.get(p)
                row[p.value] = str(s) if s else "—"
            out.append(row)
        return out

    def as_dict(self) -> dict[str, dict[str, dict[str, float] | None]]:
        def one(s: RoiStats | None) -> dict[str, float] | None:
            return (
                None
                if s is None
                else {"mean_hu": round(s.mean_hu, 1), "sd_hu": round(s.sd_hu, 1), "n_pixels": s.n_pixels}
            )

        return {
            what: {p.value: one(values.get(p)) for p in PHASES}
            for what, values in (("lesion", self.lesion), ("liver", self.liver), ("aorta", self.aorta))
        }


def measure_case(
    hu: Mapping[Phase, np.ndarray],
    spacing_mm: Mapping[Phase, float | None],
    boxes: Mapping[Phase, LesionBox],
    liver: Mapping[Phase, Point],
    aorta: Mapping[Phase, Point],
) -> Measurements:
    """Lesion (central ellipse of its box), liver (1 cm circle at `liver`, else a ring around the
    lesion) and aorta (1 cm circle) per phase, from (H, W) HU images."""
    lesion_s: dict[Phase, RoiStats | None] = {}
    liver_s: dict[Phase, RoiStats | None] = {}
    aorta_s: dict[Phase, RoiStats | None] = {}
    ring: dict[Phase, bool] = {}
    for p, image in hu.items():
        sp = spacing_mm.get(p)
        box = boxes.get(p)
        lesion_s[p] = roi_stats(image, lesion_mask(image.shape, box)) if box else None
        if p in liver:
            liver_s[p], ring[p] = disc_stats(image, liver[p], sp), False
        else:
            liver_s[p], ring[p] = (liver_ring_stats(image, box, sp) if box else None), box is not None
        aorta_s[p] = disc_stats(image, aorta[p], sp) if p in aorta else None
    return Measurements(lesion_s, liver_s, aorta_s, ring)


def locate_aorta(hu: Mapping[Phase, np.ndarray], spacing_mm: float | None) -> Point | None:
    """The aorta's centre (row, col) from three phases (H, W) in HU of one table position.

    The aorta is the round blob of aortic calibre whose attenuation changes most between the
    phases (about 300 HU from unenhanced to arterial); bone, fat and unenhanced organs do not
    change, kidneys enhance as a rim and the spleen is too large. The phases' labels are not
    used, so the result can check them. None when the slices differ in size or no such blob
    exists (slices from different levels or patients, or no contrast given).
    """
    images = [np.asarray(v, np.float32) for v in hu.values()]
    if len(images) < 2 or len({i.shape for i in images}) > 1:
        return None
    smooth = [ndimage.uniform_filter(i, 3) for i in images]
    change = np.max(smooth, axis=0) - np.min(smooth, axis=0)
    mask = ndimage.binary_opening(change >= AORTA_MIN_CHANGE_HU, iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sp = spacing_mm or 0.75
    lo, hi = AORTA_DIAMETER_MM
    min_px, max_px = np.pi * (lo / 2 / sp) ** 2 * AORTA_MIN_FILL, np.pi * (hi / 2 / sp) ** 2
    best: tuple[Point, float] | None = None
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        component = labels[sl] == label
        size = int(component.sum())
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        round_enough = max(h, w) <= 1.5 * min(h, w) and size >= AORTA_MIN_FILL * np.pi * (max(h, w) / 2) ** 2
        if not (min_px <= size <= max_px and round_enough):
            continue
        score = float(change[sl][component].mean())
        if best is None or score > best[1]:
            rows, cols = np.nonzero(component)
            best = ((float(rows.mean() + sl[0].start), float(cols.mean() + sl[1].start)), score)
    return best[0] if best else None


@dataclass(frozen=True)
class PhaseCheck:
    """Whether the aorta's attenuation follows the protocol (arterial >> delayed > unenhanced)."""

    plausible: bool
    message: str
    suggested: dict[Phase, Phase] | None = None  # currently labelled phase -> the phase it looks like


def check_phases_by_aorta(aorta_hu: Mapping[Phase, float]) -> PhaseCheck:
    """Compare the aorta's mean HU per labelled phase with the protocol's order.

    Arterial must exceed delayed by ARTERIAL_OVER_DELAYED_HU and delayed exceed unenhanced by
    DELAYED_OVER_UNENHANCED_HU. When not, ``suggested`` relabels the slices by rank (lowest
    aorta -> unenhanced, highest -> arterial), a proposal for the user to confirm.
    """
    values = ", ".join(f"{p.value} {aorta_hu[p]:.0f} HU" for p in PHASES)
    u, a, d = (aorta_hu[p] for p in PHASES)
    if a - d >= ARTERIAL_OVER_DELAYED_HU and d - u >= DELAYED_OVER_UNENHANCED_HU:
        return PhaseCheck(
            True, f"Aorta: {values}, as expected (arterial well above delayed, delayed above unenhanced)."
        )
    ranked = sorted(PHASES, key=lambda p: aorta_hu[p])
    suggested = dict(zip(ranked, (Phase.UNENHANCED, Phase.DELAYED, Phase.ARTERIAL), strict=True))
    if all(k is v for k, v in suggested.items()):
        return PhaseCheck(
            False,
            f"Aorta: {values}. The order is right but the differences are small: "
            "check that these are the unenhanced, late arterial and 180 s delayed "
            "phases of one examination.",
        )
    swaps = "; ".join(
        f"the slice labelled {k.value} looks {v.value}" for k, v in suggested.items() if k is not v
    )
    return PhaseCheck(False, f"Aorta: {values}. The phases look swapped: {swaps}.", suggested)
