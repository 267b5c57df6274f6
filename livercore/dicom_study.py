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
import pandas as pd

from livercore import dicom_io
from livercore.errors import InputError
from livercore.file_kind import sniff
from livercore.measure import aorta_in_slice
from livercore.phases import phase_hint
from livercore.vocab import PHASES, Category, Phase

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
    slices: tuple[dicom_io.CTSlice, ...]  # in volume order
    kind: str | None  # "unenhanced", "arterial", "portal-venous", "delayed", or None (unknown)
    kind_reason: str = ""  # what suggested it: the description, or the aorta's HU

    @property
    def description(self) -> str:
        return self.slices[0].series_description

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
    """The paper's three phases from a study's series: each from the series whose header names
    it (for the delayed phase, the `late` kind first, then the other late phase), the rest by
    acquisition time (earliest unenhanced, then arterial, latest delayed). InputError when the
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
    for phase, kinds in wanted.items():
        for kind in kinds:
            match = next(
                (i for i, v in enumerate(series) if v.kind == kind and i not in chosen.values()), None
            )
            if match is not None:
                chosen[phase] = match
                reasons[phase] = f"its description says {kind}"
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


# --- a site's studies and lesion points -> the cohort format ---------------------------------------

POINT_COLUMNS = ("case_id", "category", "x_mm", "y_mm", "z_mm", "diameter_mm")  # then optional subtype


def read_points(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV of one lesion per row: the case (a study's folder name), its category A-E, its
    centre in patient coordinates (mm, DICOM LPS, as a PACS viewer's cursor reads) and its
    diameter (mm); optional subtype. InputError (a sentence) for a file that is not one."""
    try:
        table = pd.read_csv(path, dtype={"case_id": str, "category": str, "subtype": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"The points file could not be read as CSV: {err}") from err
    missing = [c for c in POINT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"The points file lacks the column(s): {', '.join(missing)}.")
    bad = sorted(set(table["category"].astype(str).str.upper()) - {c.value for c in Category})
    if bad:
        raise InputError(f"The points file has categories other than A-E: {', '.join(bad[:5])}.")
    return table


def import_studies(
    folder: str | os.PathLike[str],
    points: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    late: str = DELAYED,
) -> pd.DataFrame:
    """A site's PACS export (one subfolder per case, named by its case_id) with a points CSV ->
    livercore's cohort format: for each lesion, the proposed three phases (propose_phases), in
    each the section through the point and the point's (row, col) there, written as three
    single-slice CT files with synthetic identifiers and out/manifest.csv (read by
    `livercore study run --train`). One study is read at a time."""
    root, dest = Path(folder), Path(out)
    table = read_points(points)
    rows = []
    for n, (case_id, lesions) in enumerate(table.groupby("case_id", sort=False), start=1):
        studies = read_studies(root / str(case_id))
        if len(studies) != 1:
            raise InputError(f"The folder of case {case_id} holds {len(studies)} studies; one is expected.")
        (study,) = studies
        proposal = propose_phases(study, late=late)
        for k, lesion in enumerate(lesions.itertuples(index=False), start=1):
            lesion_id = f"{case_id}-{k}" if len(lesions) > 1 else str(case_id)
            point = (float(lesion.x_mm), float(lesion.y_mm), float(lesion.z_mm))
            row: dict[str, object] = {
                "case_id": lesion_id,
                "patient_id": f"SITE{n:05d}",
                "cohort": root.name,
                "category": str(lesion.category).upper(),
                "subtype": lesion.subtype if isinstance(getattr(lesion, "subtype", None), str) else "",
                "lesion_diameter_mm": float(lesion.diameter_mm),
            }
            (dest / lesion_id).mkdir(parents=True, exist_ok=True)
            for s, phase in enumerate(PHASES, start=1):
                volume = study.series[proposal.series[phase]]
                section, r, c = volume.to_voxel(point)
                index = round(section)
                if not 0 <= index < volume.hu.shape[0]:
                    raise InputError(
                        f"Case {case_id}: the point lies outside the {phase.value} series "
                        f"(section {section:.1f} of {volume.hu.shape[0]})."
                    )
                ds = dicom_io.ct_slice_dataset(
                    volume.hu[index],
                    phase=phase,
                    pixel_spacing_mm=volume.spacing_mm[1],
                    slice_thickness_mm=volume.slices[index].slice_thickness_mm or volume.spacing_mm[0],
                    patient_id=str(row["patient_id"]),
                    study_uid=dicom_io.derive_uid(root.name, lesion_id),
                    series_uid=dicom_io.derive_uid(root.name, lesion_id, phase.value),
                    study_date="20000101",
                    injection_time_s=36_000.0,
                    manufacturer=volume.slices[index].manufacturer,
                    series_number=s,
                )
                dicom_io.write_dataset(ds, dest / lesion_id / f"{phase.value}.dcm")
                row[phase.value] = f"{lesion_id}/{phase.value}.dcm"
                row[f"lesion_row_{phase.value}"], row[f"lesion_col_{phase.value}"] = round(r, 2), round(c, 2)
            rows.append(row)
    manifest = pd.DataFrame(rows)
    dest.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(dest / "manifest.csv", index=False)
    return manifest
