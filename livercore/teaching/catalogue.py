"""The teaching catalogue: every case a resident can open, in one list, with one entry type.

``cases/catalogue.csv`` (written by ``livercore teaching build``) has one row per case and a
``source`` column:

- ``stored``: an example case shipped as three DICOM files under ``cases/<case_id>/`` (the
  review page's one-click examples), with the phantom export's columns (file paths; lesion,
  liver and aorta centres per phase; finding flags);
- ``phantom``: a phantom recipe (cohort, seed, index, size), regenerated on demand: a phantom
  case is a pure function of those four, so no pixels are stored;

and a site's own teaching cases join them from a server-side folder named by
``LIVERCORE_SITE_CASES`` (``site``; see SITE_LABELS_HELP). Every row carries its ``findings``
(livercore.teaching.findings). `open_case(case_id)` opens any of them, or any phantom case id
this app can regenerate, as a ReviewCase. Paths are only read from the catalogue or the site's
labels and must stay inside their folder; a ``?case=`` id is looked up, never joined into a path.
Streamlit-free.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from livercore import cohort
from livercore.errors import InputError
from livercore.paths import DEFAULT_CASES_DIR
from livercore.preprocess import LesionBox
from livercore.review_case import Reference, ReviewCase, make_case
from livercore.teaching.findings import phantom_findings
from livercore.vocab import PHASES, Category, Phase

CATALOGUE = "catalogue.csv"
STORED, PHANTOM, SITE = "stored", "phantom", "site"
CATALOGUE_COLUMNS = (  # then, for stored cases, the phantom export's manifest columns
    "case_id",
    "source",
    "cohort",
    "seed",
    "index",
    "size",
    "category",
    "subtype",
    "lesion_diameter_mm",
    "findings",
)
# The library's own cohort: the test-2016 mix, large enough to hold several clearly visible
# lesions of every subtype that mix has. Subtypes the test mix lacks (combined HCC-ICC, rare
# benign) come from train-2013, the only cohort that has them (the models were trained on it).
LIBRARY_COHORT = "library"
LIBRARY_SEED = 0
LIBRARY_SIZE = 200
FALLBACK_COHORT = "train-2013"
# Cohorts a ``?case=<cohort>-<seed>-<index>`` id may name, with the size that fixes their
# layout (None: the named cohort's own). Other names are refused: their size is unknown, and
# guessing would silently regenerate a different case.
PHANTOM_COHORTS: dict[str, int | None] = {
    "test-2016": None,
    "train-2013": None,
    LIBRARY_COHORT: LIBRARY_SIZE,
}
MAX_SEED = 9999
SITE_ENV = "LIVERCORE_SITE_CASES"
SITE_LABELS = cohort.MANIFEST  # a site's teaching folder is a cohort folder (livercore.cohort)
SITE_LABELS_HELP = (
    "A site's own teaching cases: a folder on the server, named by the environment variable "
    f"`{SITE_ENV}`, holding a cohort in livercore's cohort format: `{SITE_LABELS}` with one row per "
    "lesion (`case_id`, `category` A-E, optional `subtype`, the three single-slice DICOM files "
    "`unenhanced`, `arterial`, `delayed` relative to the folder, the lesion centre "
    "`lesion_row_<phase>` / `lesion_col_<phase>` in pixels, `lesion_diameter_mm`, and optionally "
    "`findings`, one sentence, and the liver and aorta ROI centres). `livercore cohort import` "
    "writes one from a PACS export or a NIfTI benchmark, the cohort builder page from studies "
    "annotated in the browser; `livercore cohort check FOLDER` checks it."
)


_PHANTOM_ID = re.compile(
    r"^(?P<cohort>[a-z0-9][a-z0-9-]{0,38}[a-z0-9])-(?P<seed>\d{1,4})-(?P<index>\d{4,5})$"
)


def cases_dir() -> Path:
    """The case folder: $LIVERCORE_CASES, else ``cases/`` beside the package."""
    return Path(os.environ.get("LIVERCORE_CASES") or DEFAULT_CASES_DIR)


@dataclass(frozen=True)
class TeachingCase:
    """One case of the teaching catalogue."""

    case_id: str
    source: str  # STORED, PHANTOM or SITE
    category: Category
    subtype: str
    diameter_mm: float
    findings: str
    number: int = 0  # 1-based position among the cases of its source: the resident's handle
    cohort: str = ""  # phantom and stored cases: where they come from
    seed: int = 0
    index: int = 0
    size: int | None = None

    @property
    def label(self) -> str:
        """The example's handle on the review page ("Case 3")."""
        return f"Case {self.number}"

    @property
    def seen_in_training(self) -> bool:
        """True for train-2013 cases: the shipped models were trained on them."""
        return self.source == PHANTOM and self.cohort == FALLBACK_COHORT


def _size(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


def _text(row: pd.Series, column: str) -> str:
    value = row.get(column)
    return value if isinstance(value, str) else ""


def read_catalogue(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The catalogue file as a table (empty, with its columns, when there is none)."""
    path = Path(root or cases_dir()) / CATALOGUE
    if not path.exists():
        return pd.DataFrame(columns=list(CATALOGUE_COLUMNS))
    return pd.read_csv(path, dtype={"case_id": str, "cohort": str, "subtype": str, "findings": str})


def _entries(table: pd.DataFrame, source: str) -> list[TeachingCase]:
    rows = table[table["source"] == source] if "source" in table.columns else table.iloc[:0]
    out = []
    for number, (_, r) in enumerate(rows.iterrows(), start=1):
        out.append(
            TeachingCase(
                case_id=str(r["case_id"]),
                source=source,
                category=Category(str(r["category"])),
                subtype=_text(r, "subtype"),
                diameter_mm=float(r["lesion_diameter_mm"]),
                findings=_text(r, "findings"),
                number=number,
                cohort=_text(r, "cohort"),
                seed=int(r["seed"]) if pd.notna(r.get("seed")) else 0,
                index=int(r["index"]) if pd.notna(r.get("index")) else 0,
                size=_size(r.get("size")),
            )
        )
    return out


def _catalogue_cases(root: str | os.PathLike[str] | None, source: str) -> list[TeachingCase]:
    """The catalogue's cases of one source, read once per version of the file (every page
    run asks; a rebuilt catalogue is read anew)."""
    path = Path(root or cases_dir()) / CATALOGUE
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = None
    return list(_cached_cases(str(path.parent), version, source))


@functools.lru_cache(maxsize=16)
def _cached_cases(root: str, version: tuple[int, int] | None, source: str) -> tuple[TeachingCase, ...]:
    del version  # only the cache key
    return tuple(_entries(read_catalogue(root), source))


def example_cases(root: str | os.PathLike[str] | None = None) -> list[TeachingCase]:
    """The stored example cases, in catalogue order (the review page's one-click examples)."""
    return _catalogue_cases(root, STORED)


def library_cases(root: str | os.PathLike[str] | None = None) -> list[TeachingCase]:
    """The phantom teaching cases, in catalogue order (by category, then subtype)."""
    return _catalogue_cases(root, PHANTOM)


def site_cases(folder: str | os.PathLike[str] | None = None) -> list[TeachingCase]:
    """The site's teaching cases (empty when no folder is configured)."""
    root = Path(folder) if folder else site_cases_dir()
    if root is None:
        return []
    labels = read_site_labels(root).assign(source=SITE)
    return _entries(labels, SITE)


def open_case(case_id: str, root: str | os.PathLike[str] | None = None) -> ReviewCase:
    """Any teaching case by id, as a ReviewCase with its lesion, liver ROI and aorta preselected
    and its reference standard: a stored example, the site's own case (when listed there), a
    phantom case of the catalogue, or any phantom id this app can regenerate; InputError (a
    sentence) for anything else."""
    base = Path(root or cases_dir())
    table = read_catalogue(base)
    stored = table[(table["source"] == STORED) & (table["case_id"] == case_id)]
    if not stored.empty:
        number = next(e.number for e in _entries(table, STORED) if e.case_id == case_id)
        return case_from_row(
            stored.iloc[0],
            lambda relative: _inside(base, relative, CATALOGUE),
            title=f"Example case {number}",
        )
    site_root = site_cases_dir()
    if site_root is not None and site_root.is_dir():
        try:
            labels = read_site_labels(site_root)
        except InputError:
            labels = pd.DataFrame(columns=["case_id"])
        if (labels["case_id"] == case_id).any():
            return site_review_case(case_id, site_root)
    entry = next((e for e in _entries(table, PHANTOM) if e.case_id == case_id), None)
    if entry is None and not _PHANTOM_ID.match(case_id or ""):
        raise InputError(
            f"There is no example case or teaching case '{str(case_id)[:40]}'; choose one from the list."
        )
    return phantom_review_case(case_id, size=entry.size if entry else None)


def open_entry(entry: TeachingCase, site_folder: str | os.PathLike[str] | None = None) -> ReviewCase:
    """The ReviewCase of a catalogue entry."""
    if entry.source == SITE:
        return site_review_case(entry.case_id, site_folder)
    if entry.source == PHANTOM:
        return phantom_review_case(entry.case_id, size=entry.size)
    return open_case(entry.case_id)


# --- phantom cases ------------------------------------------------------------------------------


def parse_phantom_id(case_id: str) -> tuple[str, int, int]:
    """(cohort, seed, index) of a phantom case id "<cohort>-<seed>-<index:04d>", read from the
    right (cohort names contain '-'); InputError when it is not one."""
    match = _PHANTOM_ID.match(case_id or "")
    if not match:
        raise InputError(f"'{str(case_id)[:40]}' is not a phantom case id (<cohort>-<seed>-<index>).")
    return match["cohort"], int(match["seed"]), int(match["index"])


def phantom_size(cohort: str, seed: int, index: int) -> int | None:
    """The cohort size that fixes the layout of a phantom case; InputError for cohorts this app
    cannot regenerate, seeds over MAX_SEED and indices outside the cohort."""
    from livercore.phantom import cohort_size

    if cohort not in PHANTOM_COHORTS:
        raise InputError(
            f"'{cohort[:40]}' is not a phantom cohort this app regenerates ({', '.join(PHANTOM_COHORTS)})."
        )
    if seed > MAX_SEED:
        raise InputError(f"Phantom seeds go up to {MAX_SEED}.")
    size = PHANTOM_COHORTS[cohort]
    if index >= cohort_size(cohort, seed, size):
        raise InputError(f"Cohort {cohort} (seed {seed}) has no case {index}.")
    return size


def can_regenerate(case_id: str) -> bool:
    """Whether `case_id` names a phantom case this app can open (see phantom_size)."""
    try:
        phantom_size(*parse_phantom_id(case_id))
    except InputError:
        return False
    return True


def phantom_review_case(case_id: str, *, size: int | None = None) -> ReviewCase:
    """Regenerate phantom case `case_id` ("<cohort>-<seed>-<index:04d>") as a ReviewCase with
    its lesion, liver ROI and aorta preselected and its reference standard (about 0.3 s).

    `size` overrides the cohort's known size (a library row records its own)."""
    from livercore.phantom import generate_case

    cohort, seed, index = parse_phantom_id(case_id)
    known = phantom_size(cohort, seed, index) if size is None else size
    case = generate_case(cohort, seed, index, known)
    sp = float(case.spacing_mm)
    return make_case(
        source="library",
        title=f"Teaching case {case_id}",
        images={p: case.hu[p].astype(np.float32) for p in PHASES},
        spacing_mm=dict.fromkeys(PHASES, sp),
        is_hu=True,
        metadata={
            p: {
                "modality": "CT",
                "manufacturer": case.manufacturer,
                "kvp": 120.0,
                "slice_thickness_mm": case.thickness_mm[p],
                "pixel_spacing_mm": (sp, sp),
                "series_description": f"{p.value} (livercore phantom)",
            }
            for p in PHASES
        },
        case_id=case_id,
        lesion_boxes={
            p: LesionBox.from_center(*case.lesion_center[p], case.lesion_diameter_mm, sp) for p in PHASES
        },
        liver_centres={p: (float(r), float(c)) for p, (r, c) in case.liver_center.items()},
        aorta_centres={p: (float(r), float(c)) for p, (r, c) in case.aorta_center.items()},
        reference=Reference(
            case.category, case.subtype, float(case.lesion_diameter_mm), phantom_findings(case)
        ),
    )


# --- a site's own teaching cases ---------------------------------------------------------------


def site_cases_dir() -> Path | None:
    """The site's teaching-case folder from $LIVERCORE_SITE_CASES (server-side), or None."""
    value = os.environ.get(SITE_ENV)
    return Path(value) if value else None


def read_site_labels(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """The site folder's cohort manifest (livercore.cohort.read_manifest), one row per lesion:
    a lesion's largest section when the cohort holds several."""
    root = Path(folder)
    if not root.is_dir() or not (root / SITE_LABELS).is_file():
        raise InputError(f"The site's teaching-case folder has no {SITE_LABELS}.")
    return cohort.largest_sections(cohort.read_manifest(root / SITE_LABELS))


def _inside(root: Path, relative: str, listing: str = SITE_LABELS) -> Path:
    """root/relative, refused (InputError) when it leaves root: `listing` named a file outside."""
    return cohort.resolve(root, relative, listing)


def site_review_case(case_id: str, folder: str | os.PathLike[str] | None = None) -> ReviewCase:
    """One of the site's teaching cases as a ReviewCase (DICOM read through dicom_io)."""
    root = Path(folder) if folder else site_cases_dir()
    if root is None:
        raise InputError("No site teaching-case folder is configured on this server.")
    labels = read_site_labels(root)
    rows = labels[labels["case_id"] == case_id]
    if rows.empty:
        raise InputError(f"There is no site teaching case '{str(case_id)[:40]}'.")
    return case_from_row(
        rows.iloc[0], lambda relative: _inside(root, relative), title=f"Site teaching case {case_id}"
    )


# --- stored cases: one row of three DICOM files ------------------------------------------------


def _centres(row: pd.Series, what: str) -> dict[Phase, tuple[float, float]]:
    """Per-phase (row, col) of `what` ("liver", "aorta") when the row has all six columns."""
    cols = [f"{what}_{axis}_{p.value}" for p in PHASES for axis in ("row", "col")]
    if not all(c in row.index and pd.notna(row[c]) for c in cols):
        return {}
    return {p: (float(row[f"{what}_row_{p.value}"]), float(row[f"{what}_col_{p.value}"])) for p in PHASES}


def case_from_row(row: pd.Series, resolve: Callable[[str], Path], *, title: str) -> ReviewCase:
    """A ReviewCase from one manifest row of three single-slice DICOM files (the phantom export's
    columns: unenhanced/arterial/delayed paths, lesion_row_P/lesion_col_P, lesion_diameter_mm,
    category, optional subtype, findings and liver/aorta centres). `resolve` turns a path from
    the row into a file (and may refuse one outside its folder)."""
    from livercore import dicom_io  # pydicom: only when reading

    slices = {p: dicom_io.read_ct_slice(resolve(str(row[p.value]))) for p in PHASES}
    spacing = {p: float(sum(slices[p].pixel_spacing_mm) / 2) for p in PHASES}
    diameter = float(row["lesion_diameter_mm"])
    return make_case(
        source="library",
        title=title,
        images={p: slices[p].hu for p in PHASES},
        spacing_mm=spacing,
        is_hu=True,
        metadata={p: slices[p].metadata() for p in PHASES},
        case_id=str(row["case_id"]),
        lesion_boxes={
            p: LesionBox.from_center(
                float(row[f"lesion_row_{p.value}"]), float(row[f"lesion_col_{p.value}"]), diameter, spacing[p]
            )
            for p in PHASES
        },
        liver_centres=_centres(row, "liver"),
        aorta_centres=_centres(row, "aorta"),
        reference=Reference(
            Category(str(row["category"])), _text(row, "subtype"), diameter, _text(row, "findings")
        ),
    )
