"""The example (teaching) cases shipped with the app in ``cases/``.

``cases/manifest.csv`` (written by :mod:`livercore.app.build_cases`) lists each case with its
three DICOM files, per-phase lesion, liver-ROI and aorta centres (pixels), lesion diameter,
finding flags and a one-sentence ``findings``. Paths are only ever built from the manifest's
own case ids, never from a user's text (the ``?case=`` link is looked up, not joined).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from livercore import dicom_io
from livercore.app.inputs import Reference, ReviewCase, make_case
from livercore.paths import DEFAULT_CASES_DIR
from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Category, Phase


def cases_dir() -> Path:
    """The example-case folder: $LIVERCORE_CASES, else ``cases/`` beside the package."""
    return Path(os.environ.get("LIVERCORE_CASES") or DEFAULT_CASES_DIR)


@dataclass(frozen=True)
class LibraryEntry:
    """One row of the example-case manifest."""

    number: int  # 1-based position in the library, the resident's handle ("Case 3")
    case_id: str
    category: Category
    subtype: str
    diameter_mm: float
    findings: str

    @property
    def label(self) -> str:
        return f"Case {self.number}"


def read_manifest(root: Path | None = None) -> pd.DataFrame:
    """The manifest as a table (empty when there is no library)."""
    path = (root or cases_dir()) / "manifest.csv"
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path)


def library_entries(root: Path | None = None) -> list[LibraryEntry]:
    """The example cases in manifest order."""
    manifest = read_manifest(root)
    return [
        LibraryEntry(
            number=i,
            case_id=str(r.case_id),
            category=Category(r.category),
            subtype=str(r.subtype),
            diameter_mm=float(r.lesion_diameter_mm),
            findings=str(r.findings) if "findings" in manifest.columns else "",
        )
        for i, r in enumerate(manifest.itertuples(index=False), start=1)
    ]


def load_library_case(case_id: str, root: Path | None = None) -> ReviewCase:
    """Read an example case's three DICOM files with its lesion, liver ROI and aorta preselected."""
    base = root or cases_dir()
    manifest = read_manifest(base)
    rows = manifest[manifest["case_id"] == case_id] if "case_id" in manifest.columns else manifest
    if rows.empty:
        from livercore.app.library import library_review_case  # teaching library, site and phantom ids

        return library_review_case(case_id)
    number = next(e.number for e in library_entries(base) if e.case_id == case_id)
    return case_from_row(rows.iloc[0], lambda relative: base / relative, title=f"Example case {number}")


def _centres(row: pd.Series, what: str) -> dict[Phase, tuple[float, float]]:
    """Per-phase (row, col) of `what` ("liver", "aorta") when the row has all six columns."""
    cols = [f"{what}_{axis}_{p.value}" for p in PHASES for axis in ("row", "col")]
    if not all(c in row.index and pd.notna(row[c]) for c in cols):
        return {}
    return {p: (float(row[f"{what}_row_{p.value}"]), float(row[f"{what}_col_{p.value}"])) for p in PHASES}


def _text(row: pd.Series, column: str) -> str:
    value = row.get(column)
    return value if isinstance(value, str) else ""


def case_from_row(row: pd.Series, resolve: Callable[[str], Path], *, title: str) -> ReviewCase:
    """A ReviewCase from one manifest row of three single-slice DICOM files (the phantom export's
    columns: unenhanced/arterial/delayed paths, lesion_row_P/lesion_col_P, lesion_diameter_mm,
    category, optional subtype, findings and liver/aorta centres). `resolve` turns a path from
    the row into a file (and may refuse one outside its folder)."""
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
