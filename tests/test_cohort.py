"""The cohort format: what a manifest must hold, the test section per lesion, the check, the writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from livercore import cohort
from livercore.errors import InputError
from livercore.vocab import PHASES, Category


def _sections(value: float = 60.0) -> dict:
    hu = np.full((32, 32), value, np.float32)
    return {p: cohort.Section(hu, 0.7, 2.5, (10.0, 12.0), "ACME") for p in PHASES}


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """A cohort of two lesions: one with three sections (diameters 10, 14, 12 mm), one with one."""
    with cohort.CohortWriter(tmp_path / "c", "site-x") as writer:
        for n, diameter in enumerate((10.0, 14.0, 12.0), start=1):
            writer.add(
                f"L1-s{n}",
                patient_key="Doe^Jane",
                category="a",
                sections=_sections(),
                diameter_mm=diameter,
                lesion_id="L1",
            )
        writer.add("L2", patient_key="Roe^Rick", category=Category.E, sections=_sections(5), diameter_mm=20)
    return tmp_path / "c"


def test_the_writer_writes_ct_files_with_synthetic_identifiers_and_a_manifest(folder: Path) -> None:
    table = cohort.read_manifest(folder)
    assert list(table.case_id) == ["L1-s1", "L1-s2", "L1-s3", "L2"]
    assert list(table.patient_id) == ["SITE00001"] * 3 + ["SITE00002"]
    ds = pydicom.dcmread(folder / table.arterial[3])
    assert str(ds.PatientID) == "SITE00002" and "Roe" not in str(ds.PatientName)
    assert all(b"Doe" not in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_a_test_uses_each_lesions_largest_section(folder: Path) -> None:
    largest = cohort.largest_sections(cohort.read_manifest(folder))
    assert list(largest.case_id) == ["L1-s2", "L2"]
    plain = pd.DataFrame({"case_id": ["a", "b"], "lesion_diameter_mm": [3.0, 4.0]})
    assert list(cohort.largest_sections(plain).case_id) == ["a", "b"]  # no lesion_id: one row, one lesion


def test_the_check_counts_lesions_and_says_what_is_missing(folder: Path) -> None:
    result = cohort.check_cohort(folder)
    assert result.ok and (result.rows, result.lesions, result.patients) == (4, 2, 2)
    assert result.counts == {"A": 1, "E": 1}
    assert result.absent == (Category.B, Category.C, Category.D)
    lines = result.lines()
    assert lines[0].endswith("lesions by category: A 1, E 1") and lines[-1] == "OK"
    assert "no lesion of category B, C, D" in lines[1]


def test_the_check_reports_rows_that_cannot_be_used_and_rows_to_review(folder: Path) -> None:
    table = pd.read_csv(folder / cohort.MANIFEST)
    table.loc[0, "lesion_row_delayed"] = 400.0
    table.loc[1, "review"] = "unenhanced: shift 14 mm is more than a breath-hold moves"
    table.loc[3, "unenhanced"] = "L2/missing.dcm"
    table.to_csv(folder / cohort.MANIFEST, index=False)
    result = cohort.check_cohort(folder)
    assert not result.ok
    assert result.problems == (
        "case L1-s1: its delayed lesion centre (400, 12) is outside the image.",
        "case L2: its unenhanced file L2/missing.dcm is missing.",
    )
    assert result.review == ("case L1-s2: unenhanced: shift 14 mm is more than a breath-hold moves",)
    assert result.lines()[-1] == "2 row(s) cannot be used"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns=["lesion_diameter_mm"]), "lacks the column"),
        (lambda t: t.assign(category=["A", "F", "A", "E"]), "Row 2 of manifest.csv has category 'F'"),
        (lambda t: t.assign(case_id=["x", "x", "y", "z"]), "lists case 'x' twice"),
        (
            lambda t: t.assign(lesion_col_arterial=["1", "two", "3", "4"]),
            "Row 2 .* no number in lesion_col_arterial",
        ),
        (lambda t: t.assign(lesion_diameter_mm=[1, 0, 2, 3]), "Row 2 .* diameter of 0 mm"),
        (lambda t: t.iloc[:0], "has no cases"),
    ],
)
def test_a_manifest_that_is_not_one_gets_a_sentence(folder: Path, change, message: str) -> None:
    change(pd.read_csv(folder / cohort.MANIFEST)).to_csv(folder / cohort.MANIFEST, index=False)
    with pytest.raises(InputError, match=message):
        cohort.read_manifest(folder)


def test_a_manifest_naming_a_file_outside_its_folder_is_refused(folder: Path) -> None:
    table = pd.read_csv(folder / cohort.MANIFEST).assign(arterial="../../etc/passwd")
    table.to_csv(folder / cohort.MANIFEST, index=False)
    assert (
        cohort.check_cohort(folder).problems[0] == "case L1-s1: manifest.csv names a file outside its folder."
    )
    with pytest.raises(InputError, match="is not a cohort"):
        cohort.read_manifest(folder / "nowhere")


def test_an_empty_import_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="would be empty"):
        cohort.CohortWriter(tmp_path, "x").close()
