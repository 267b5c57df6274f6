"""The cohort format: one folder of lesions that the study trains and tests on, ``livercore
predict`` reads, the teaching library shows and the app opens.

A cohort is a folder::

    COHORT/
      manifest.csv                one row per image set: one section of a lesion in all three phases
      <case_id>/unenhanced.dcm    single-slice CT files with synthetic identifiers
      <case_id>/arterial.dcm
      <case_id>/delayed.dcm

Every writer makes it: the phantom export (``livercore phantom export``), the importers of
PACS exports, DICOM SEG and NIfTI benchmarks (``livercore cohort import-dicom`` /
``import-nifti``, livercore.cohort_import) and the cohort builder page. The teaching catalogue
(``cases/catalogue.csv``, livercore.teaching.catalogue) is this format with two more columns
(``source``, ``findings``) and phantom recipes beside the stored rows, and a site's teaching
folder is a cohort folder: one format, not three.

Columns (REQUIRED first; the rest optional):

- ``case_id`` (unique per row, the row's folder), ``category`` (A-E), the three file paths
  ``unenhanced, arterial, delayed`` (relative to the folder), ``lesion_row_<phase>,
  lesion_col_<phase>`` (the lesion centre in pixels in each phase's section) and
  ``lesion_diameter_mm`` (its diameter in this section);
- ``lesion_id``: rows of one lesion share it (several sections of one lesion, the paper's
  training data); a lesion's section of largest diameter is the one a test uses
  (`largest_sections`); without the column every row is its own lesion;
- ``patient_id`` (synthetic), ``cohort``, ``subtype``, ``label`` (a benchmark's own
  diagnosis), ``vendor``, ``pixel_spacing_mm``, ``liver_row/col_<phase>``,
  ``aorta_row/col_<phase>`` (ROI centres), the phantom's finding flags, ``findings``;
- ``shift_x_mm_<phase>``, ``shift_y_mm_<phase>``, ``shift_z_mm_<phase>`` (the breath-hold
  shift found against the annotated phase, livercore.registration) and ``review`` (a sentence
  when a person should look at the row, e.g. an implausible shift; empty otherwise).

Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from livercore.errors import InputError
from livercore.vocab import CATEGORIES, PHASES, Category, Phase

MANIFEST = "manifest.csv"
REQUIRED = (
    "case_id",
    "category",
    *(p.value for p in PHASES),
    *(f"lesion_{axis}_{p.value}" for p in PHASES for axis in ("row", "col")),
    "lesion_diameter_mm",
)
IDENTITY = ("case_id", "lesion_id", "patient_id", "cohort", "category", "subtype", "label", "vendor")
SHIFT_COLUMNS = tuple(f"shift_{axis}_mm_{p.value}" for p in PHASES for axis in ("x", "y", "z"))
TEXT_COLUMNS = {c: str for c in (*IDENTITY, "findings", "review", "source")}
MAX_ROWS = 200_000


def manifest_path(path: str | os.PathLike[str]) -> Path:
    """The manifest of a cohort named by its folder or by the manifest file itself."""
    p = Path(path)
    return p / MANIFEST if p.is_dir() else p


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A cohort's manifest (its folder or the CSV), checked: the required columns, categories
    A-E, unique case ids, numeric centres and diameters. InputError (a sentence naming the row
    or column) for anything else; a missing ``lesion_id`` is filled with the case id."""
    file = manifest_path(path)
    if not file.is_file():
        raise InputError(f"{file} is not a cohort: a cohort folder holds {MANIFEST}.")
    try:
        table = pd.read_csv(
            file, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""], nrows=MAX_ROWS + 1
        )
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{file.name} could not be read as CSV: {err}") from err
    if len(table) > MAX_ROWS:
        raise InputError(f"{file.name} has more than {MAX_ROWS} rows.")
    if table.empty:
        raise InputError(f"{file.name} has no cases.")
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"{file.name} lacks the column(s): {', '.join(missing)}.")
    categories = table["category"].fillna("").str.strip().str.upper()
    bad = categories[~categories.isin([c.value for c in CATEGORIES])]
    if not bad.empty:
        raise InputError(
            f"Row {bad.index[0] + 1} of {file.name} has category {bad.iloc[0]!r}; expected A, B, C, D or E."
        )
    table["category"] = categories
    duplicated = table["case_id"][table["case_id"].duplicated()]
    if not duplicated.empty:
        raise InputError(f"{file.name} lists case {duplicated.iloc[0]!r} twice.")
    numeric = [c for c in REQUIRED if c.startswith("lesion_")]
    for column in numeric:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any() or not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values.fillna(np.inf)))[0]) + 1
            raise InputError(f"Row {row} of {file.name} has no number in {column}.")
        table[column] = values.astype(float)
    if (table["lesion_diameter_mm"] <= 0).any():
        row = int(np.flatnonzero(table["lesion_diameter_mm"] <= 0)[0]) + 1
        raise InputError(f"Row {row} of {file.name} has a lesion diameter of 0 mm or less.")
    if "lesion_id" not in table.columns:
        table["lesion_id"] = table["case_id"]
    table["lesion_id"] = table["lesion_id"].fillna(table["case_id"])
    if "subtype" in table.columns:
        table["subtype"] = table["subtype"].fillna("")
    return table


def largest_sections(table: pd.DataFrame) -> pd.DataFrame:
    """One row per lesion: its section of largest diameter (the paper's test image; the first
    such row on a tie), in the manifest's order."""
    lesion = table["lesion_id"] if "lesion_id" in table.columns else table["case_id"]
    order = table.assign(_lesion=lesion.values, _row=np.arange(len(table)))
    best = order.sort_values(["_lesion", "lesion_diameter_mm", "_row"], ascending=[True, False, True])
    keep = best.drop_duplicates("_lesion")["_row"].sort_values()
    return table.iloc[keep.to_numpy()]


def resolve(folder: Path, relative: object, listing: str = MANIFEST) -> Path:
    """folder/relative, refused (InputError) when the manifest names a file outside its folder."""
    path = (folder / str(relative)).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise InputError(f"{listing} names a file outside its folder.")
    return path


@dataclass(frozen=True)
class CohortCheck:
    """What `check_cohort` found."""

    folder: Path
    rows: int
    lesions: int
    patients: int
    counts: dict[str, int]  # category -> lesions
    absent: tuple[Category, ...]
    review: tuple[str, ...]  # "case X: why" for rows flagged for review
    problems: tuple[str, ...]  # rows that cannot be used, with why

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The check as the command line prints it."""
        counts = ", ".join(f"{c} {n}" for c, n in sorted(self.counts.items()))
        out = [
            f"{self.folder}: {self.rows} image sets, {self.lesions} lesions, {self.patients} patients; "
            f"lesions by category: {counts}"
        ]
        if self.absent:
            out.append(
                "no lesion of category "
                + ", ".join(c.value for c in self.absent)
                + ": models trained on it cannot predict those, and metrics skip them"
            )
        out += [f"review: {line}" for line in self.review]
        out += [f"ERROR {line}" for line in self.problems]
        out.append("OK" if self.ok else f"{len(self.problems)} row(s) cannot be used")
        return out


def check_cohort(path: str | os.PathLike[str], *, read_images: bool = True) -> CohortCheck:
    """Check a cohort before a study trains on it: the manifest (read_manifest), every file
    inside the folder and readable as one CT slice (`read_images`), every lesion centre inside
    its image. InputError when the manifest itself is unusable."""
    from livercore import dicom_io  # pydicom: only when reading or writing

    file = manifest_path(path)
    table = read_manifest(file)
    folder = file.parent
    problems: list[str] = []
    for row in table.itertuples(index=False):
        rec = row._asdict()
        for phase in PHASES:
            try:
                target = resolve(folder, rec[phase.value])
                if not target.is_file():
                    raise InputError(f"its {phase.value} file {rec[phase.value]} is missing")
                if read_images:
                    image = dicom_io.read_ct_slice(target)
                    h, w = image.hu.shape
                    r, c = rec[f"lesion_row_{phase.value}"], rec[f"lesion_col_{phase.value}"]
                    if not (0 <= r < h and 0 <= c < w):
                        raise InputError(
                            f"its {phase.value} lesion centre ({r:.0f}, {c:.0f}) is outside the image"
                        )
            except InputError as err:
                problems.append(f"case {rec['case_id']}: {str(err).rstrip('.')}.")
                break
    lesions = table.drop_duplicates("lesion_id")
    review = table["review"].fillna("") if "review" in table.columns else pd.Series("", index=table.index)
    flagged = tuple(
        f"case {case}: {why}" for case, why in zip(table["case_id"], review, strict=True) if str(why).strip()
    )
    counts = {str(k): int(v) for k, v in lesions["category"].value_counts().items()}
    patients = table["patient_id"].nunique() if "patient_id" in table.columns else len(lesions)
    return CohortCheck(
        folder,
        len(table),
        len(lesions),
        int(patients),
        counts,
        tuple(c for c in CATEGORIES if c.value not in counts),
        flagged,
        tuple(problems),
    )


def absent_categories(table: pd.DataFrame) -> list[Category]:
    """The paper's categories a cohort has no lesion of."""
    present = set(table["category"].astype(str))
    return [c for c in CATEGORIES if c.value not in present]


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One phase's image of an image set, ready to be written."""

    hu: np.ndarray  # (H, W) HU
    pixel_spacing_mm: float
    thickness_mm: float
    centre: tuple[float, float]  # the lesion centre (row, col)
    manufacturer: str = ""


@dataclass
class CohortWriter:
    """Writes a cohort one image set at a time: three single-slice CT files with synthetic
    identifiers under ``folder/<case_id>/`` and, on `close` (or leaving the ``with`` block),
    ``folder/manifest.csv``. Source identifiers never reach it: patients are numbered in the
    order they are first added (``<prefix>00001``), studies and series get UIDs derived from the
    cohort name and case id, dates are fixed."""

    folder: Path
    cohort: str
    prefix: str = "SITE"
    rows: list[dict[str, object]] = field(default_factory=list)
    _patients: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> CohortWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    def patient(self, key: str) -> str:
        """The synthetic patient id of a source patient (a key that stays in memory)."""
        return self._patients.setdefault(key, f"{self.prefix}{len(self._patients) + 1:05d}")

    def add(
        self,
        case_id: str,
        *,
        patient_key: str,
        category: Category | str,
        sections: Mapping[Phase, Section],
        diameter_mm: float,
        subtype: str = "",
        lesion_id: str | None = None,
        patient_id: str | None = None,
        **extra: object,
    ) -> dict[str, object]:
        """Write one image set; returns its manifest row. `extra` columns are kept as given;
        `patient_id` is only for sources whose ids are already synthetic (the phantom)."""
        from livercore import dicom_io  # pydicom: only when reading or writing

        category = Category(str(getattr(category, "value", category)).upper())
        case_dir = self.folder / case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        patient_id = patient_id or self.patient(patient_key)
        row: dict[str, object] = {
            "case_id": case_id,
            "lesion_id": lesion_id or case_id,
            "patient_id": patient_id,
            "cohort": self.cohort,
            "category": category.value,
            "subtype": subtype,
        }
        for number, phase in enumerate(PHASES, start=1):
            section = sections[phase]
            ds = dicom_io.ct_slice_dataset(
                np.asarray(section.hu, np.float32),
                phase=phase,
                pixel_spacing_mm=section.pixel_spacing_mm,
                slice_thickness_mm=section.thickness_mm,
                patient_id=patient_id,
                study_uid=dicom_io.derive_uid(self.cohort, case_id),
                series_uid=dicom_io.derive_uid(self.cohort, case_id, phase.value),
                study_date="20000101",
                injection_time_s=36_000.0,
                manufacturer=section.manufacturer,
                series_number=number,
            )
            dicom_io.write_dataset(ds, case_dir / f"{phase.value}.dcm")
            row[phase.value] = f"{case_id}/{phase.value}.dcm"
            row[f"lesion_row_{phase.value}"] = round(float(section.centre[0]), 2)
            row[f"lesion_col_{phase.value}"] = round(float(section.centre[1]), 2)
        row["lesion_diameter_mm"] = round(float(diameter_mm), 2)
        row["pixel_spacing_mm"] = round(float(sections[Phase.ARTERIAL].pixel_spacing_mm), 5)
        row.update(extra)
        self.rows.append(row)
        return row

    def close(self) -> pd.DataFrame:
        """Write manifest.csv (InputError when nothing was added) and return it."""
        if not self.rows:
            raise InputError("No lesion was imported: the cohort would be empty.")
        table = pd.DataFrame(self.rows)
        table.to_csv(self.folder / MANIFEST, index=False)
        return table


def write_manifest(rows: Iterable[Mapping[str, object]], folder: str | os.PathLike[str]) -> pd.DataFrame:
    """Write rows (already in the cohort format) as folder/manifest.csv."""
    table = pd.DataFrame(list(rows))
    table.to_csv(Path(folder) / MANIFEST, index=False)
    return table
