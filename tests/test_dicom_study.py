"""Studies from folders and zips: grouping, volumes in patient space, phases, hostile folders."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from livercore import dicom_io
from livercore.dicom_study import (
    DELAYED,
    PORTAL_VENOUS,
    build_volume,
    propose_phases,
    read_studies,
    series_kind,
)
from livercore.errors import InputError
from livercore.vocab import PHASES, Phase
from tests.conftest import REAL_CT

SPACING_MM, STEP_MM = 0.8, 2.5


def write_series(
    out: Path,
    *,
    study: str,
    phase: Phase,
    z_mm: list[float],
    description: str | None = None,
    injection_s: float = 36_000.0,
    image: Callable[[float], np.ndarray] | None = None,
) -> list[Path]:
    """One synthetic CT series of 64 x 64 slices: `image(z)`, by default 40 + 2 z HU everywhere
    (the value tells the position)."""
    out.mkdir(parents=True, exist_ok=True)
    series_uid = dicom_io.derive_uid(study, phase.value)
    paths = []
    for k, z in enumerate(z_mm, start=1):
        hu = image(z) if image else np.full((64, 64), 40.0 + 2 * z, np.float32)
        ds = dicom_io.ct_slice_dataset(
            hu,
            phase=phase,
            pixel_spacing_mm=SPACING_MM,
            slice_thickness_mm=STEP_MM,
            patient_id=f"P-{study}",
            study_uid=dicom_io.derive_uid(study),
            series_uid=series_uid,
            study_date="20240102",
            injection_time_s=injection_s,
            manufacturer="GE",
            series_number=PHASES.index(phase) + 1,
            position_z_mm=z,
            instance_number=k,
        )
        if description is not None:
            ds.SeriesDescription = description
        path = out / f"{study}-{phase.value}-{k:03d}.dcm"
        dicom_io.write_dataset(ds, path)
        paths.append(path)
    return paths


def three_phase_study(out: Path, study: str, *, injection_s: float = 36_000.0) -> None:
    for phase in PHASES:
        z = [float(v) for v in np.arange(5) * STEP_MM - 100.0]
        write_series(out / study / phase.value, study=study, phase=phase, z_mm=z, injection_s=injection_s)


def test_a_folder_of_two_studies_reads_as_two_studies_of_three_volumes(tmp_path: Path) -> None:
    three_phase_study(tmp_path, "b", injection_s=50_000.0)  # the later study, written first
    three_phase_study(tmp_path, "a")
    (tmp_path / "notes.txt").write_text("not DICOM")
    studies = read_studies(tmp_path)
    assert [len(s.series) for s in studies] == [3, 3]
    first = studies[0]
    assert [v.kind for v in first.series] == ["unenhanced", "arterial", "delayed"]  # acquisition order
    volume = first.series[1]
    assert volume.hu.shape == (5, 64, 64) and volume.spacing_mm == (STEP_MM, SPACING_MM, SPACING_MM)
    np.testing.assert_allclose(volume.hu[:, 0, 0], 40.0 + 2 * (np.arange(5) * STEP_MM - 100.0))  # along z
    proposal = propose_phases(first)
    assert proposal.series == {Phase.UNENHANCED: 0, Phase.ARTERIAL: 1, Phase.DELAYED: 2}
    assert all("description" in r for r in proposal.reasons.values())


def test_shuffled_files_are_sorted_along_the_slice_normal(tmp_path: Path) -> None:
    paths = write_series(
        tmp_path, study="s", phase=Phase.ARTERIAL, z_mm=[5.0, -5.0, 0.0, 10.0, 2.5, 7.5, -2.5]
    )
    volume = build_volume([dicom_io.read_ct_slice(p) for p in paths])
    np.testing.assert_allclose(volume.hu[:, 0, 0], 40.0 + 2 * np.arange(-5.0, 10.1, 2.5))
    assert volume.origin_mm is not None and volume.origin_mm[2] == -5.0


def test_portal_venous_and_delayed_are_both_recognised_and_the_user_picks(tmp_path: Path) -> None:
    for phase, description in ((Phase.UNENHANCED, "NC"), (Phase.ARTERIAL, "ART")):
        write_series(tmp_path, study="s", phase=phase, z_mm=[0.0, 2.5, 5.0], description=description)
    write_series(
        tmp_path / "pv", study="s", phase=Phase.DELAYED, z_mm=[0.0, 2.5, 5.0], description="PORTAL 70s"
    )
    late = write_series(
        tmp_path / "del", study="s2", phase=Phase.DELAYED, z_mm=[0.0, 2.5, 5.0], description="DELAYED 3 MIN"
    )
    # the delayed series belongs to the same study, acquired after the portal-venous one
    for path in late:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = dicom_io.derive_uid("s")
        ds.SeriesInstanceUID = dicom_io.derive_uid("s", "late")
        ds.AcquisitionTime = "100500"
        ds.save_as(path)
    (study,) = read_studies(tmp_path)
    kinds = sorted(v.kind or "" for v in study.series)
    assert kinds == sorted(["unenhanced", "arterial", PORTAL_VENOUS, DELAYED])
    as_delayed = propose_phases(study, late=DELAYED).series[Phase.DELAYED]
    as_portal = propose_phases(study, late=PORTAL_VENOUS).series[Phase.DELAYED]
    assert study.series[as_delayed].kind == DELAYED and study.series[as_portal].kind == PORTAL_VENOUS


def test_hostile_series_get_sentences(tmp_path: Path) -> None:
    duplicate = write_series(tmp_path / "dup", study="d", phase=Phase.ARTERIAL, z_mm=[0.0, 2.5, 2.5, 5.0])
    with pytest.raises(InputError, match="two slices at the same position"):
        build_volume([dicom_io.read_ct_slice(p) for p in duplicate])
    gap = write_series(tmp_path / "gap", study="g", phase=Phase.ARTERIAL, z_mm=[0.0, 2.5, 5.0, 10.0, 12.5])
    with pytest.raises(InputError, match=r"1 missing slice\(s\) between 5.0 and 10.0 mm"):
        build_volume([dicom_io.read_ct_slice(p) for p in gap])
    tilted = write_series(tmp_path / "tilt", study="t", phase=Phase.ARTERIAL, z_mm=[0.0, 2.5, 5.0])
    ds = pydicom.dcmread(tilted[1])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.9, -0.436]
    ds.save_as(tilted[1])
    with pytest.raises(InputError, match="mixes slice orientations"):
        build_volume([dicom_io.read_ct_slice(p) for p in tilted])
    # in a folder, the broken series is left out with its sentence, the good one is read
    (study_d,) = read_studies(tmp_path / "dup")
    assert not study_d.series and "same position" in study_d.notes[0]


def test_a_zip_of_mixed_studies_is_read_in_memory(tmp_path: Path) -> None:
    three_phase_study(tmp_path, "a")
    three_phase_study(tmp_path, "b", injection_s=50_000.0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(tmp_path.rglob("*.dcm")):
            archive.write(path, path.relative_to(tmp_path).as_posix())
    studies = read_studies(buffer.getvalue())
    assert [len(s.series) for s in studies] == [3, 3]


def test_a_zip_bomb_and_a_missing_folder_get_sentences(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.dcm", b"\0" * (64 * 2**20))
    with pytest.raises(InputError, match=r"zip bomb|compression ratio"):
        read_studies(buffer.getvalue())
    with pytest.raises(InputError, match="neither a folder nor a zip"):
        read_studies(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CT slices"):
        read_studies(tmp_path / "empty")


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="../shared/data/real-ct is not beside this checkout")
def test_the_real_hcc048_series_reads_as_one_portal_venous_volume() -> None:
    (study,) = read_studies(REAL_CT)
    (volume,) = study.series
    assert volume.hu.shape == (16, 512, 512)
    assert volume.spacing_mm == pytest.approx((5.0, 0.703125, 0.703125))  # every second 2.5 mm slice
    assert volume.kind == PORTAL_VENOUS and "aorta" in volume.kind_reason  # its description names none
    assert series_kind(volume.slices[0]) is None
    assert volume.origin_mm == pytest.approx((-180.0, -180.0, -271.0))


def test_cohort_scan_lists_studies_series_and_proposed_phases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from livercore.cli import main

    three_phase_study(tmp_path, "a")
    assert main(["cohort", "scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "study 1: 3 CT series" in out
    assert "arterial: series 2 (its description says arterial)" in out
    assert "P-a" not in out and dicom_io.derive_uid("a") not in out  # no identifiers printed


def test_points_in_patient_millimetres_find_their_voxel_in_every_phase(tmp_path: Path) -> None:
    """The geometry a point annotation (or a mask's centre) needs to reach the other phases."""
    three_phase_study(tmp_path, "a")
    (study,) = read_studies(tmp_path)
    arterial = study.series[1]
    point = arterial.to_patient((2.0, 20.0, 30.0))
    for volume in study.series:  # same table position and field: the same voxel in every phase
        np.testing.assert_allclose(volume.to_voxel(point), (2.0, 20.0, 30.0), atol=1e-9)
    # the writer centres the field on the patient: pixel (31.5, 31.5) of 64 x 64 is x = y = 0
    np.testing.assert_allclose(arterial.to_patient((0.0, 31.5, 31.5))[:2], (0.0, 0.0), atol=1e-6)


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="../shared/data/real-ct is not beside this checkout")
def test_the_real_series_places_a_point_through_its_own_geometry() -> None:
    (study,) = read_studies(REAL_CT)
    (volume,) = study.series
    # slice_07 of the files is section 7 (z = -236 mm); pixel (0, 0) is ImagePositionPatient
    assert volume.to_patient((7, 0, 0)) == pytest.approx((-180.0, -180.0, -236.0))
    np.testing.assert_allclose(
        volume.to_voxel((-180.0 + 0.703125 * 10, -180.0 + 0.703125 * 4, -231.0)), (8, 4, 10)
    )


def write_lesion_study(out: Path, study: str, *, z_offset_mm: dict[Phase, float]) -> None:
    """Three phases of 5 sections; a 6-pixel lesion of 200 HU on the section at z = 0 of each
    phase, at pixel (20, 30). A phase's sections start z_offset_mm higher (another table
    position), so the lesion's section index differs by phase."""

    def image(z: float) -> np.ndarray:
        hu = np.full((64, 64), 60.0, np.float32)
        if abs(z) < 1e-6:
            rows, cols = np.mgrid[:64, :64]
            hu[(rows - 20) ** 2 + (cols - 30) ** 2 <= 9] = 200.0
        return hu

    for phase in PHASES:
        z = [float(v) for v in np.arange(-2, 3) * STEP_MM + z_offset_mm.get(phase, 0.0)]
        write_series(out / study, study=study, phase=phase, z_mm=z, image=image)


def test_a_pacs_export_with_lesion_points_becomes_a_cohort_the_study_reads(tmp_path: Path) -> None:
    from livercore.cohort_import import import_dicom
    from livercore.dataset import from_manifest

    export = tmp_path / "export"
    shifts = {"case-1": {}, "case-2": {Phase.DELAYED: STEP_MM}, "case-3": {Phase.UNENHANCED: -STEP_MM}}
    points = []
    for case_id, shift in shifts.items():
        write_lesion_study(export, case_id, z_offset_mm=shift)
        (study,) = read_studies(export / case_id)
        arterial = study.series[1]
        x, y, z = arterial.to_patient((2, 20, 30))  # the lesion, as a viewer's cursor reads it
        points.append(
            {"case_id": case_id, "category": "a", "x_mm": x, "y_mm": y, "z_mm": z, "diameter_mm": 5}
        )
    pd.DataFrame(points).to_csv(tmp_path / "points.csv", index=False)
    # Identical sections but for the lesion's: no breath-hold shift to search for here.
    manifest = import_dicom(
        export, tmp_path / "cohort", points=tmp_path / "points.csv", refine=False
    ).manifest
    assert list(manifest.case_id) == list(shifts) and set(manifest.category) == {"A"}
    for p in PHASES:
        np.testing.assert_allclose(manifest[f"lesion_row_{p.value}"], 20, atol=1e-6)
        np.testing.assert_allclose(manifest[f"lesion_col_{p.value}"], 30, atol=1e-6)
    for row in manifest.itertuples(index=False):
        for p in PHASES:  # the lesion's own section in every phase, whatever the table position
            hu = dicom_io.read_ct_slice(tmp_path / "cohort" / getattr(row, p.value)).hu
            assert hu[20, 30] == 200.0
        assert str(row.patient_id).startswith("SITE")
    data = from_manifest(tmp_path / "cohort" / "manifest.csv")
    assert data.x.shape == (3, 3, 70, 70)


def test_a_points_file_that_is_not_one_gets_a_sentence(tmp_path: Path) -> None:
    from livercore.cohort_import import read_points

    pd.DataFrame([{"case_id": "x", "category": "F"}]).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(InputError, match="lacks the column"):
        read_points(tmp_path / "p.csv")
    pd.DataFrame(
        [{"case_id": "x", "category": "F", "x_mm": 0, "y_mm": 0, "z_mm": 0, "diameter_mm": 5}]
    ).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(InputError, match="other than A-E"):
        read_points(tmp_path / "p.csv")


def test_cohort_import_dicom_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from livercore.cli import main

    write_lesion_study(tmp_path / "export", "case-1", z_offset_mm={})
    (study,) = read_studies(tmp_path / "export" / "case-1")
    x, y, z = study.series[1].to_patient((2, 20, 30))
    pd.DataFrame(
        [{"case_id": "case-1", "category": "D", "x_mm": x, "y_mm": y, "z_mm": z, "diameter_mm": 5}]
    ).to_csv(tmp_path / "points.csv", index=False)
    argv = ["cohort", "import", str(tmp_path / "export"), "--points", str(tmp_path / "points.csv")]
    assert main([*argv, "--out", str(tmp_path / "cohort"), "--no-refine"]) == 0
    assert "wrote 1 lesions in 1 image sets" in capsys.readouterr().out
    nowhere = ["cohort", "import", str(tmp_path / "nowhere"), "--points", "/no/points.csv", "--out", "x"]
    assert main(nowhere) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_hostile_export_imports_its_good_cases_and_says_why_each_other_was_skipped(tmp_path: Path) -> None:
    from livercore.cohort_import import import_dicom

    export = tmp_path / "export"
    write_lesion_study(export, "good", z_offset_mm={})
    write_lesion_study(export, "mixed", z_offset_mm={})
    write_lesion_study(export / "mixed" / "other", "second-study", z_offset_mm={})
    write_series(export / "duplicate", study="dup", phase=Phase.UNENHANCED, z_mm=[0.0, 2.5])
    write_series(export / "duplicate", study="dup", phase=Phase.ARTERIAL, z_mm=[0.0, 2.5, 2.5, 5.0])
    write_series(export / "duplicate", study="dup", phase=Phase.DELAYED, z_mm=[0.0, 2.5])
    write_series(export / "gap", study="gap", phase=Phase.UNENHANCED, z_mm=[0.0, 2.5, 5.0, 10.0])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.dcm", b"\0" * (64 * 2**20))
    (export / "bomb.zip").write_bytes(buffer.getvalue())
    (study,) = read_studies(export / "good")
    x, y, z = study.series[1].to_patient((2, 20, 30))
    cases = ["good", "mixed", "duplicate", "gap", "bomb", "absent"]
    points = [
        {"case_id": c, "category": "A", "x_mm": x, "y_mm": y, "z_mm": z, "diameter_mm": 5} for c in cases
    ]
    pd.DataFrame(points).to_csv(tmp_path / "points.csv", index=False)
    report = import_dicom(export, tmp_path / "cohort", points=tmp_path / "points.csv", refine=False)
    assert list(report.manifest.case_id) == ["good"]
    why = dict(report.skipped)
    assert list(why) == cases[1:]
    assert why["mixed"] == "the folder holds 2 studies; one is expected"
    assert (
        "two slices at the same position" in why["duplicate"]
        and "Study 1 has 2 CT series" in why["duplicate"]
    )
    assert "1 missing slice(s) between 5.0 and 10.0 mm" in why["gap"]
    assert "zip bomb" in why["bomb"] or "compression ratio" in why["bomb"]
    assert why["absent"] == "the export has no folder (or zip) of that name"
    assert not list((tmp_path / "cohort").glob("bomb*"))  # nothing of a refused case is written
