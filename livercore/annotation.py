"""Lesion annotations as sites and benchmarks hold them -> lesions in the annotated volume.

Three sources, one result (`Lesion`: its centre in patient millimetres, its diameter, and the
sections an importer writes):

- a label mask (NIfTI, any grid: resampled onto the annotated series through patient
  coordinates): `lesions_from_mask`;
- a DICOM SEG (highdicom) referencing one of the study's series: `read_seg`, then
  `lesions_from_mask`;
- a point in patient millimetres with a diameter (a PACS viewer's cursor): `lesion_from_point`.

Each connected component of a mask (3-D, 26-connectivity) is one lesion. Its diameter is that
of a disc with the area of its largest section (mm), the section the paper tests on; training
takes several sections of a lesion (the paper's training set had up to five table positions
per lesion): the largest and up to TRAIN_SECTIONS - 1 more whose area is at least
MIN_AREA_SHARE of it, at least MIN_GAP_MM apart (adjacent thin sections repeat each other).
Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livercore.dicom_study import SeriesVolume
from livercore.errors import InputError

TRAIN_SECTIONS = 5  # the paper: up to five table positions of one lesion in the training set
MIN_AREA_SHARE = 0.5  # a training section shows at least half the largest section's area
MIN_GAP_MM = 5.0  # training sections at least this far apart (the paper's 5 mm sections)
MIN_LESION_MM3 = 14.0  # components smaller than a 3 mm sphere are noise in a mask


@dataclass(frozen=True)
class LesionSection:
    """One section of a lesion in the annotated volume."""

    index: int  # section index in the annotated volume
    centre: tuple[float, float]  # (row, col), the centroid of the lesion's area there
    diameter_mm: float  # the diameter of a disc of the lesion's area there


@dataclass(frozen=True)
class Lesion:
    """One lesion of an annotation, in the annotated volume."""

    number: int  # 1-based, largest lesion first
    centre_mm: tuple[float, float, float]  # centre of its largest section, patient mm (LPS)
    diameter_mm: float  # of its largest section
    sections: tuple[LesionSection, ...]  # largest first, then the other training sections
    volume_ml: float | None = None  # None for a point

    @property
    def largest(self) -> LesionSection:
        return self.sections[0]


def lesions_from_mask(mask: np.ndarray, volume: SeriesVolume) -> list[Lesion]:
    """The lesions of a label mask (Z, H, W) on `volume`'s grid (> 0 inside a lesion), largest
    first. InputError when the mask marks none."""
    from scipy import ndimage

    binary = np.asarray(mask) > 0
    if binary.shape != volume.hu.shape:
        raise InputError(
            f"The mask has {binary.shape} voxels but its series {volume.hu.shape}; resample it onto the series first."
        )
    labels, _ = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    dz, dr, dc = volume.spacing_mm
    voxel_mm3 = dz * dr * dc
    found = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        part = labels[box] == number
        if part.sum() * voxel_mm3 < MIN_LESION_MM3:
            continue
        areas = part.sum(axis=(1, 2)) * dr * dc  # mm^2 per section of the box
        sections = []
        for k in _training_sections(areas, dz):
            rows, cols = np.nonzero(part[k])
            sections.append(
                LesionSection(
                    int(box[0].start + k),
                    (float(rows.mean() + box[1].start), float(cols.mean() + box[2].start)),
                    float(2 * np.sqrt(areas[k] / np.pi)),
                )
            )
        top = sections[0]
        centre = volume.to_patient((top.index, *top.centre))
        found.append(
            Lesion(0, centre, top.diameter_mm, tuple(sections), float(part.sum() * voxel_mm3 / 1000))
        )
    if not found:
        raise InputError("The mask marks no lesion (no connected region larger than a 3 mm sphere).")
    found.sort(key=lambda lesion: -(lesion.volume_ml or 0.0))
    return [
        Lesion(i, f.centre_mm, f.diameter_mm, f.sections, f.volume_ml) for i, f in enumerate(found, start=1)
    ]


def _training_sections(areas: np.ndarray, spacing_mm: float) -> list[int]:
    """Indices into `areas`: the largest first, then others by area (>= MIN_AREA_SHARE of the
    largest, >= MIN_GAP_MM from those taken), at most TRAIN_SECTIONS."""
    order = np.argsort(-areas, kind="stable")
    chosen = [int(order[0])]
    for k in order[1:]:
        if len(chosen) == TRAIN_SECTIONS or areas[k] < MIN_AREA_SHARE * areas[order[0]]:
            break
        if all(abs(int(k) - j) * spacing_mm >= MIN_GAP_MM - 1e-6 for j in chosen):
            chosen.append(int(k))
    return chosen


def lesion_from_point(
    point_mm: tuple[float, float, float], diameter_mm: float, volume: SeriesVolume
) -> Lesion:
    """A lesion given by its centre in patient mm and its diameter: one section, the one
    through the point. InputError when the point lies outside the volume."""
    k, r, c = volume.to_voxel(point_mm)
    z, h, w = volume.hu.shape
    if not (-0.5 <= k < z - 0.5 and 0 <= r < h and 0 <= c < w):
        raise InputError(f"The point lies outside the series (section {k:.1f} of {z}).")
    if not np.isfinite(diameter_mm) or diameter_mm <= 0:
        raise InputError("The lesion's diameter must be a positive number of millimetres.")
    index = round(k)
    section = LesionSection(index, (r, c), float(diameter_mm))
    return Lesion(1, volume.to_patient((index, r, c)), float(diameter_mm), (section,))


# --- DICOM SEG ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegMask:
    """A DICOM SEG's lesion mask: its own grid, and the series it was drawn on."""

    volume: SeriesVolume  # hu holds the mask (1 inside), geometry from the SEG's frames
    series_uid: str  # the referenced series (kept in memory only)


MAX_SEG_BYTES = 512 * 2**20


def read_seg(path: str | os.PathLike[str]) -> SegMask:
    """A DICOM SEG (highdicom) as a mask volume in patient space: all segments together
    (a lesion mask; feature segments such as capsule or washout belong in separate files).
    InputError (a sentence) for a file that is not a readable segmentation of a regular
    volume."""
    import highdicom as hd
    import pydicom

    file = Path(path)
    try:
        if file.stat().st_size > MAX_SEG_BYTES:
            raise InputError(f"The SEG file is larger than {MAX_SEG_BYTES // 2**20} MiB.")
        ds = pydicom.dcmread(file)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise InputError("The SEG file could not be read as DICOM.") from err
    if str(getattr(ds, "Modality", "")) != "SEG":
        raise InputError(
            f"The file is a DICOM {getattr(ds, 'Modality', 'object')} object, not a segmentation (SEG)."
        )
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        vol = seg.get_volume(combine_segments=True, relabel=True)
    except (ValueError, RuntimeError, AttributeError, KeyError) as err:
        raise InputError(f"The SEG does not describe a regular volume of sections: {err}") from err
    referenced = getattr(seg, "ReferencedSeriesSequence", None) or []
    series_uid = str(referenced[0].SeriesInstanceUID) if referenced else ""
    mask = (np.asarray(vol.array) > 0).astype(np.float32)
    return SegMask(SeriesVolume.from_affine(mask, vol.affine, name="segmentation"), series_uid)
