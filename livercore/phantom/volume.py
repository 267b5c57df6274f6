"""Short multiphase CT volumes of the phantom, written the way real data comes, with known truth.

`generate_volume_case(cohort, seed, index, size)` makes, for image set `index` of a cohort, the
same patient, lesion (category, subtype, plan, diameter) and scanner as
`livercore.phantom.generate_case`, as three short volumes (one per phase) of 9-15 contiguous
axial sections through the lesion, at 512 x 512 and the phase's reconstruction interval
(unenhanced 5 mm; arterial and delayed the vendor's 2.5 or 3 mm), through the same imaging
chain (livercore.phantom.imaging: blur with thickness, correlated noise per section, int16 HU).

What changes from section to section:

- the lesion is a 3-D body: its in-plane size in a section follows its chord there, and each
  section averages sub-slices across its thickness (partial volume), so sections near its
  poles show it small and faint;
- the liver's vessels are 3-D trees (portal branches from the hilum, hepatic veins from the
  IVC at the dome, tapering over four generations) that run obliquely through the volume,
  drawn with the same partial volume;
- the liver outline follows the anatomy's liver shape at each section's level, and the mobile
  organs (liver outline, IVC, gallbladder, spleen, stomach, kidneys, bowel) deform slowly along
  z (smooth random displacements, none against the body wall or near the lesions);
- the body wall, bones and aorta (the fixed layer) keep their reference section's shape.

The organs other than the liver's vessels are anatomy.render_section's own draws for the 2-D
case's section (`_anatomy_layers` repeats its random stream draw for draw), so the arterial
volume's reference section shows the same patient as the 2-D case, with new vessels.

Breath-hold misregistration with known truth: the arterial phase is the reference; in the
unenhanced and delayed phases the mobile layer (liver, its vessels and lesion, the other organs;
not the body wall: imaging.composite) is shifted as a rigid body by whole pixels in plane (the
2-D case's own shift) and by a continuous craniocaudal offset of up to +/- SECTION_JITTER_MM
(the 2-D case's own section jitter).

Conventions of the truth (`VolumeCase`):

- patient coordinates are DICOM LPS, in mm: x grows towards the patient's left (image
  columns), y towards posterior (image rows), z towards the head; the in-plane origin is the
  image centre (ImagePositionPatient of pixel (0, 0) is (-(W-1)/2, -(H-1)/2) x spacing), as
  livercore.dicom_io writes every CT slice;
- a volume is (Z, H, W), sections ordered by increasing z (inferior to superior), voxel
  (section, row, col) with the centre of voxel 0 at 0.0;
- ``shift_mm[phase]`` = (dx, dy, dz): where the anatomy lies in that phase minus where it lies
  in the arterial phase, LPS mm ((0, 0, 0) for the arterial phase), so
  ``lesion_center_mm[phase] = lesion_center_mm[ARTERIAL] + shift_mm[phase]``;
- ``lesion_mask`` is the arterial volume's label mask (1 where the lesion's partial volume in
  the voxel is at least 50 %); NIfTI files are written in RAS (nibabel's convention).

Writers: `write_dicom_study` (one study, three CT series, one file per section),
`write_seg` (a DICOM SEG of the arterial lesion mask, highdicom), `write_nifti_case`
(unenhanced/arterial/delayed.nii.gz and mask.nii.gz, the layout livercore.nifti_cohort reads)
and `export_volumes` for a whole cohort (one case at a time per worker).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset
from scipy.ndimage import map_coordinates, zoom

from livercore import annotation, dicom_io
from livercore.cohort import CohortWriter, Section, write_manifest
from livercore.dicom_study import SeriesVolume
from livercore.phantom import anatomy, imaging, lesions, shapes, spec
from livercore.phantom.cohort import (
    CaseDraws,
    ImageSet,
    cohort_layout,
    draw_case,
    misregistration_px,
    place_lesion,
)
from livercore.phantom.shapes import Canvas
from livercore.vocab import PHASES, Category, Phase

MIN_SECTIONS, MAX_SECTIONS = 9, 15
MARGIN_MM = 5.0 + spec.SECTION_JITTER_MM  # beyond the lesion's poles, so every phase covers it
SUBSLICE_MM = 1.0  # partial volume: each section averages sub-slices about this far apart
LEVEL_PER_MM = 1 / 150  # anatomy level per mm craniocaudally (as generate_case's sections)
DOME_Z_MM = -100.0  # table position (LPS z) of anatomy level 0, the liver dome
VESSEL_EDGE_MM = 0.8
KNOT_MM = 10.0  # the anatomy's liver outline is drawn this far apart in z and interpolated
WARP_MODES = 3  # slow in-plane deformations of the liver outline along z
PHASE_SERIES = {Phase.UNENHANCED: "ABD PLAIN", Phase.ARTERIAL: "ART 35s", Phase.DELAYED: "DELAYED 180s"}
# Benchmark-style diagnoses for labels.csv (livercore.nifti_cohort.LABEL_CATEGORIES maps most of
# them; the explicit category and subtype written beside them always win).
BENCHMARK_LABELS: dict[str, str] = {
    "A/histology": "HCC",
    "A/imaging": "HCC",
    "B/icc": "ICC",
    "B/combined_hcc_icc": "combined HCC-ICC",
    "B/colorectal_metastasis": "colorectal metastasis",
    "B/net_metastasis": "metastasis",
    "B/other_malignant": "malignant tumour",
    "C/hypervascular": "hypervascular nodule",
    "C/hypovascular": "dysplastic nodule",
    "C/other_benign": "adenoma",
    "D/typical": "hemangioma",
    "D/flash_filling": "hemangioma",
    "E/simple_cyst": "cyst",
}
PHASE_FILES = {p: f"{p.value}.nii.gz" for p in PHASES}
MASK_FILE = "mask.nii.gz"
SEG_FILE = "seg.dcm"
FORMATS = ("dicom", "nifti", "cohort")


@dataclass
class VolumeCase:
    """One phantom case as three short volumes in HU with their geometry and ground truth."""

    image_set: ImageSet
    cohort: str
    seed: int
    hu: dict[Phase, np.ndarray]  # (Z, 512, 512) int16 HU per phase, sections by increasing z
    spacing_mm: float  # in-plane pixel spacing (rows and columns)
    thickness_mm: dict[Phase, float]  # slice thickness = spacing between sections (contiguous)
    section_z_mm: dict[Phase, np.ndarray]  # (Z,) LPS z of each section's centre
    manufacturer: str
    lesion_center_mm: dict[Phase, tuple[float, float, float]]  # LPS (x, y, z) mm
    lesion_center_voxel: dict[Phase, tuple[float, float, float]]  # (section, row, col), fractional
    shift_mm: dict[Phase, tuple[float, float, float]]  # LPS (dx, dy, dz): phase minus arterial
    diameter_mm: float  # equivalent diameter of the lesion's largest cross-section (its centre)
    height_mm: float  # the lesion's craniocaudal extent (its 3-D body's axis along z)
    lesion_mask: np.ndarray  # (Z_arterial, 512, 512) uint8: 1 inside the lesion (>= 50 % PV)
    flags: dict[str, bool]
    noise_sd: dict[Phase, float]

    @property
    def case_id(self) -> str:
        return self.image_set.case_id

    @property
    def category(self) -> Category:
        return self.image_set.category

    @property
    def subtype(self) -> str:
        return self.image_set.subtype

    def origin_mm(self, phase: Phase) -> tuple[float, float, float]:
        """LPS position of the centre of voxel (0, 0, 0) of the phase's volume."""
        h, w = self.hu[phase].shape[1:]
        return (
            -(w - 1) / 2 * self.spacing_mm,
            -(h - 1) / 2 * self.spacing_mm,
            float(self.section_z_mm[phase][0]),
        )

    def affine(self, phase: Phase) -> np.ndarray:
        """(4, 4): (section, row, col, 1) -> LPS mm (livercore.dicom_study.SeriesVolume.affine)."""
        x0, y0, z0 = self.origin_mm(phase)
        sp, dz = self.spacing_mm, self.thickness_mm[phase]
        return np.array([[0, 0, sp, x0], [0, sp, 0, y0], [dz, 0, 0, z0], [0, 0, 0, 1]], float)

    def to_voxel(self, phase: Phase, point_mm: Iterable[float]) -> tuple[float, float, float]:
        """(section, row, col) of an LPS point in the phase's volume."""
        k, r, c, _ = np.linalg.solve(self.affine(phase), np.array([*point_mm, 1.0]))
        return float(k), float(r), float(c)


# --- anatomy in 3-D -------------------------------------------------------------------------------


@dataclass
class _Anatomy:
    """The mobile layer's parts, from which a section at any craniocaudal position is composed.

    `z` is mm craniocaudally from the reference section (anatomy level `level`), in the mobile
    frame (before the breath-hold shift); positive towards the head."""

    patient: anatomy.Patient
    level: float
    mask_rng: np.random.Generator  # the liver outline's stream (copied for each knot)
    spine: tuple[float, float, float]
    liver_values: np.ndarray  # (3, H, W) liver parenchyma with its texture, everywhere
    organs: Canvas  # IVC, gallbladder, spleen, stomach, kidneys, bowel, lungs over fat
    ivc_mm: tuple[float, float]
    hilum_mm: tuple[float, float]
    grid: Canvas  # only its size and spacing are used
    warp_fields: np.ndarray | None = None  # (K, 2, h, w) displacement modes in warp_box (pixels)
    warp_waves: np.ndarray | None = None  # (K, 2): wavelength (mm) and phase of each mode along z
    warp_box: tuple[slice, slice] = (slice(0, 0), slice(0, 0))  # where the deformation is not zero
    warp_grid: np.ndarray | None = None  # (2, h, w) float64 row and column of each pixel of the box
    _knots: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = None

    def _knot(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The anatomy's liver outline (and its ascites rim) at knot i (z = i * KNOT_MM)."""
        if self._knots is None:
            self._knots = {}
        if i not in self._knots:
            level = self.level - i * KNOT_MM * LEVEL_PER_MM
            mask = anatomy._liver_mask(
                self.grid, copy.deepcopy(self.mask_rng), self.patient, level, self.spine
            )
            grown = anatomy._dilate(mask, 4.0 / self.patient.spacing_mm) if self.patient.ascites else None
            self._knots[i] = (mask, grown)
        return self._knots[i]

    def displacement(self, z_mm: float) -> np.ndarray | None:
        """(2, h, w) in-plane displacement (pixels, rows then columns) of the mobile organs at
        z inside `warp_box` (none outside it); zero at z = 0."""
        if self.warp_fields is None or self.warp_waves is None:
            return None
        out = np.zeros(self.warp_fields.shape[1:], np.float32)
        for field, (wavelength, phase) in zip(self.warp_fields, self.warp_waves, strict=True):
            weight = math.sin(2 * math.pi * z_mm / wavelength + phase) - math.sin(phase)
            out += np.float32(weight) * field
        return out

    def section(
        self, z_mm: float, phase: int
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """The mobile layer's parts at z for one phase: the liver's partial-volume mask (the
        anatomy's outline at z's level, between knots KNOT_MM apart), the ascites rim around it
        (or None), and the other organs' image and coverage, all slowly deformed along z."""
        i = math.floor(z_mm / KNOT_MM)
        t = np.float32(z_mm / KNOT_MM - i)
        (m0, g0), (m1, g1) = self._knot(i), self._knot(i + 1)
        parts = [m0 + t * (m1 - m0), self.organs.image[phase], self.organs.alpha]
        if g0 is not None and g1 is not None:
            parts.append(g0 + t * (g1 - g0))
        shift = self.displacement(z_mm)
        if shift is not None and self.warp_grid is not None:
            where = self.warp_grid - shift
            box = self.warp_box
            warped = []
            for part in parts:
                out = part.copy()
                out[box] = map_coordinates(part, where, order=1, mode="nearest", output=np.float32)
                warped.append(out)
            parts = warped
        return parts[0], (parts[3] if len(parts) > 3 else None), parts[1], parts[2]

    def compose(self, work: Canvas, phase: int, z_mm: float, z_subs: np.ndarray, vessels: _Vessels) -> None:
        """Fill work.image[phase] and work.alpha with the mobile layer at z (no lesion yet):
        fat, the ascites rim, the liver, its vessels (partial volume over the sub-slices z_subs,
        inside the liver) and the other organs over them, as anatomy.render_section paints."""
        hu = self.patient.hu
        fat = hu["fat"][phase]
        liver, grown, organ_image, organ_alpha = self.section(z_mm, phase)
        m = np.full(liver.shape, fat, np.float32)
        a: np.ndarray = np.zeros_like(m)
        if grown is not None:
            m += grown * (hu["fluid"][phase] - m)
            a = grown
        m += liver * (self.liver_values[phase] - m)
        a = a + liver * (1 - a)
        occupancy = {True: np.zeros_like(m), False: np.zeros_like(m)}
        _paint_vessels(occupancy, vessels, z_subs, work)
        for portal, name in ((False, "hepatic_vein"), (True, "portal_vein")):
            m += np.minimum(occupancy[portal], 1) * liver * (hu[name][phase] - m)
        # The organs were painted in order over fat: compositing them over the liver this way
        # equals painting them over it (1 - alpha is the product of what each shape left).
        work.image[phase] = organ_image + (1 - organ_alpha) * (m - fat)
        work.alpha[:] = 1 - (1 - a) * (1 - organ_alpha)

    def set_warp(self, rng: np.random.Generator, keep: Iterable[tuple[float, float, float]]) -> None:
        """Draw the mobile organs' slow deformation along z: smooth random modes inside the
        abdominal cavity, fading to none against the body wall (the liver does not enter it)
        and near the lesions (`keep`: x, y, radius mm; so they stay inside the liver)."""
        size, sp = self.grid.size, self.grid.spacing_mm
        ai, bi = self.patient.inner
        xs = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * sp
        x, y = xs[None, :], xs[:, None]
        rho = np.sqrt((x / ai) ** 2 + (y / bi) ** 2)
        envelope = np.clip((1 - rho) * min(ai, bi) / 25, 0, 1)
        for kx, ky, radius in keep:
            envelope *= np.clip((np.hypot(x - kx, y - ky) - radius - 6) / 25, 0, 1)
        rows, cols = np.nonzero(envelope > 0)
        if rows.size == 0:
            return
        box = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
        fields = np.empty((WARP_MODES, 2, h, w), np.float32)
        for k in range(WARP_MODES):
            amplitude = rng.uniform(2.5, 4.5) / sp
            for axis in range(2):
                coarse = rng.standard_normal((6, 6))
                smooth = zoom(coarse, (h / 6, w / 6), order=3, mode="nearest", grid_mode=True)[:h, :w]
                fields[k, axis] = smooth * envelope[box] * amplitude
        self.warp_fields = fields
        self.warp_waves = np.stack(
            [rng.uniform(90, 220, WARP_MODES), rng.uniform(0, 2 * np.pi, WARP_MODES)], 1
        )
        self.warp_box = box
        rows, cols = np.mgrid[box[0], box[1]]
        self.warp_grid = np.stack([rows, cols]).astype(np.float64)


def _anatomy_layers(patient: anatomy.Patient, rng: np.random.Generator, level: float) -> _Anatomy:
    """anatomy.render_section's draws, one for one (so the organs are the same as in the 2-D
    case's section), kept as layers: the liver outline as a function of z, its parenchyma, and
    the other mobile organs. The section's own liver vessels are drawn (to keep the stream in
    step) but replaced by 3-D trees (`_vessel_trees`); the fixed layer is the section's own."""
    hu = patient.hu
    size, sp = spec.MATRIX, patient.spacing_mm
    ai, bi = patient.inner
    scratch = Canvas(size, sp)
    anatomy._ribs(scratch, rng, ai + 4.5, bi + 4.5, hu)
    yv = bi * 0.62
    rv = float(rng.uniform(15, 19))
    patient.spine = (yv, rv)
    rng.uniform(8, 16), rng.uniform(11, 14), rng.uniform(10, 13)  # the aorta (fixed layer)
    grid = Canvas(size, sp)
    spine = (0.0, yv, rv)
    mask_rng = copy.deepcopy(rng)
    liver_mask = anatomy._liver_mask(grid, rng, patient, level, spine)
    liver = Canvas(size, sp)
    anatomy._paint_liver(liver, rng, patient, np.ones_like(liver_mask))
    ivc = (-float(rng.uniform(18, 26)), yv - rv - 20)
    peek = copy.deepcopy(rng)
    ivc_axes = (float(peek.uniform(11, 15)), float(peek.uniform(8, 11)))
    hilum = (-ai * float(peek.uniform(0.12, 0.22)), bi * float(peek.uniform(0.0, 0.12)))
    anatomy._liver_vessels(scratch, rng, patient, liver_mask, level, ivc=ivc)
    organs = Canvas(size, sp, fill=hu["fat"])
    shapes.ellipse(organs, *ivc, *ivc_axes, hu["hepatic_vein"])
    if level > 0.45 and rng.random() < 0.45:
        gb = (-ai * rng.uniform(0.05, 0.25), bi * rng.uniform(-0.05, 0.15))
        shapes.ellipse(
            organs,
            *gb,
            rng.uniform(10, 16),
            rng.uniform(16, 26),
            hu["gallbladder"],
            theta=rng.uniform(-0.6, 0.2),
        )
    anatomy._organs(organs, rng, patient, level, liver_mask)
    if level < 0.35:
        extent = (0.35 - level) / 0.35
        for side in (-1, 1):
            shapes.ellipse(
                organs,
                side * ai * 0.52,
                bi * 0.62,
                ai * (0.16 + 0.14 * extent),
                bi * (0.12 + 0.14 * extent),
                hu["lung"],
                theta=side * 0.5,
                edge_mm=1.0,
            )
    return _Anatomy(patient, level, mask_rng, spine, liver.image, organs, ivc, hilum, grid)


@dataclass(frozen=True)
class _Vessels:
    """Straight 3-D vessel segments (mm, mobile frame: x, y as the canvas, z from the reference)."""

    start: np.ndarray  # (N, 3)
    end: np.ndarray  # (N, 3)
    radius: np.ndarray  # (N,)
    portal: np.ndarray  # (N,) bool: portal vein, else hepatic vein

    def z_range(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.minimum(self.start[:, 2], self.end[:, 2]) - self.radius - VESSEL_EDGE_MM
        hi = np.maximum(self.start[:, 2], self.end[:, 2]) + self.radius + VESSEL_EDGE_MM
        return lo, hi


def _vessel_trees(
    rng: np.random.Generator,
    layers: _Anatomy,
    liver_xy: np.ndarray,
    lesion_xyz: tuple[float, float, float],
) -> _Vessels:
    """Portal branches from the hilum and hepatic veins from the IVC at the dome, as tapering
    trees: a trunk towards a point of the liver around the lesion's level, then segmental,
    subsegmental and small branches off it, running obliquely through the volume."""
    segments: list[tuple[np.ndarray, np.ndarray, float, bool]] = []
    lx, ly, lz = lesion_xyz
    near = np.hypot(liver_xy[:, 0] - lx, liver_xy[:, 1] - ly) < 75
    near_xy = liver_xy[near] if near.sum() > 20 else liver_xy

    def target(spread: float) -> np.ndarray:
        pool = near_xy if rng.random() < 0.35 else liver_xy
        x, y = pool[int(rng.integers(len(pool)))]
        return np.array([x, y, lz + rng.uniform(-spread, spread)])

    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(float(np.linalg.norm(v)), 1e-6)

    def grow(start: np.ndarray, end: np.ndarray, radius: float, portal: bool, depth: int) -> None:
        """A gently bent branch from start to end, then its children off its distal part."""
        mid = (start + end) / 2 + rng.normal(0, 0.08 * float(np.linalg.norm(end - start)), 3)
        segments.append((start, mid, radius, portal))
        segments.append((mid, end, radius * 0.9, portal))
        if depth == 0:
            return
        axis = unit(end - start)
        for _ in range(int(rng.integers(2, 5))):
            at = start + rng.uniform(0.4, 1.0) * (end - start)
            length = {3: (35, 60), 2: (20, 38), 1: (10, 22)}[depth]
            direction = unit(axis + rng.normal(0, 0.7, 3))
            child = max(radius * float(rng.uniform(0.55, 0.72)), 0.7)
            grow(at, at + direction * rng.uniform(*length), child, portal, depth - 1)

    level = layers.level
    hilum = np.array([*layers.hilum_mm, float(np.clip((level - 0.5) / LEVEL_PER_MM, -70, 70))])
    confluence = np.array([*layers.ivc_mm, float(np.clip((level - 0.05) / LEVEL_PER_MM, 15, 140))])
    roots = [(hilum, True)] * int(rng.integers(6, 9)) + [(confluence, False)] * int(rng.integers(4, 6))
    for root, portal in roots:
        end = target(45)
        trunk = root + rng.uniform(0.5, 0.75) * (end - root)
        grow(root, trunk, float(rng.uniform(3.0, 5.0)), portal, 3)
    start = np.array([s[0] for s in segments], float)
    end_ = np.array([s[1] for s in segments], float)
    return _Vessels(start, end_, np.array([s[2] for s in segments]), np.array([s[3] for s in segments]))


def _paint_vessels(
    occupancy: dict[bool, np.ndarray], vessels: _Vessels, z_subs: np.ndarray, grid: Canvas
) -> None:
    """Add each vessel's partial volume in a section (the mean of its coverage over the
    sub-slices at z_subs) to occupancy[portal]."""
    lo, hi = vessels.z_range()
    half, sp, size = grid.size / 2, grid.spacing_mm, grid.size
    z_min, z_max = float(z_subs.min()), float(z_subs.max())
    zs = z_subs.astype(np.float32)[:, None, None]
    for i in np.nonzero((lo <= z_max) & (hi >= z_min))[0]:
        a, b, r = vessels.start[i], vessels.end[i], float(vessels.radius[i])
        reach = r + VESSEL_EDGE_MM
        d = b - a
        if abs(d[2]) > 1e-6:  # the part of the segment within reach of the section
            t0, t1 = sorted(((z_min - reach - a[2]) / d[2], (z_max + reach - a[2]) / d[2]))
            t0, t1 = max(t0, 0.0), min(t1, 1.0)
        else:
            t0, t1 = 0.0, 1.0
        if t0 > t1:
            continue
        xs = (a[0] + t0 * d[0], a[0] + t1 * d[0])
        ys = (a[1] + t0 * d[1], a[1] + t1 * d[1])
        c0 = max(int(np.floor((min(xs) - reach) / sp + half - 0.5)), 0)
        c1 = min(int(np.ceil((max(xs) + reach) / sp + half - 0.5)) + 1, size)
        r0 = max(int(np.floor((min(ys) - reach) / sp + half - 0.5)), 0)
        r1 = min(int(np.ceil((max(ys) + reach) / sp + half - 0.5)) + 1, size)
        if c0 >= c1 or r0 >= r1:
            continue
        px = ((np.arange(c0, c1, dtype=np.float32) + 0.5 - half) * sp)[None, None, :] - np.float32(a[0])
        py = ((np.arange(r0, r1, dtype=np.float32) + 0.5 - half) * sp)[None, :, None] - np.float32(a[1])
        pz = zs - np.float32(a[2])
        dx, dy, dz = (np.float32(v) for v in d)
        t = np.clip((px * dx + py * dy + pz * dz) / np.float32(d @ d + 1e-9), 0, 1)
        dist = np.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2 + (pz - t * dz) ** 2)
        cover = shapes.ramp(dist - r, VESSEL_EDGE_MM).mean(axis=0)
        occupancy[bool(vessels.portal[i])][r0:r1, c0:c1] += cover


# --- lesions in 3-D -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Body:
    """A lesion as a 3-D body: its plan's in-plane shape, scaled by the chord at each z."""

    plan: lesions.LesionPlan
    center_mm: tuple[float, float]
    z_mm: float  # centre, mobile frame
    half_height_mm: float  # craniocaudal semi-axis

    def chord(self, z: float) -> float:
        u = (z - self.z_mm) / self.half_height_mm
        return math.sqrt(1 - u * u) if abs(u) < 1 else 0.0


def _paint_body(
    work: Canvas,
    phase: int,
    body: _Body,
    z_subs: np.ndarray,
    liver_hu: tuple[float, float, float],
    aorta_hu: tuple[float, float, float],
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Paint the body into work.image[phase] as the mean of its sub-slices (partial volume);
    returns its box and mean coverage there, or None where no sub-slice meets it."""
    chords = [body.chord(float(z)) for z in z_subs]
    if max(chords) * body.plan.radius_mm < 0.25:
        return None
    box, _, _ = work.grid(*body.center_mm, body.plan.radius_mm * 1.3 + 0.7)
    base = work.image[phase][box].copy()
    base_alpha = work.alpha[box].copy()
    image_sum = np.zeros_like(base)
    cover_sum = np.zeros_like(base)
    sub_thickness = float(z_subs[1] - z_subs[0]) if len(z_subs) > 1 else SUBSLICE_MM
    for chord in chords:
        work.image[phase][box] = base
        work.alpha[box] = 0.0
        if chord * body.plan.radius_mm >= 0.25:
            lesions.paint_lesion(
                work,
                body.plan,
                body.center_mm,
                phase=phase,
                chord_scale=chord,
                liver_hu=liver_hu,
                aorta_hu=aorta_hu,
                thickness_mm=sub_thickness,
            )
        image_sum += work.image[phase][box]
        cover_sum += work.alpha[box]
    n = np.float32(len(chords))
    work.image[phase][box] = image_sum / n
    work.alpha[box] = np.maximum(base_alpha, cover_sum / n)
    return box, cover_sum / n


# --- the case -------------------------------------------------------------------------------------


def _section_count(half_height_mm: float, interval_mm: float) -> int:
    n = math.ceil((2 * half_height_mm + 2 * MARGIN_MM) / interval_mm) + 1
    return int(np.clip(n, MIN_SECTIONS, MAX_SECTIONS))


def _subslices(z_center: float, thickness: float) -> np.ndarray:
    k = max(3, round(thickness / SUBSLICE_MM))
    return z_center + thickness * ((np.arange(k) + 0.5) / k - 0.5)


def generate_volume_case(cohort: str, seed: int, index: int, size: int | None = None) -> VolumeCase:
    """Image set `index` of a cohort as three short volumes with known truth (module docstring).

    A pure function of (cohort, seed, index, size): the patient, lesion, scanner, in-plane
    lesion position, in-plane misregistration and section jitter are generate_case's own draws."""
    draws: CaseDraws = draw_case(cohort, seed, index, size)
    iset, patient, plan = draws.image_set, draws.patient, draws.plan
    srng = draws.section_rng()
    layers = _anatomy_layers(patient, draws.section_rng(), draws.section_level)
    section = anatomy.render_section(patient, srng, draws.section_level)
    center_mm, z_offsets, extra = place_lesion(draws, section, srng)
    shifts_px = misregistration_px(srng, patient.spacing_mm)
    sp, thickness = patient.spacing_mm, draws.thickness_mm
    hu = patient.hu
    liver_hu, aorta_hu = hu["liver_parenchyma"], hu["aorta"]

    vrng = np.random.default_rng([draws.cohort_key, seed, 8, iset.patient, iset.lesion, iset.section])
    main = _Body(plan, center_mm, draws.z0_mm, plan.radius_mm * float(vrng.uniform(0.85, 1.1)))
    bodies = [
        _Body(
            p,
            c,
            float(vrng.uniform(-0.25, 0.25)) * p.diameter_mm,
            p.radius_mm * float(vrng.uniform(0.85, 1.1)),
        )
        for p, c in extra
    ]
    liver_rows, liver_cols = np.nonzero(section.liver_mask > 0.99)
    liver_xy = np.stack(
        [(liver_cols + 0.5 - spec.MATRIX / 2) * sp, (liver_rows + 0.5 - spec.MATRIX / 2) * sp], 1
    )
    if len(liver_xy) == 0:
        liver_xy = np.array([center_mm])
    vessels = _vessel_trees(vrng, layers, liver_xy, (*center_mm, main.z_mm))
    layers.set_warp(vrng, [(*b.center_mm, b.plan.radius_mm) for b in (main, *bodies)])

    # Table frame: the reference section lies at z_ref; the lesion's arterial centre at z_ref + z0.
    z_ref = DOME_Z_MM - draws.section_level / LEVEL_PER_MM
    lesion_z = z_ref + main.z_mm
    shift_mm: dict[Phase, tuple[float, float, float]] = {}
    for p, ph in enumerate(PHASES):
        dz = 0.0 if ph is Phase.ARTERIAL else float(z_offsets[p] - draws.z0_mm)
        shift_mm[ph] = (shifts_px[p][1] * sp, shifts_px[p][0] * sp, dz)
    section_z: dict[Phase, np.ndarray] = {}
    for ph in PHASES:
        step = thickness[ph]
        n = _section_count(main.half_height_mm, step)
        first = round(lesion_z + (float(vrng.uniform(-0.5, 0.5)) - (n - 1) / 2) * step, 2)
        section_z[ph] = first + step * np.arange(n)

    nrng = np.random.default_rng([draws.cohort_key, seed, 9, iset.index])
    size_factor = (patient.body_width_mm / spec.NOISE_REFERENCE_WIDTH_MM) ** 0.9
    cutoff = 0.42 if patient.vendor.code == "T" else 0.45
    work = Canvas(spec.MATRIX, sp)
    volumes: dict[Phase, np.ndarray] = {}
    noise_sd: dict[Phase, float] = {}
    mask = np.zeros((0,), np.uint8)
    for p, ph in enumerate(PHASES):
        band = spec.NOISE_SD_HU["thick" if ph is Phase.UNENHANCED else "thin"]
        sd = float(nrng.uniform(*band) * size_factor * patient.vendor.noise_factor)
        noise_sd[ph] = sd
        zs = section_z[ph]
        out = np.empty((len(zs), spec.MATRIX, spec.MATRIX), np.int16)
        lesion_cover = np.zeros(out.shape, np.float32) if ph is Phase.ARTERIAL else None
        for k, z_table in enumerate(zs):
            z = float(z_table - z_ref - shift_mm[ph][2])  # the mobile frame's z seen here
            subs = _subslices(z, thickness[ph])
            layers.compose(work, p, z, subs, vessels)
            if plan.flags["bile_duct_dilatation"]:
                near = np.mean([abs(float(s) - main.z_mm) < 0.5 * main.half_height_mm for s in subs])
                if near > 0:
                    before = work.image[p].copy()
                    lesions.paint_ducts(work, plan, center_mm, p, hu["fluid"][0] + 8, draws.lesion_seed)
                    work.image[p] = before + np.float32(near) * (work.image[p] - before)
            for body in bodies:
                _paint_body(work, p, body, subs, liver_hu, aorta_hu)
            painted = _paint_body(work, p, main, subs, liver_hu, aorta_hu)
            if lesion_cover is not None and painted is not None:
                lesion_cover[k][painted[0]] = painted[1]
            img = imaging.composite(section.fixed.image[p], work.image[p], work.alpha, shifts_px[p])
            img = imaging.blur(
                img, psf_sigma_mm=patient.vendor.psf_sigma_mm, thickness_mm=thickness[ph], spacing_mm=sp
            )
            img += imaging.correlated_noise(nrng, spec.MATRIX, sp, sd, cutoff)
            out[k] = imaging.quantise(img)
        if lesion_cover is not None:
            mask = (lesion_cover >= 0.5).astype(np.uint8)
        volumes[ph] = out

    case = VolumeCase(
        image_set=iset,
        cohort=cohort,
        seed=seed,
        hu=volumes,
        spacing_mm=sp,
        thickness_mm=thickness,
        section_z_mm=section_z,
        manufacturer=patient.vendor.manufacturer,
        lesion_center_mm={},
        lesion_center_voxel={},
        shift_mm=shift_mm,
        diameter_mm=float(plan.diameter_mm * np.sqrt(plan.axis_ratio)),
        height_mm=2 * main.half_height_mm,
        lesion_mask=mask,
        flags={
            **plan.flags,
            "cirrhosis": patient.cirrhotic,
            "multiple": plan.flags["multiple"] and bool(extra),
        },
        noise_sd=noise_sd,
    )
    for ph in PHASES:
        dx, dy, dz = shift_mm[ph]
        point = (center_mm[0] + dx, center_mm[1] + dy, lesion_z + dz)
        case.lesion_center_mm[ph] = point
        case.lesion_center_voxel[ph] = case.to_voxel(ph, point)
    return case


# --- writers --------------------------------------------------------------------------------------


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("livercore")
    except PackageNotFoundError:
        return "0"


def series_description(case: VolumeCase, phase: Phase) -> str:
    """What a scanner's protocol calls the phase's series, e.g. 'ART 35s 2.5'."""
    return f"{PHASE_SERIES[phase]} {case.thickness_mm[phase]:.1f}"


def _study(case: VolumeCase) -> tuple[str, str, float]:
    """(StudyInstanceUID, StudyDate, injection time s), synthetic, as phantom/export.py makes them."""
    from livercore.phantom.export import _study_date

    index = case.image_set.index
    injection = 9 * 3600 + (index * 37) % (8 * 3600)  # between 09:00 and 17:00
    return (
        dicom_io.derive_uid(case.case_id, "volume", "study"),
        _study_date(case.cohort, index),
        float(injection),
    )


def series_datasets(case: VolumeCase, phase: Phase, *, describe: bool = True) -> list[Dataset]:
    """One CT Image Storage data set per section of the phase's volume, in volume order (by
    increasing z): ImagePositionPatient, SliceLocation and InstanceNumber per section,
    SliceThickness = SpacingBetweenSlices, orientation (1,0,0,0,1,0); the series description
    names the phase when `describe`, else it is blank."""
    study_uid, study_date, injection = _study(case)
    number = PHASES.index(phase) + 1
    series_uid = dicom_io.derive_uid(case.case_id, "volume", phase.value)
    thickness = case.thickness_mm[phase]
    return [
        dicom_io.ct_slice_dataset(
            section,
            phase=phase,
            pixel_spacing_mm=case.spacing_mm,
            slice_thickness_mm=thickness,
            spacing_between_slices_mm=thickness,
            patient_id=case.image_set.patient_id,
            study_uid=study_uid,
            series_uid=series_uid,
            study_date=study_date,
            injection_time_s=injection,
            manufacturer=case.manufacturer,
            series_number=number,
            position_z_mm=float(z),
            instance_number=k + 1,
            series_description=series_description(case, phase) if describe else "",
        )
        for k, (section, z) in enumerate(zip(case.hu[phase], case.section_z_mm[phase], strict=True))
    ]


def write_dicom_study(
    case: VolumeCase, folder: str | os.PathLike[str], *, describe: bool = True
) -> list[Path]:
    """Write the case as one study of three CT series, one file per section:
    folder/SE<n>/IM<k>.dcm (series numbered in acquisition order: unenhanced, arterial,
    delayed). Returns the paths written."""
    root = Path(folder)
    paths = []
    for n, phase in enumerate(PHASES, start=1):
        series_dir = root / f"SE{n}"
        series_dir.mkdir(parents=True, exist_ok=True)
        for k, ds in enumerate(series_datasets(case, phase, describe=describe), start=1):
            path = series_dir / f"IM{k:04d}.dcm"
            dicom_io.write_dataset(ds, path)
            paths.append(path)
    return paths


def seg_dataset(case: VolumeCase) -> Dataset:
    """A DICOM SEG (highdicom; BINARY, one segment 'lesion') of the arterial lesion mask,
    referencing the arterial series' images (the frames of sections without lesion omitted)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not case.lesion_mask.any():
        raise ValueError(f"{case.case_id}: the lesion mask is empty")
    sources = series_datasets(case, Phase.ARTERIAL)
    _, study_date, injection = _study(case)
    when = dicom_io._tm(injection + 3600)  # written an hour after the scan: deterministic
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="livercore phantom ground truth",
            family=codes.cid7162.MorphologicalOperations,
            version=_software_version(),
        ),
        anatomic_regions=[codes.SCT.Liver],
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=case.lesion_mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=dicom_io.derive_uid(case.case_id, "volume", "seg"),
        series_number=100,
        sop_instance_uid=dicom_io.derive_uid(case.case_id, "volume", "seg", "sop"),
        instance_number=1,
        manufacturer="livercore",
        manufacturer_model_name="livercore phantom",
        software_versions=_software_version(),
        device_serial_number="phantom",
        content_label="LESION",
        content_description="Phantom lesion truth (>= 50 % partial volume)",
        content_creator_name="PHANTOM^TRUTH",
        series_description="Lesion (SEG)",
        series_date=study_date,
        series_time=when,
        content_date=study_date,
        content_time=when,
    )
    seg.PatientIdentityRemoved = "YES"
    seg.DeidentificationMethod = "synthetic phantom"
    return seg


def write_seg(case: VolumeCase, path: str | os.PathLike[str]) -> Path:
    """Write seg_dataset(case) to `path` (a folder gets seg.dcm inside it, beside the series)."""
    target = Path(path)
    if target.is_dir():
        target = target / SEG_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    seg_dataset(case).save_as(target, enforce_file_format=True)
    return target


def ras_affine(case: VolumeCase, phase: Phase) -> np.ndarray:
    """(4, 4) NIfTI affine (RAS, nibabel's convention) of the array `write_nifti_case` stores:
    voxel (i, j, k) with i from the patient's left to right, j from posterior to anterior,
    k from inferior to superior (already RAS+, as nibabel.as_closest_canonical gives)."""
    h, w = case.hu[phase].shape[1:]
    lps = case.affine(phase) @ np.array(
        [[0, 0, 1, 0], [0, -1, 0, h - 1], [-1, 0, 0, w - 1], [0, 0, 0, 1]], float
    )  # (i, j, k) -> (section k, row h-1-j, col w-1-i)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _to_ras(volume: np.ndarray) -> np.ndarray:
    """(Z, H, W) in volume order -> (W, H, Z) RAS+ array (i = W-1-col, j = H-1-row, k = section)."""
    return np.ascontiguousarray(volume[:, ::-1, ::-1].transpose(2, 1, 0))


def write_nifti_case(case: VolumeCase, folder: str | os.PathLike[str]) -> list[Path]:
    """Write unenhanced/arterial/delayed.nii.gz (int16 HU) and mask.nii.gz (uint8, the arterial
    lesion mask in the arterial volume's space) into folder, the layout of
    livercore.nifti_cohort. Returns the paths written."""
    import nibabel as nib

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    items = [(PHASE_FILES[p], case.hu[p], p) for p in PHASES]
    items.append((MASK_FILE, case.lesion_mask, Phase.ARTERIAL))
    paths = []
    for name, data, phase in items:
        image = nib.Nifti1Image(_to_ras(data), ras_affine(case, phase))
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(image.affine, code=1)  # scanner-based anatomical coordinates
        image.set_sform(image.affine, code=1)
        image.header.set_data_dtype(data.dtype)
        path = root / name
        nib.save(image, str(path))
        paths.append(path)
    return paths


def benchmark_label(case: VolumeCase) -> str:
    """A benchmark-style diagnosis for labels.csv ('HCC', 'metastasis', 'hemangioma', 'cyst' ...)."""
    return BENCHMARK_LABELS.get(f"{case.category.value}/{case.subtype}", case.category.info.name)


def truth_row(case: VolumeCase) -> dict[str, object]:
    """One row of truth.csv (module docstring: units and signs)."""
    row: dict[str, object] = {
        "case_id": case.case_id,
        "patient_id": case.image_set.patient_id,
        "category": case.category.value,
        "subtype": case.subtype,
        "vendor": case.image_set.vendor,
        "diameter_mm": round(case.diameter_mm, 3),
        "height_mm": round(case.height_mm, 3),
        "pixel_spacing_mm": round(case.spacing_mm, 6),
    }
    for phase in PHASES:
        v = phase.value
        row[f"n_sections_{v}"] = int(case.hu[phase].shape[0])
        row[f"section_mm_{v}"] = case.thickness_mm[phase]
        for axis, value in zip("xyz", case.lesion_center_mm[phase], strict=True):
            row[f"lesion_{axis}_mm_{v}"] = round(value, 3)
        for axis, value in zip(("section", "row", "col"), case.lesion_center_voxel[phase], strict=True):
            row[f"lesion_{axis}_{v}"] = round(value, 3)
        for axis, value in zip("xyz", case.shift_mm[phase], strict=True):
            row[f"shift_{axis}_mm_{v}"] = round(value, 3)
    return row


def write_direct(case: VolumeCase, writer: CohortWriter) -> list[dict[str, object]]:
    """The case written straight from its truth in the cohort format (the "direct export" that
    importers are measured against): the sections livercore.annotation picks from the true
    arterial mask, in each phase the section through the true lesion position (the arterial
    point plus the true breath-hold shift) and the true centre there."""
    arterial = SeriesVolume.from_affine(case.hu[Phase.ARTERIAL], case.affine(Phase.ARTERIAL))
    lesion = annotation.lesions_from_mask(case.lesion_mask, arterial)[0]
    rows = []
    for n, section in enumerate(lesion.sections):
        point = np.asarray(arterial.to_patient((section.index, *section.centre)))
        image_set = {}
        for phase in PHASES:
            k, r, c = case.to_voxel(phase, point + np.asarray(case.shift_mm[phase]))
            if not 0 <= round(k) < case.hu[phase].shape[0]:
                break
            image_set[phase] = Section(
                case.hu[phase][round(k)], case.spacing_mm, case.thickness_mm[phase], (r, c), case.manufacturer
            )
        else:
            rows.append(
                writer.add(
                    case.case_id if n == 0 else f"{case.case_id}-s{n + 1}",
                    patient_key=case.image_set.patient_id,
                    patient_id=case.image_set.patient_id,
                    category=case.category,
                    subtype=case.subtype,
                    lesion_id=case.case_id,
                    sections=image_set,
                    diameter_mm=section.diameter_mm,
                    vendor=case.image_set.vendor,
                )
            )
    return rows


def _export_one(
    args: tuple[str, int, int | None, int, str, tuple[str, ...], bool],
) -> dict[str, Any]:
    cohort_name, seed, size, index, out, formats, describe = args
    case = generate_volume_case(cohort_name, seed, index, size)
    root = Path(out)
    if "dicom" in formats:
        folder = root / "dicom" / case.case_id
        write_dicom_study(case, folder, describe=describe)
        write_seg(case, folder / SEG_FILE)
    if "nifti" in formats:
        write_nifti_case(case, root / "nifti" / case.case_id)
    direct = write_direct(case, CohortWriter(root / "cohort", cohort_name)) if "cohort" in formats else []
    x, y, z = case.lesion_center_mm[Phase.ARTERIAL]
    base = {"case_id": case.case_id, "category": case.category.value, "subtype": case.subtype}
    return {
        "direct": direct,
        "truth": {**truth_row(case), "index": index},
        "point": {
            **base,
            "x_mm": round(x, 3),
            "y_mm": round(y, 3),
            "z_mm": round(z, 3),
            "diameter_mm": round(case.diameter_mm, 3),
        },
        "label": {
            "case_id": case.case_id,
            "label": benchmark_label(case),
            "category": case.category.value,
            "subtype": case.subtype,
        },
    }


def export_volumes(
    cohort: str,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    size: int | None = None,
    formats: Iterable[str] = ("dicom", "nifti"),
    workers: int | None = None,
    describe: bool = True,
) -> pd.DataFrame:
    """Write every case of a cohort as volumes with their truth; returns truth.csv's table.

    out/dicom/<case_id>/SE1..SE3/IM*.dcm and seg.dcm, out/dicom/points.csv (case_id, category,
    subtype, x_mm, y_mm, z_mm, diameter_mm: the arterial lesion centre in LPS mm);
    out/nifti/<case_id>/{unenhanced,arterial,delayed,mask}.nii.gz, out/nifti/labels.csv
    (case_id, label, category, subtype); with "cohort", out/cohort/ (write_direct: the cohort
    format straight from the truth); out/truth.csv (truth_row per case). One case at a
    time per worker process (memory does not grow with the cohort)."""
    chosen = tuple(formats)
    unknown = set(chosen) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; expected some of {FORMATS}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    n = len(cohort_layout(cohort, seed, size))
    jobs = [(cohort, seed, size, i, str(root), chosen, describe) for i in range(n)]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers == 1:
        rows = [_export_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_export_one, jobs, chunksize=1))
    truth = pd.DataFrame([r["truth"] for r in rows])
    truth.to_csv(root / "truth.csv", index=False)
    if "dicom" in chosen:
        pd.DataFrame([r["point"] for r in rows]).to_csv(root / "dicom" / "points.csv", index=False)
    if "nifti" in chosen:
        pd.DataFrame([r["label"] for r in rows]).to_csv(root / "nifti" / "labels.csv", index=False)
    if "cohort" in chosen:
        write_manifest([row for r in rows for row in r["direct"]], root / "cohort")
    return truth
