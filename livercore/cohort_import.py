"""A site's studies and their lesion annotations -> the cohort format (livercore.cohort).

One pipeline for every source:

1. a case's three phases as volumes in patient space (livercore.dicom_study for a PACS export,
   livercore.nifti_cohort for a NIfTI benchmark);
2. its lesions in the annotated phase (livercore.annotation: a label mask, a DICOM SEG, or a
   point in patient mm);
3. each lesion carried to the other phases through patient coordinates, then refined for the
   breath-hold shift between phases (livercore.registration); the shift is written per phase and
   an implausible one flags the row for review (the ``review`` column);
4. the lesion's sections written as image sets (the largest, which a test uses, and up to four
   more for training: livercore.annotation.TRAIN_SECTIONS), three single-slice CT files each.

Cases are read and written one at a time (memory does not grow with the cohort); a case that
cannot be imported is skipped with its sentence (`ImportReport.skipped`) and the rest go on.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from livercore import annotation, cohort
from livercore.annotation import Lesion
from livercore.dicom_study import DELAYED, SeriesVolume, propose_phases, read_studies
from livercore.errors import InputError
from livercore.vocab import CATEGORIES, PHASES, Category, Phase

POINT_COLUMNS = ("case_id", "category", "x_mm", "y_mm", "z_mm", "diameter_mm")  # then optional subtype, phase
LABEL_COLUMNS = ("case_id",)  # then category and/or label, optional subtype


@dataclass(frozen=True)
class Shift:
    """The breath-hold shift of one phase against the annotated phase."""

    offset_mm: tuple[float, float, float]  # (x, y, z) LPS: position there = annotated position + offset
    plausible: bool = True
    reason: str = ""


NO_SHIFT = Shift((0.0, 0.0, 0.0), True, "the annotated phase")


def breath_hold_shift(reference: SeriesVolume, moving: SeriesVolume, lesion: Lesion) -> Shift:
    """The moving phase's shift against the reference around the lesion (livercore.registration)."""
    from livercore.registration import refine_shift

    found = refine_shift(reference, moving, lesion.centre_mm, lesion.diameter_mm / 2)
    return Shift(tuple(float(v) for v in found.offset_mm), bool(found.plausible), str(found.reason))  # type: ignore[arg-type]


def carry_lesion(
    lesion: Lesion,
    volumes: Mapping[Phase, SeriesVolume],
    reference: Phase,
    *,
    refine: bool = True,
) -> tuple[dict[Phase, Shift], list[dict[Phase, cohort.Section]]]:
    """The lesion's shift in each phase and its image sets (one per training section, the largest
    first): in each phase the section through the annotated point plus the shift, and the
    lesion centre there. A training section that falls outside a phase's volume is left out;
    the largest raises InputError."""
    ref = volumes[reference]
    shifts = {
        p: NO_SHIFT
        if p is reference
        else (breath_hold_shift(ref, v, lesion) if refine else Shift((0.0, 0.0, 0.0)))
        for p, v in volumes.items()
    }
    sets = []
    for n, section in enumerate(lesion.sections):
        point = np.asarray(ref.to_patient((section.index, *section.centre)))
        image_set = {}
        for phase in PHASES:
            volume = volumes[phase]
            k, r, c = volume.to_voxel(point + np.asarray(shifts[phase].offset_mm))
            index = round(k)
            h, w = volume.hu.shape[1:]
            if not (0 <= index < volume.hu.shape[0] and 0 <= r < h and 0 <= c < w):
                if n == 0:
                    raise InputError(
                        f"The lesion lies outside the {phase.value} series (section {k:.1f} of {volume.hu.shape[0]})."
                    )
                break
            image_set[phase] = cohort.Section(
                hu=volume.hu[index],
                pixel_spacing_mm=float(volume.spacing_mm[1]),
                thickness_mm=volume.slice_thickness_mm,
                centre=(r, c),
                manufacturer=volume.manufacturer,
            )
        else:
            sets.append(image_set)
    return shifts, sets


def write_lesion(
    writer: cohort.CohortWriter,
    lesion_id: str,
    lesion: Lesion,
    volumes: Mapping[Phase, SeriesVolume],
    reference: Phase,
    *,
    patient_key: str,
    category: Category,
    subtype: str = "",
    label: str = "",
    refine: bool = True,
) -> list[dict[str, object]]:
    """Carry one lesion to every phase and write its image sets; returns their manifest rows."""
    shifts, sets = carry_lesion(lesion, volumes, reference, refine=refine)
    review = "; ".join(f"{p.value}: {s.reason}" for p, s in shifts.items() if not s.plausible)
    extra: dict[str, Any] = {"label": label, "annotated_phase": reference.value, "review": review}
    for phase, shift in shifts.items():
        for axis, value in zip("xyz", shift.offset_mm, strict=True):
            extra[f"shift_{axis}_mm_{phase.value}"] = round(value, 2)
    rows = []
    for n, image_set in enumerate(sets):
        diameter = lesion.sections[n].diameter_mm
        rows.append(
            writer.add(
                lesion_id if n == 0 else f"{lesion_id}-s{n + 1}",
                patient_key=patient_key,
                category=category,
                subtype=subtype,
                lesion_id=lesion_id,
                sections=image_set,
                diameter_mm=diameter,
                **extra,
            )
        )
    return rows


@dataclass
class ImportReport:
    """What an import wrote and what it skipped."""

    manifest: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case_id, why)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        m = self.manifest
        counts = (
            m.drop_duplicates("lesion_id")["category"].value_counts().sort_index().to_dict() if len(m) else {}
        )
        out = [
            f"wrote {m['lesion_id'].nunique() if len(m) else 0} lesions in {len(m)} image sets; categories {counts}"
        ]
        flagged = int((m["review"].fillna("") != "").sum()) if "review" in m.columns else 0
        if flagged:
            out.append(
                f"{flagged} image set(s) flagged for review (column 'review'): check their breath-hold shift"
            )
        absent = cohort.absent_categories(m) if len(m) else list(CATEGORIES)
        if absent:
            out.append(
                "no lesion of category "
                + ", ".join(c.value for c in absent)
                + ": the study trains and reports without them"
            )
        out += [f"skipped {case}: {why}" for case, why in self.skipped]
        out += self.notes
        return out


def _progress(items: list, progress: bool, what: str) -> Iterable:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="case", disable=None)


def _run(
    cases: Iterable[tuple[str, Callable[[cohort.CohortWriter], None]]],
    out: str | os.PathLike[str],
    name: str,
    prefix: str,
) -> ImportReport:
    """Import case by case into one cohort; a case's InputError skips that case only."""
    writer = cohort.CohortWriter(Path(out), name, prefix=prefix)
    skipped: list[tuple[str, str]] = []
    for case_id, work in cases:
        try:
            work(writer)
        except InputError as err:
            skipped.append((case_id, str(err)))
    if not writer.rows:
        why = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise InputError(f"No lesion could be imported{why}.")
    return ImportReport(writer.close(), skipped)


# --- a PACS export: one folder (or zip) per case, with points or DICOM SEG ------------------------


def read_table(path: str | os.PathLike[str], required: Iterable[str], what: str) -> pd.DataFrame:
    """A CSV with the `required` columns and, where given, categories A-E; InputError otherwise."""
    try:
        table = pd.read_csv(
            path, dtype={"case_id": str, "category": str, "subtype": str, "label": str, "phase": str}
        )
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"The {what} could not be read as CSV: {err}") from err
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"The {what} lacks the column(s): {', '.join(missing)}.")
    if "category" in table.columns:
        given = table["category"].dropna().astype(str).str.strip().str.upper()
        bad = sorted(set(given) - {c.value for c in Category} - {""})
        if bad:
            raise InputError(f"The {what} has categories other than A-E: {', '.join(bad[:5])}.")
    return table


def read_points(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV of one lesion per row: the case (its folder's name), its category A-E, its centre
    in patient coordinates (mm, DICOM LPS, as a PACS viewer's cursor reads it) and its diameter
    (mm); optional subtype and phase (the phase the point was read in; arterial by default)."""
    return read_table(path, POINT_COLUMNS, "points file")


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _case_source(root: Path, case_id: str) -> Path:
    """The case's folder or zip inside the export (refused when the name leaves it)."""
    for candidate in (root / case_id, root / f"{case_id}.zip"):
        path = candidate.resolve()
        if not path.is_relative_to(root.resolve()):
            raise InputError("The case's name leaves the export folder.")
        if path.exists():
            return path
    raise InputError("the export has no folder (or zip) of that name")


def study_phases(source: Path, *, late: str = DELAYED) -> dict[Phase, SeriesVolume]:
    """The paper's three phases of the one study in a case folder or zip (propose_phases)."""
    studies = read_studies(source)
    if len(studies) != 1:
        raise InputError(f"the folder holds {len(studies)} studies; one is expected")
    (study,) = studies
    notes = " ".join(study.notes)  # why series could not be volumes
    try:
        proposal = propose_phases(study, late=late)
    except InputError as err:
        raise InputError(f"{err} {notes}".strip()) from err
    missing = [p.value for p in PHASES if p not in proposal.series]
    if missing:
        raise InputError(f"no series for the {', '.join(missing)} phase. {notes}".strip())
    return {p: study.series[proposal.series[p]] for p in PHASES}


def find_seg(source: Path) -> Path | None:
    """The DICOM SEG file of a case folder (the first by name), or None."""
    import pydicom

    if not source.is_dir():
        return None
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if str(getattr(ds, "Modality", "")) == "SEG":
            return path
    return None


def _seg_reference(seg: annotation.SegMask, volumes: Mapping[Phase, SeriesVolume]) -> Phase:
    for phase, volume in volumes.items():
        if volume.slices and volume.slices[0].series_uid == seg.series_uid:
            return phase
    raise InputError("the SEG references a series that is not one of the three phases")


def import_dicom(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    points: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    late: str = DELAYED,
    refine: bool = True,
    progress: bool = False,
) -> ImportReport:
    """A PACS export (one subfolder or zip per case, named by its case_id) -> a cohort in `out`.

    Lesions come from `points` (read_points: a point and a diameter per lesion) or, with
    `labels` (case_id, category and/or label, optional subtype), from the DICOM SEG in each case
    folder (its largest lesion). The SEG's series, or the points' phase, is the annotated one."""
    if (points is None) == (labels is None):
        raise InputError(
            "Give the lesions either as points (--points) or as DICOM SEG with labels (--labels)."
        )
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder.")
    table = read_points(points) if points is not None else read_labels(labels)  # type: ignore[arg-type]
    groups = list(table.groupby("case_id", sort=False))

    def case(case_id: str, rows: pd.DataFrame) -> Callable[[cohort.CohortWriter], None]:
        def work(writer: cohort.CohortWriter) -> None:
            source = _case_source(root, case_id)
            volumes = study_phases(source, late=late)
            if points is not None:
                for k, lesion in enumerate(rows.itertuples(index=False), start=1):
                    phase = Phase(_text(getattr(lesion, "phase", "")).lower() or Phase.ARTERIAL.value)
                    point = (float(lesion.x_mm), float(lesion.y_mm), float(lesion.z_mm))
                    found = annotation.lesion_from_point(point, float(lesion.diameter_mm), volumes[phase])
                    write_lesion(
                        writer,
                        f"{case_id}-{k}" if len(rows) > 1 else case_id,
                        found,
                        volumes,
                        phase,
                        patient_key=case_id,
                        category=Category(str(lesion.category).strip().upper()),
                        subtype=_text(getattr(lesion, "subtype", "")),
                        refine=refine,
                    )
                return
            seg_path = find_seg(source)
            if seg_path is None:
                raise InputError("the case folder holds no DICOM SEG")
            seg = annotation.read_seg(seg_path)
            phase = _seg_reference(seg, volumes)
            mask = seg.volume.resample_onto(volumes[phase])
            lesion = annotation.lesions_from_mask(mask, volumes[phase])[0]
            category, subtype, label = _category(rows.iloc[0])
            write_lesion(
                writer, case_id, lesion, volumes, phase,
                patient_key=case_id, category=category, subtype=subtype, label=label, refine=refine,
            )  # fmt: skip

        return work

    cases = ((str(c), case(str(c), rows)) for c, rows in _progress(groups, progress, "import"))
    return _run(cases, out, root.name, "SITE")


# --- labels: the benchmark's diagnoses -> the paper's categories ----------------------------------


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A labels CSV: case_id and category (A-E) and/or label (a benchmark's diagnosis, mapped
    by livercore.nifti_cohort.LABEL_CATEGORIES), optional subtype."""
    table = read_table(path, LABEL_COLUMNS, "labels file")
    if "category" not in table.columns and "label" not in table.columns:
        raise InputError("The labels file needs a category (A-E) or a label column.")
    if table["case_id"].duplicated().any():
        raise InputError("The labels file lists a case_id twice.")
    return table


def _category(row: pd.Series) -> tuple[Category, str, str]:
    from livercore.nifti_cohort import category_of

    label = _text(row.get("label"))
    category, subtype = category_of(label, row.get("category"), row.get("subtype"))
    return category, subtype, label


# --- a NIfTI benchmark ----------------------------------------------------------------------------


def import_nifti(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: object = None,
    *,
    refine: bool = True,
    progress: bool = False,
) -> ImportReport:
    """A NIfTI benchmark (livercore.nifti_cohort's layout: volumes per phase, a lesion mask,
    labels.csv) -> a cohort in `out`, the largest lesion of each case's mask."""
    from livercore.nifti_cohort import LABELS_FILE, NiftiLayout, read_case

    root = Path(folder)
    chosen = layout if isinstance(layout, NiftiLayout) else NiftiLayout()
    if not (root / LABELS_FILE).is_file():
        raise InputError(f"{root} has no {LABELS_FILE} (case_id, label[, category, subtype]).")
    table = read_labels(root / LABELS_FILE)

    def case(row: pd.Series) -> Callable[[cohort.CohortWriter], None]:
        def work(writer: cohort.CohortWriter) -> None:
            case_id = str(row["case_id"])
            category, subtype, label = _category(row)
            volumes, mask = read_case(root, case_id, chosen)
            reference = volumes[chosen.mask_phase]
            lesion = annotation.lesions_from_mask(mask, reference)[0]
            write_lesion(
                writer, case_id, lesion, volumes, chosen.mask_phase,
                patient_key=case_id, category=category, subtype=subtype, label=label, refine=refine,
            )  # fmt: skip

        return work

    rows = [r for _, r in table.iterrows()]
    cases = ((str(r["case_id"]), case(r)) for r in _progress(rows, progress, "import"))
    return _run(cases, out, root.name, "IMPORT")
