"""Importing phantom volumes written the way real data comes (a PACS export with DICOM SEG or
points, a NIfTI benchmark) recovers each lesion and its breath-hold shift, known from the phantom."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from livercore.cohort import check_cohort, largest_sections, read_manifest
from livercore.cohort_import import import_dicom, import_nifti
from livercore.vocab import PHASES, Phase

CASES = 6


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livercore.phantom import export_volumes

    root = tmp_path_factory.mktemp("volumes")
    export_volumes("import-check", root, seed=3, size=CASES, workers=2)
    return root


def _import(route: str, source: Path, out: Path):
    if route == "dicom-seg":
        return import_dicom(source / "dicom", out, labels=source / "nifti" / "labels.csv")
    if route == "dicom-points":
        return import_dicom(source / "dicom", out, points=source / "dicom" / "points.csv")
    return import_nifti(source / "nifti", out)


@pytest.mark.parametrize("route", ["dicom-seg", "dicom-points", "nifti"])
def test_each_lesion_and_its_breath_hold_shift_is_recovered(route: str, source: Path, tmp_path: Path) -> None:
    report = _import(route, source, tmp_path)
    assert not report.skipped
    truth = pd.read_csv(source / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    tests = largest_sections(read_manifest(tmp_path)).set_index("lesion_id")
    assert sorted(tests.index) == sorted(truth.index)
    misses, flagged = [], 0
    for case_id, t in truth.iterrows():
        row, sp = tests.loc[case_id], float(t["pixel_spacing_mm"])
        review = str(row.get("review") or "")
        for phase in PHASES:
            v = phase.value
            error = np.hypot(
                row[f"lesion_row_{v}"] - t[f"lesion_row_{v}"], row[f"lesion_col_{v}"] - t[f"lesion_col_{v}"]
            )
            in_plane = max(abs(row[f"shift_{a}_mm_{v}"] - t[f"shift_{a}_mm_{v}"]) for a in "xy") / sp
            dz = abs(row[f"shift_z_mm_{v}"] - t[f"shift_z_mm_{v}"])
            if phase is not Phase.ARTERIAL and f"{v}:" in review:
                flagged += 1  # flagged for review: a person checks this phase's position
                continue
            if error > 1.5 or in_plane > 1.0 or dz > t["section_mm_arterial"]:
                misses.append(
                    f"{case_id} {v}: centre {error:.1f} px, shift {in_plane:.1f} px / {dz:.1f} mm off"
                )
    # Every phase not flagged for review is found: its centre within 1.5 px, its breath-hold shift
    # within 1 px in plane and one section in z. Flags are rare (on 200 phantom phase pairs the
    # refinement flagged 5: livercore.registration).
    assert not misses, misses
    assert flagged <= 2
    assert check_cohort(tmp_path).ok


def test_masks_give_several_training_sections_and_the_truths_diameter(source: Path, tmp_path: Path) -> None:
    manifest = import_nifti(source / "nifti", tmp_path).manifest
    truth = pd.read_csv(source / "truth.csv", dtype={"case_id": str}).set_index("case_id")
    sections = manifest.groupby("lesion_id").size()
    assert sections.max() > 1 and sections.min() >= 1
    for row in largest_sections(manifest).itertuples(index=False):
        true = truth.loc[row.lesion_id, "diameter_mm"]
        assert abs(row.lesion_diameter_mm - true) <= max(
            1.5, 0.08 * true
        )  # the mask's 50 % partial-volume border
    assert (
        manifest.groupby("lesion_id")["lesion_diameter_mm"].idxmax()
        == manifest.groupby("lesion_id").head(1).index
    ).all()


def test_a_shift_no_breath_hold_makes_is_flagged_for_review(source: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    case_id = pd.read_csv(source / "dicom" / "points.csv", dtype={"case_id": str}).case_id[0]
    shutil.copytree(source / "dicom" / case_id, export / case_id)
    moved = 0
    for path in (export / case_id).rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if ds.Modality == "CT" and "DELAYED" in str(ds.SeriesDescription).upper():
            ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 18.0, *ds.ImagePositionPatient[1:]]
            ds.save_as(path)
            moved += 1
    assert moved
    points = pd.read_csv(source / "dicom" / "points.csv", dtype={"case_id": str}).head(1)
    points.to_csv(tmp_path / "points.csv", index=False)
    report = import_dicom(export, tmp_path / "cohort", points=tmp_path / "points.csv")
    row = report.manifest.iloc[0]
    assert "delayed:" in row["review"] and "unenhanced:" not in row["review"]
    assert any("flagged for review" in line for line in report.lines())
    assert check_cohort(tmp_path / "cohort").review


def test_series_without_descriptions_are_proposed_by_acquisition_time(source: Path, tmp_path: Path) -> None:
    from livercore.dicom_study import propose_phases, read_studies

    for case in sorted((source / "dicom").iterdir()):
        if not case.is_dir():
            continue
        blank = tmp_path / case.name
        shutil.copytree(case, blank)
        for path in blank.rglob("IM*.dcm"):
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = ""
            ds.save_as(path)
        (study,) = read_studies(blank)
        proposal = propose_phases(study)
        # SE1, SE2, SE3 hold the unenhanced, arterial and delayed series, in acquisition order
        assert [study.series[proposal.series[p]].number for p in PHASES] == [1, 2, 3], case.name
