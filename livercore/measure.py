"""Region-of-interest measurements in HU, and where the automatic ROIs go.

Coordinates are pixel (row, col) of the (H, W) image; lengths in mm are converted with the
phase's pixel spacing. Every statistic is over the pixels of one slice, in HU. The automatic ROIs:
the aorta by its enhancement between the phases or, failing that, in each image alone; the liver
as a ring around the lesion box, without the vessels and fat it crosses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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
# ... and so are the vessels (portal phase about 180 HU against liver about 100 +/- 20 HU) and fat
# the ring crosses: pixels more than this many robust SDs (1.4826 x MAD) from the ring's median, on
# a 3 x 3 median so that noise alone is not taken for a vessel, grown by their partial-volume rim;
# the rest is clipped at the same limit. Median-based, because a mean +/- SD clip
# (scipy.stats.sigmaclip) keeps the vessels once they widen the SD; 3 SD keeps 99.7 % of the noise.
LIVER_RING_CLIP_SD = 3.0
LIVER_RING_VESSEL_RIM_MM = 1.0
# Aorta search: a round blob of aortic calibre (adult aorta 15-35 mm at liver level) that
# enhances by at least this much between the phases (the protocol's aorta: about +300 HU).
AORTA_MIN_CHANGE_HU = 120.0
AORTA_DIAMETER_MM = (12.0, 40.0)
AORTA_MIN_FILL = 0.6  # pixels / area of the bounding box's inscribed circle: round, not a crescent
# Aorta in one image, when the phases show no such change (one series uploaded as all three
# phases, or phases too alike): a round, homogeneous blob of opacified blood and aortic calibre
# (AORTA_DIAMETER_MM) wrapped in fat, just anterior of the vertebral body.
AORTA_BLOOD_HU = (120.0, 600.0)  # opacified blood: delayed (180 s) aorta 120-160 HU, arterial up to ~500
AORTA_EDGE_SD_HU = (
    40.0  # SD of 3 x 3 px (of the 3 x 3 median) above this is an edge: cuts the aorta from bone
)
AORTA_MAX_SD_HU = 40.0  # lumen SD is image noise (15-25 HU); cancellous bone and organ pieces exceed it
AORTA_ROUND_FILL = 0.75  # pixels / the bounding box's inscribed ellipse: round or obliquely oval
AORTA_MAX_ASPECT = 1.5  # bounding box: longer side at most 1.5 x the shorter
AORTA_RIM_MM = (1.5, 4.0)  # the ring this far outside the blob ...
AORTA_RIM_MAX_ENHANCED = 0.3  # ... is mostly fat and crus (< AORTA_BLOOD_HU); a piece of the vertebral
# body, the stomach's contrast or an organ is surrounded by more of itself
AORTA_SPINE_GAP_MM = 20.0  # edge of the blob to the spine found; the weakly calcified anterior cortex
# of a vertebral body is not always found, so more than the aorta's real 0-5 mm
SPINE_BONE_HU = AORTA_BLOOD_HU[1]  # cortical bone, above any opacified blood
SPINE_MIDLINE_MM = 30.0  # the spine's pieces lie within this of the body's midline (columns: left-right)
SPINE_REACH_MM = 50.0  # pieces within this of the largest midline piece belong to its vertebra
SPINE_MIN_AREA_MM2 = 500.0  # a vertebra (body and arch, > 1000 mm2), not a rib or the sternum's tip
BODY_MIN_HU = -500.0  # the patient: anything denser than lung and air

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
    return values_stats(np.asarray(hu, np.float64)[mask])


def values_stats(values: np.ndarray) -> RoiStats | None:
    """Mean and SD (HU, ddof=1) of values (N,) in HU; None when fewer than 3."""
    if values.size < 3:
        return None
    return RoiStats(float(values.mean()), float(values.std(ddof=1)), int(values.size))


def _robust_sd(values: np.ndarray) -> np.floating:
    """The normal-consistent median absolute deviation, as scipy.stats.median_abs_deviation(values,
    scale="normal") computes it (without importing scipy.stats, a second on the first page)."""
    median = np.median(values)
    return np.median(np.abs(values - median)) / 0.6744897501960817


def clip_to_median(values: np.ndarray, n_sd: float = LIVER_RING_CLIP_SD) -> np.ndarray:
    """The values (N,) in HU within n_sd robust SDs (1.4826 x median absolute deviation) of their
    median: one pass, so a minority of vessels or edges cannot widen the limits that judge them."""
    if values.size == 0:
        return values
    median = np.median(values)
    robust_sd = _robust_sd(values)
    return values[np.abs(values - median) <= n_sd * robust_sd]


def disc_stats(
    hu: np.ndarray, center: Point, spacing_mm: float | None, diameter_mm: float = ROI_DIAMETER_MM
) -> RoiStats | None:
    """Mean ± SD (HU) in a circle of diameter_mm (default 1 cm) around center (row, col)."""
    radius_px = diameter_mm / 2 / (spacing_mm or 1.0)
    return roi_stats(hu, disc_mask(hu.shape, center, radius_px))


def liver_ring_stats(hu: np.ndarray, box: LesionBox, spacing_mm: float | None) -> RoiStats | None:
    """Mean ± SD (HU) of the liver in a ring around the lesion (ring_mask) on hu (H, W) in HU: its
    soft-tissue pixels (LIVER_RING_HU) less the vessels and fat it crosses and their rims
    (LIVER_RING_CLIP_SD, LIVER_RING_VESSEL_RIM_MM), then clip_to_median."""
    from scipy import ndimage  # scipy takes a second to import: when used

    ring = ring_mask(hu.shape, box, spacing_mm)
    rows, cols = np.nonzero(ring)
    if rows.size == 0:
        return None
    rim = _disc(LIVER_RING_VESSEL_RIM_MM / (spacing_mm or 1.0))
    margin = rim.shape[0] // 2 + 1  # the median filter's and the rim's reach beyond the ring
    window = (
        slice(max(int(rows.min()) - margin, 0), int(rows.max()) + margin + 1),
        slice(max(int(cols.min()) - margin, 0), int(cols.max()) + margin + 1),
    )
    image = np.asarray(hu, np.float64)[window]
    tissue = ring[window] & (image >= LIVER_RING_HU[0]) & (image <= LIVER_RING_HU[1])
    values = image[tissue]
    if values.size < 3:
        return None
    median = np.median(values)
    limit = LIVER_RING_CLIP_SD * _robust_sd(values)
    other = np.abs(ndimage.median_filter(image, 3) - median) > limit
    other = ndimage.binary_dilation(other, rim)
    return values_stats(clip_to_median(image[tissue & ~other]))


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
    """The aorta's centre (row, col) from the phases (H, W) in HU of one table position.

    First by its enhancement between the phases (aorta_by_change); where the phases show no
    such change (one series uploaded as all three phases, phases too alike), in each image alone
    (aorta_in_slice), taking the most enhanced aorta found: the table position is the same, so
    its centre holds for every phase. spacing_mm is the pixel spacing (mm). The phases' labels are
    not used, so the result can check them. None when the images differ in size or no aorta is
    found (no contrast given, a slice above the heart or below the bifurcation, a head).
    """
    images = [np.asarray(v, np.float32) for v in hu.values()]
    if not images or len({i.shape for i in images}) > 1:
        return None
    found = aorta_by_change(images, spacing_mm)
    if found is not None:
        return found
    best: tuple[Point, float] | None = None
    distinct: list[np.ndarray] = []
    for image in images:
        if any(np.array_equal(image, seen) for seen in distinct):
            continue
        distinct.append(image)
        hit = aorta_in_slice(image, spacing_mm)
        if hit is not None and (best is None or hit[1] > best[1]):
            best = hit
    return best[0] if best else None


def aorta_by_change(images: Sequence[np.ndarray], spacing_mm: float | None) -> Point | None:
    """The aorta's centre (row, col) as the round blob of aortic calibre whose attenuation changes
    most between images (H, W) in HU of one table position (about 300 HU from unenhanced to
    arterial); bone, fat and unenhanced organs do not change, kidneys enhance as a rim and the
    spleen is too large. None for fewer than two images or no such blob.
    """
    from scipy import ndimage  # scipy takes a second to import: when used

    if len(images) < 2:
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


def aorta_in_slice(hu: np.ndarray, spacing_mm: float | None) -> tuple[Point, float] | None:
    """The aorta in one axial image (H, W) in HU: its centre (row, col) and mean HU, or None.

    Candidates are blobs of opacified blood (AORTA_BLOOD_HU, cut at edges so a blob touching bone
    comes away from it) that are round (AORTA_ROUND_FILL, AORTA_MAX_ASPECT), of aortic calibre
    (AORTA_DIAMETER_MM, by area), homogeneous (AORTA_MAX_SD_HU: not cancellous bone), inside the
    image and wrapped in fat (AORTA_RIM_MAX_ENHANCED: not a piece of an organ, of the vertebral
    body or of the contrast-filled stomach). Of those within AORTA_SPINE_GAP_MM of the spine
    (spine_mask) and on its anterior side, the one nearest the spine's centre is the aorta.
    Works for either row direction (the anterior side is the body's centre's side of the spine).
    """
    from scipy import ndimage  # scipy takes a second to import: when used

    image = np.asarray(hu, np.float32)
    sp = spacing_mm or 0.75
    smooth = ndimage.median_filter(image, 3)
    mean3 = ndimage.uniform_filter(smooth, 3)
    local_sd = np.sqrt(np.maximum(ndimage.uniform_filter(smooth * smooth, 3) - mean3 * mean3, 0.0))
    blood = (smooth >= AORTA_BLOOD_HU[0]) & (smooth <= AORTA_BLOOD_HU[1])
    opening = _disc(2.0 / sp)  # drops vessels under 4 mm and the bridges between blobs
    candidates = _round_blood_blobs(
        image, smooth, ndimage.binary_opening(blood & (local_sd <= AORTA_EDGE_SD_HU), opening), sp
    )
    if not candidates:
        return None
    aorta_like = np.zeros(image.shape, bool)
    for mask, _ in candidates:
        aorta_like |= mask
    found = spine_mask(image, smooth, ndimage.binary_opening(blood, opening), aorta_like, sp)
    if found is None:
        return None
    spine, body_centre = found
    spine_centre = np.array(ndimage.center_of_mass(spine))
    anterior = body_centre - spine_centre
    anterior /= np.linalg.norm(anterior) or 1.0
    gap_mm = ndimage.distance_transform_edt(~spine) * sp
    best: tuple[Point, float, float] | None = None
    for mask, mean_hu in candidates:
        centre = np.array(ndimage.center_of_mass(mask))
        if float(gap_mm[mask].min()) > AORTA_SPINE_GAP_MM or float((centre - spine_centre) @ anterior) <= 0:
            continue
        distance = float(np.hypot(*(centre - spine_centre)))
        if best is None or distance < best[2]:
            best = ((float(centre[0]), float(centre[1])), mean_hu, distance)
    return (best[0], best[1]) if best else None


def _disc(radius_px: float) -> np.ndarray:
    r = max(round(radius_px), 1)
    rows, cols = np.ogrid[-r : r + 1, -r : r + 1]
    return rows**2 + cols**2 <= r**2


def _round_blood_blobs(
    image: np.ndarray, smooth: np.ndarray, blood: np.ndarray, sp: float
) -> list[tuple[np.ndarray, float]]:
    """(mask (H, W), mean HU) of the blobs of `blood` that could be the aorta (aorta_in_slice)."""
    from scipy import ndimage  # scipy takes a second to import: when used

    lo, hi = AORTA_DIAMETER_MM
    min_px, max_px = np.pi * (lo / 2 / sp) ** 2, np.pi * (hi / 2 / sp) ** 2
    rim_in, rim_out = AORTA_RIM_MM
    pad = int(np.ceil(rim_out / sp)) + 1
    labels, _ = ndimage.label(blood)
    out = []
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        blob = labels[sl] == label
        size = int(blob.sum())
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        touches_edge = (
            sl[0].start == 0
            or sl[1].start == 0
            or sl[0].stop == image.shape[0]
            or sl[1].stop == image.shape[1]
        )
        if touches_edge or not min_px <= size <= max_px:
            continue
        if max(h, w) > AORTA_MAX_ASPECT * min(h, w) or size < AORTA_ROUND_FILL * np.pi * h * w / 4:
            continue
        core = ndimage.binary_erosion(blob, _disc(1.5 / sp))  # the lumen without its partial-volume edge
        values = image[sl][core] if core.sum() >= 10 else image[sl][blob]
        if float(values.std()) > AORTA_MAX_SD_HU:
            continue
        window = (
            slice(max(sl[0].start - pad, 0), sl[0].stop + pad),
            slice(max(sl[1].start - pad, 0), sl[1].stop + pad),
        )
        full = np.zeros(image.shape, bool)
        full[sl] = blob
        outside_mm = ndimage.distance_transform_edt(~full[window]) * sp
        rim = (outside_mm > rim_in) & (outside_mm <= rim_out)
        if float((smooth[window][rim] >= AORTA_BLOOD_HU[0]).mean()) > AORTA_RIM_MAX_ENHANCED:
            continue
        out.append((full, float(values.mean())))
    return out


def spine_mask(
    image: np.ndarray, smooth: np.ndarray, blood: np.ndarray, aorta_like: np.ndarray, sp: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """The spine (H, W) bool and the body's centre (row, col) in one image (H, W) in HU, or None.

    Bone is cortical bone (above SPINE_BONE_HU) and the heterogeneous blobs of `blood` (SD above
    AORTA_MAX_SD_HU: cancellous bone), closed and filled, less the `aorta_like` blobs. The spine
    is the largest bone piece near the body's midline (SPINE_MIDLINE_MM) with the midline pieces
    within SPINE_REACH_MM of it (vertebral body, arch), at least SPINE_MIN_AREA_MM2 in all.
    `smooth` is image after a 3 x 3 median; `blood` the opened mask of opacified blood.
    """
    from scipy import ndimage  # scipy takes a second to import: when used

    labels, n = ndimage.label(blood)
    if n:
        core = ndimage.binary_erosion(blood, _disc(1.5 / sp))
        index = np.arange(1, n + 1)
        sd = np.asarray(ndimage.standard_deviation(image, labels * core, index))
        sd_all = np.asarray(ndimage.standard_deviation(image, labels, index))
        n_core = np.asarray(ndimage.sum(core, labels, index))
        sd = np.where(n_core >= 10, sd, sd_all)
        heterogeneous = np.isin(labels, index[sd > AORTA_MAX_SD_HU])
    else:
        heterogeneous = np.zeros(image.shape, bool)
    bone = ((smooth > SPINE_BONE_HU) | heterogeneous) & ~aorta_like
    bone = ndimage.binary_fill_holes(ndimage.binary_closing(bone, _disc(3.0 / sp))) & ~aorta_like
    body_labels, n_body = ndimage.label(ndimage.binary_fill_holes(smooth > BODY_MIN_HU))
    if n_body == 0:
        return None
    body = body_labels == int(np.argmax(np.bincount(body_labels.ravel())[1:])) + 1
    body_centre = np.array(ndimage.center_of_mass(body))
    pieces, n_pieces = ndimage.label(bone & body)
    if n_pieces == 0:
        return None
    index = np.arange(1, n_pieces + 1)
    centres = np.array(ndimage.center_of_mass(bone, pieces, index)).reshape(-1, 2)
    areas = np.bincount(pieces.ravel(), minlength=n_pieces + 1)[1:] * sp * sp
    midline = np.abs(centres[:, 1] - body_centre[1]) * sp <= SPINE_MIDLINE_MM
    if not midline.any():
        return None
    anchor = int(np.argmax(np.where(midline, areas, -1.0)))
    near = midline & (np.hypot(*(centres - centres[anchor]).T) * sp <= SPINE_REACH_MM)
    if areas[near].sum() < SPINE_MIN_AREA_MM2:
        return None
    return np.isin(pieces, index[near]), body_centre
