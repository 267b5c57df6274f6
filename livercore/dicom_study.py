"""Multiphase CT studies as hospitals export them: a folder (or zip) of DICOM files from one or
many studies -> studies -> series -> HU volumes with their patient-space geometry.

Slices are grouped by StudyInstanceUID and SeriesInstanceUID (kept in memory only: a study is
shown as "study 1", a series by its number, description and time), sorted along the slice
normal (ImageOrientationPatient x ImagePositionPatient) and stacked into a (Z, H, W) float32
volume in HU. A series that cannot be one volume says why in a sentence: mixed orientations,
matrix sizes or pixel spacings, two slices at one position, a missing slice, uneven spacing, or
more voxels than MAX_VOLUME_VOXELS.

Each series gets the phase its header suggests (livercore.phases.phase_hint, plus portal-venous,
which the paper's protocol has not), and `propose_phases` fills the paper's three phases of a
study from those hints and the acquisition times; the user picks which late phase, portal-venous
or delayed, plays the paper's "delayed", and confirms the rest (the aorta check of
livercore.phases applies to the chosen slices as for any upload).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livercore import dicom_io
from livercore.errors import InputError
from livercore.file_kind import sniff
from livercore.measure import aorta_in_slice
from livercore.phases import phase_hint
from livercore.vocab import Phase

MAX_FILES = 20_000  # a folder of several studies; each file is read one at a time
MAX_VOLUME_VOXELS = 1000 * 512 * 512  # 1000 sections of 512 x 512 (1 GiB of float32): one series
POSITION_TOLERANCE_MM = 0.01  # two slices closer than this along the normal are at one position
SPACING_TOLERANCE = 0.1  # gaps within 10 % of the median spacing are even
ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by more belong to another orientation
PORTAL_VENOUS = "portal-venous"
DELAYED = "delayed"
LATE_PHASES = (PORTAL_VENOUS, DELAYED)
# Where a series' description names no phase, its aorta's attenuation (HU, on the middle
# section) suggests one, a rough guide for the user to confirm: a late arterial aorta is
# brightest (250-400 HU), portal-venous about 170-280 (the real HCC048 series: about 220),
# a 3-minute delayed phase 90-170 (the phantom: 138); an unenhanced aorta (about 40 HU) is not
# found by its attenuation at all, so it stays unknown.
AORTA_KIND_HU = ((280.0, "arterial"), (170.0, "portal-venous"), (90.0, "delayed"))
# Searched in the series description after lower-casing and turning punctuation into spaces.
_PORTAL = re.compile(r"\b(portal|pv|pvp|venous|portal venous|70 ?s|60 ?s|80 ?s)\b")


@dataclass(frozen=True, eq=False)
class SeriesVolume:
    """One CT series as a volume, in patient space."""

    number: int  # 1-based, in acquisition order within its study
    hu: np.ndarray  # (Z, H, W) float32 in HU, read-only, sorted along the slice normal
    spacing_mm: tuple[float, float, float]  # (between sections, rows, columns)
    origin_mm: tuple[float, ...] | None  # ImagePositionPatient of the first section (x, y, z)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (row then column cosines)
    slices: tuple[dicom_io.CTSlice, ...] = ()  # in volume order; () for a volume not read from DICOM
    kind: str | None = None  # "unenhanced", "arterial", "portal-venous", "delayed", or None (unknown)
    kind_reason: str = ""  # what suggested it: the description, or the aorta's HU
    name: str = ""  # a volume not read from DICOM: what it is called (e.g. its NIfTI file)

    @property
    def description(self) -> str:
        return self.slices[0].series_description if self.slices else self.name

    @property
    def slice_thickness_mm(self) -> float:
        """The sections' nominal thickness (the header's, else the spacing between sections)."""
        thickness = self.slices[0].slice_thickness_mm if self.slices else None
        return float(thickness or self.spacing_mm[0])

    @property
    def manufacturer(self) -> str:
        return self.slices[0].manufacturer if self.slices else ""

    @property
    def acquisition_time_s(self) -> float | None:
        times = [s.acquisition_time_s for s in self.slices if s.acquisition_time_s is not None]
        return min(times) if times else None

    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.origin_mm is None or self.orientation is None:
            raise InputError(
                f"Series {self.number} has no patient-space geometry (ImagePositionPatient, "
                "ImageOrientationPatient): points in millimetres cannot be placed in it."
            )
        row_dir = np.asarray(self.orientation[:3])  # direction along a row: columns grow
        col_dir = np.asarray(self.orientation[3:])  # direction down a column: rows grow
        return np.asarray(self.origin_mm), row_dir, col_dir, np.cross(row_dir, col_dir)

    def to_voxel(self, point_mm: Sequence[float]) -> tuple[float, float, float]:
        """(section, row, col), fractional, of a point in patient coordinates (mm, DICOM LPS)."""
        origin, row_dir, col_dir, normal = self._axes()
        d = np.asarray(point_mm, float) - origin
        dz, dr, dc = self.spacing_mm
        return float(d @ normal / dz), float(d @ col_dir / dr), float(d @ row_dir / dc)

    def to_patient(self, voxel: Sequence[float]) -> tuple[float, float, float]:
        """The patient coordinates (mm, DICOM LPS) of a (section, row, col) position."""
        origin, row_dir, col_dir, normal = self._axes()
        k, r, c = (float(v) for v in voxel)
        dz, dr, dc = self.spacing_mm
        x, y, z = origin + k * dz * normal + r * dr * col_dir + c * dc * row_dir
        return float(x), float(y), float(z)

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) map from (section, row, col, 1) to patient coordinates (mm, DICOM LPS)."""
        origin, row_dir, col_dir, normal = self._axes()
        dz, dr, dc = self.spacing_mm
        out = np.eye(4)
        out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = normal * dz, col_dir * dr, row_dir * dc, origin
        return out

    @classmethod
    def from_affine(
        cls, hu: np.ndarray, affine: np.ndarray, *, number: int = 1, name: str = "", kind: str | None = None
    ) -> SeriesVolume:
        """A volume (Z, H, W) whose (section, row, col) maps to LPS mm by `affine` (4, 4), as a
        NIfTI file or a DICOM SEG gives it; sections are reordered, if needed, so that they run
        along the normal of the rows and columns (the convention of to_voxel / to_patient)."""
        a = np.asarray(affine, float)
        steps = np.linalg.norm(a[:3, :3], axis=0)
        if np.any(steps <= 0) or not np.all(np.isfinite(a)):
            raise InputError(f"{name or 'The volume'} has a degenerate geometry (its affine).")
        col_dir, row_dir = a[:3, 1] / steps[1], a[:3, 2] / steps[2]
        origin = a[:3, 3]
        data = np.asarray(hu)
        if float(np.dot(a[:3, 0], np.cross(row_dir, col_dir))) < 0:
            origin = origin + a[:3, 0] * (data.shape[0] - 1)
            data = data[::-1]
        data = np.ascontiguousarray(data)
        data.setflags(write=False)
        return cls(
            number=number,
            hu=data,
            spacing_mm=(float(steps[0]), float(steps[1]), float(steps[2])),
            origin_mm=tuple(float(v) for v in origin),
            orientation=(*(float(v) for v in row_dir), *(float(v) for v in col_dir)),
            kind=kind,
            kind_reason="its file name" if kind else "",
            name=name,
        )

    def resample_onto(self, grid: SeriesVolume, *, order: int = 0) -> np.ndarray:
        """This volume's values at the voxel centres of `grid`, (Z, H, W) float32, through
        patient coordinates (order 0: nearest, for masks); 0 outside this volume. Section by
        section, so memory stays at a few sections whatever the volumes' size."""
        from scipy.ndimage import map_coordinates

        to_self = np.linalg.inv(self.affine) @ grid.affine
        z, h, w = grid.hu.shape
        r, c = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        plane = np.stack([np.zeros(h * w), r.ravel(), c.ravel(), np.ones(h * w)])
        out = np.zeros((z, h, w), np.float32)
        depth = self.hu.shape[0]
        for k in range(z):
            plane[0] = k
            where = (to_self @ plane)[:3]
            if where[0].max() < -0.5 or where[0].min() > depth - 0.5:
                continue
            out[k] = map_coordinates(self.hu, where, order=order, mode="constant", cval=0.0).reshape(h, w)
        return out

    def label(self) -> str:
        """'series 2: ART 35s, 16 sections of 5.0 mm, looks arterial' (no identifiers)."""
        what = f"series {self.number}: {self.description or 'no description'}"
        shape = f"{self.hu.shape[0]} sections of {self.spacing_mm[0]:.1f} mm"
        return f"{what}, {shape}" + (f", looks {self.kind} ({self.kind_reason})" if self.kind else "")


@dataclass(frozen=True, eq=False)
class ImagingStudy:
    """One study's CT series, numbered in acquisition order."""

    number: int
    series: tuple[SeriesVolume, ...]
    notes: tuple[str, ...] = ()  # series that could not be made volumes, with why


def series_kind(ct_slice: dicom_io.CTSlice) -> str | None:
    """The phase a series' header suggests: the protocol's three (phase_hint) or portal-venous."""
    words = " " + re.sub(r"[^a-z0-9]+", " ", ct_slice.series_description.lower()).strip() + " "
    hint = phase_hint(ct_slice)
    if hint is None and _PORTAL.search(words):
        return PORTAL_VENOUS
    return hint.value if hint is not None else None


def kind_by_aorta(volume: np.ndarray, spacing_mm: float) -> tuple[str, float] | None:
    """(kind, aortic HU) from the aorta on the middle section of a (Z, H, W) volume in HU, by
    AORTA_KIND_HU; None when no opacified aorta is found there."""
    found = aorta_in_slice(volume[volume.shape[0] // 2], spacing_mm)
    if found is None:
        return None
    hu = float(found[1])
    kind = next((k for floor, k in AORTA_KIND_HU if hu >= floor), None)
    return (kind, hu) if kind else None


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, col)


def build_volume(slices: Sequence[dicom_io.CTSlice], *, number: int = 1) -> SeriesVolume:
    """Stack one series' slices into a volume along the slice normal; InputError (a sentence)
    when they cannot be one volume."""
    if not slices:
        raise InputError("The series has no CT slices.")
    name = f"Series {number}"
    if len({s.hu.shape for s in slices}) > 1:
        raise InputError(f"{name} mixes image sizes; its slices cannot be stacked into one volume.")
    if len({tuple(round(v, 4) for v in s.pixel_spacing_mm) for s in slices}) > 1:
        raise InputError(f"{name} mixes pixel spacings; its slices cannot be stacked into one volume.")
    h, w = slices[0].hu.shape
    if len(slices) * h * w > MAX_VOLUME_VOXELS:
        raise InputError(
            f"{name} has {len(slices)} sections of {h} x {w}: more than {MAX_VOLUME_VOXELS // (512 * 512)} "
            "sections of 512 x 512, too large to load; export the liver's sections only."
        )
    orientations = [s.orientation for s in slices]
    if all(o is not None for o in orientations):
        first = np.asarray(orientations[0])
        if any(np.abs(np.asarray(o) - first).max() > ORIENTATION_TOLERANCE for o in orientations):
            raise InputError(
                f"{name} mixes slice orientations (ImageOrientationPatient); export one orientation."
            )
        normal = _normal(orientations[0])  # type: ignore[arg-type]
    else:
        normal = np.array([0.0, 0.0, 1.0])
    if all(s.position_mm is not None for s in slices):
        depth = np.array([float(np.dot(normal, s.position_mm)) for s in slices])  # type: ignore[arg-type]
    elif all(s.position_z_mm is not None for s in slices):
        depth = np.array([float(s.position_z_mm) for s in slices])  # type: ignore[arg-type]
    else:
        raise InputError(
            f"{name} has slices without a position (ImagePositionPatient); they cannot be ordered."
        )
    order = np.argsort(depth, kind="stable")
    depth = depth[order]
    ordered = tuple(slices[i] for i in order)
    gaps = np.diff(depth)
    if len(gaps) and gaps.min() < POSITION_TOLERANCE_MM:
        at = float(depth[int(np.argmin(gaps))])
        raise InputError(
            f"{name} has two slices at the same position ({at:.1f} mm): a duplicate or a second pass."
        )
    spacing = float(np.median(gaps)) if len(gaps) else float(slices[0].slice_thickness_mm or 0.0)
    if len(gaps) and np.abs(gaps - spacing).max() > SPACING_TOLERANCE * spacing:
        worst = int(np.argmax(np.abs(gaps - spacing)))
        missing = round(gaps[worst] / spacing) - 1
        where = f"between {depth[worst]:.1f} and {depth[worst + 1]:.1f} mm"
        raise InputError(
            f"{name} has {missing} missing slice(s) {where} (sections every {spacing:.1f} mm elsewhere)."
            if missing >= 1
            else f"{name} has uneven section spacing ({gaps[worst]:.1f} mm {where}, {spacing:.1f} mm elsewhere)."
        )
    volume = np.stack([s.hu for s in ordered]).astype(np.float32, copy=False)
    volume.setflags(write=False)
    row, col = ordered[0].pixel_spacing_mm
    kind, reason = series_kind(ordered[0]), "its description"
    if kind is None and (by_aorta := kind_by_aorta(volume, float(row))) is not None:
        kind, reason = by_aorta[0], f"aorta {by_aorta[1]:.0f} HU"
    return SeriesVolume(
        number=number,
        hu=volume,
        spacing_mm=(spacing, float(row), float(col)),
        origin_mm=ordered[0].position_mm,
        orientation=ordered[0].orientation,
        slices=ordered,
        kind=kind,
        kind_reason=reason if kind else "",
    )


def group_studies(slices: Iterable[dicom_io.CTSlice]) -> list[ImagingStudy]:
    """Group CT slices into studies and series and build each series' volume; a series that
    cannot be one volume is left out with its sentence in the study's notes."""
    by_study: dict[str, dict[str, list[dicom_io.CTSlice]]] = {}
    for s in slices:
        by_study.setdefault(s.study_uid, {}).setdefault(s.series_uid, []).append(s)

    def first_time(group: list[dicom_io.CTSlice]) -> float:
        times = [s.acquisition_time_s for s in group if s.acquisition_time_s is not None]
        return min(times) if times else float("inf")

    studies = []
    ordered = sorted(by_study.values(), key=lambda st: min(first_time(g) for g in st.values()))
    for number, series in enumerate(ordered, start=1):
        volumes, notes = [], []
        for k, group in enumerate(sorted(series.values(), key=first_time), start=1):
            try:
                volumes.append(build_volume(group, number=k))
            except InputError as err:
                notes.append(str(err))
        studies.append(ImagingStudy(number, tuple(volumes), tuple(notes)))
    return studies


def read_studies(source: str | os.PathLike[str] | bytes, *, max_files: int = MAX_FILES) -> list[ImagingStudy]:
    """The CT studies of a folder (searched recursively) or of a zip archive (a path or its
    bytes, read in memory). Files that are not DICOM, and DICOM objects that are not CT images
    (reports, presentation states, DICOMDIR), are skipped; a damaged CT file is an InputError
    naming its place in the folder, not its header."""
    if isinstance(source, bytes):
        return group_studies(dicom_io.read_zip_slices(source, max_slices=max_files))
    root = Path(source)
    if root.is_file():
        data = root.read_bytes()
        if sniff(data) == "zip":
            return group_studies(dicom_io.read_zip_slices(data, max_slices=max_files))
        return group_studies([dicom_io.read_ct_slice(data)])
    if not root.is_dir():
        raise InputError(f"{root} is neither a folder nor a zip archive.")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if len(files) > max_files:
        raise InputError(f"The folder holds {len(files)} files, more than the {max_files} one import reads.")
    slices = []
    for i, path in enumerate(files, start=1):
        with path.open("rb") as fp:
            head = fp.read(132)
        if sniff(head) != "dicom":
            continue
        try:
            slices.append(dicom_io.read_ct_slice(path))
        except InputError as err:
            if "not a CT image" in str(err) or "no image" in str(err):
                continue
            raise InputError(f"File {i} of {len(files)} in the folder: {err}") from err
    if not slices:
        raise InputError("The folder holds no CT slices.")
    return group_studies(slices)


@dataclass(frozen=True)
class PhaseProposal:
    """Which series of a study plays each of the paper's phases, and why (for the user to confirm)."""

    series: dict[Phase, int]  # paper phase -> index into study.series
    reasons: dict[Phase, str]


def propose_phases(study: ImagingStudy, *, late: str = DELAYED) -> PhaseProposal:
    """The paper's three phases from a study's series: each from the series whose description
    names it (for the delayed phase, the `late` kind first, then the other late phase), the
    rest by acquisition time (earliest unenhanced, then arterial, latest delayed); the kind the
    aorta's HU suggests decides only for series without acquisition times. InputError when the
    study has fewer than three series."""
    if late not in LATE_PHASES:
        raise ValueError(f"late must be one of {LATE_PHASES}")
    series = study.series
    if len(series) < 3:
        raise InputError(
            f"Study {study.number} has {len(series)} CT series that can be volumes; three phases are needed."
        )
    chosen: dict[Phase, int] = {}
    reasons: dict[Phase, str] = {}
    wanted = {
        Phase.UNENHANCED: ("unenhanced",),
        Phase.ARTERIAL: ("arterial",),
        Phase.DELAYED: (late, *(k for k in LATE_PHASES if k != late)),
    }
    # A description names the phase; acquisition times order the rest. The aorta's HU is a
    # rough guide (a late arterial aorta of 270 HU reads as portal-venous), so it decides only
    # among series without acquisition times.
    untimed = [v.acquisition_time_s is None for v in series]
    for phase, kinds in wanted.items():
        for kind in kinds:
            match = next(
                (
                    i
                    for i, v in enumerate(series)
                    if v.kind == kind
                    and i not in chosen.values()
                    and (v.kind_reason == "its description" or untimed[i])
                ),
                None,
            )
            if match is not None:
                chosen[phase] = match
                reasons[phase] = (
                    f"its description says {kind}"
                    if series[match].kind_reason == "its description"
                    else f"looks {kind} ({series[match].kind_reason})"
                )
                break
    free = sorted(
        (i for i in range(len(series)) if i not in chosen.values()),
        key=lambda i: (series[i].acquisition_time_s is None, series[i].acquisition_time_s or 0.0),
    )
    for phase in (Phase.UNENHANCED, Phase.ARTERIAL):
        if phase not in chosen and free:
            chosen[phase] = free.pop(0)
            reasons[phase] = "by acquisition time"
    if Phase.DELAYED not in chosen and free:
        chosen[Phase.DELAYED] = free.pop()
        reasons[Phase.DELAYED] = "the latest series left"
    return PhaseProposal(chosen, reasons)
