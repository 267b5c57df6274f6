"""NIfTI benchmarks: phantom cases written as NIfTI volumes with a lesion mask, read back with
their known centres, diameters and categories, and imported as a cohort the study trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livercore.cohort import absent_categories, largest_sections, read_manifest
from livercore.cohort_import import import_nifti
from livercore.dicom_io import read_ct_slice
from livercore.errors import InputError
from livercore.nifti_cohort import NiftiLayout, category_of
from livercore.vocab import PHASES, Category

nib = pytest.importorskip("nibabel")
U, A, D = PHASES
SECTIONS = 5  # the lesion's largest section is the middle one
CROP = 12  # the delayed volume is cropped by this many pixels at the top and left (another field)
LABELS = {"A": "HCC", "B": "cholangiocarcinoma", "D": "Hemangioma", "E": "cyst"}


def _ras(image: np.ndarray) -> np.ndarray:
    """(H, W) image as read (rows anterior->posterior, columns right->left) -> RAS+ (X, Y)."""
    return image.T[::-1, ::-1]


def write_case(root: Path, case, *, step_mm: float = 5.0) -> tuple[float, float]:
    """One phantom case as three NIfTI volumes of SECTIONS sections and a mask of its lesion
    (a disc of its diameter on the middle section, smaller discs around it), in the arterial
    volume's space; the delayed volume covers another field. Returns the arterial centre."""
    sp = float(case.spacing_mm)
    folder = root / case.case_id
    folder.mkdir(parents=True)
    for p in PHASES:
        image = case.hu[p].astype(np.float32)
        affine = np.diag([sp, sp, step_mm, 1.0])
        if p is D:
            # Another field and table position: without the last CROP rows and columns, and one
            # section higher. In RAS+ the dropped rows (posterior) and columns (patient's left)
            # are the first voxels, so the volume's origin moves by CROP pixels in x and y.
            image = image[:-CROP, :-CROP]
            affine[:3, 3] = (CROP * sp, CROP * sp, step_mm)
        volume = np.stack([_ras(image)] * SECTIONS, axis=2)
        nib.save(nib.Nifti1Image(volume, affine), str(folder / f"{p.value}.nii.gz"))
    row, col = case.lesion_center[A]
    h, w = case.hu[A].shape
    rows, cols = np.mgrid[:h, :w]
    radius_px = case.lesion_diameter_mm / 2 / sp
    mask = np.zeros((w, h, SECTIONS), np.uint8)
    for k, scale in enumerate((0.5, 0.8, 1.0, 0.8, 0.5)):
        disc = (rows - row) ** 2 + (cols - col) ** 2 <= (radius_px * scale) ** 2
        mask[:, :, k] = _ras(disc.astype(np.uint8))
    nib.save(nib.Nifti1Image(mask, np.diag([sp, sp, step_mm, 1.0])), str(folder / "mask.nii.gz"))
    return float(row), float(col)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    from livercore.phantom import generate_case

    root = tmp_path_factory.mktemp("nifti")
    truth, rows = {}, []
    for index in range(12):
        case = generate_case("test-2016", 0, index)
        if case.category.value not in LABELS:
            continue
        truth[case.case_id] = (case, write_case(root, case))
        rows.append({"case_id": case.case_id, "label": LABELS[case.category.value]})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root, truth


@pytest.fixture(scope="module")
def imported(cohort, tmp_path_factory: pytest.TempPathFactory):
    root, _ = cohort
    out = tmp_path_factory.mktemp("imported")
    # The sections of these volumes are all alike (one phantom section repeated): there is no
    # breath-hold shift to find, so the lesions are carried by patient coordinates alone.
    return out, import_nifti(root, out, refine=False)


def test_each_lesion_is_found_at_its_centre_and_size_in_every_phase(cohort, imported) -> None:
    _, truth = cohort
    out, report = imported
    manifest = read_manifest(out)
    tests = largest_sections(manifest)
    assert len(tests) == len(truth) >= 6 and not report.skipped
    for row in tests.itertuples(index=False):
        case, (r, c) = truth[row.case_id]
        assert row.category == case.category.value
        for p in PHASES:  # the delayed volume's other field is undone through its affine
            assert abs(getattr(row, f"lesion_row_{p.value}") - r) <= 1.5
            assert abs(getattr(row, f"lesion_col_{p.value}") - c) <= 1.5
        assert row.lesion_diameter_mm == pytest.approx(case.lesion_diameter_mm, abs=1.0)
        np.testing.assert_array_equal(read_ct_slice(out / row.arterial).hu, case.hu[A].astype(np.float32))
        assert read_ct_slice(out / row.delayed).hu.shape == (
            case.hu[A].shape[0] - CROP,
            case.hu[A].shape[1] - CROP,
        )


def test_training_takes_several_sections_of_each_lesion_testing_the_largest(cohort, imported) -> None:
    out, _ = imported
    manifest = read_manifest(out)
    # The mask's discs are 0.5, 0.8, 1, 0.8 and 0.5 of the lesion: the three sections with at
    # least half the largest area, 5 mm apart, are written; the test takes the middle one.
    assert (manifest.groupby("lesion_id").size() == 3).all()
    for _, sections in manifest.groupby("lesion_id"):
        largest = sections["lesion_diameter_mm"].max()
        ratios = sorted(sections["lesion_diameter_mm"] / largest)  # 0.8 drawn, pixelised
        assert ratios[2] == 1.0 and 0.75 <= ratios[0] <= ratios[1] <= 0.9
    assert set(largest_sections(manifest)["case_id"]) == set(manifest["lesion_id"])


def test_the_import_is_a_cohort_the_study_reads(cohort, imported) -> None:
    from livercore.dataset import from_manifest

    _, truth = cohort
    out, report = imported
    manifest = report.manifest
    assert set(manifest.category) <= set(LABELS)
    assert Category.C in absent_categories(manifest)  # no category C in this cohort: said, not an error
    assert from_manifest(out / "manifest.csv", sections="largest").x.shape == (len(truth), 3, 70, 70)
    assert from_manifest(out).x.shape == (3 * len(truth), 3, 70, 70)
    import pydicom

    written = pydicom.dcmread(out / str(manifest.unenhanced[0]))
    assert str(written.PatientID) == "IMPORT00001"  # a synthetic id, not the source's


def test_labels_map_to_categories_and_unknown_labels_get_a_sentence() -> None:
    assert category_of("HCC") == (Category.A, "histology")
    assert category_of(" Hemangioma ")[0] is Category.D
    assert category_of("whatever", "c", "hypervascular") == (Category.C, "hypervascular")
    with pytest.raises(InputError, match="has no category"):
        category_of("angiosarcoma")
    with pytest.raises(InputError, match="expected A, B, C, D or E"):
        category_of("HCC", "F")


def test_missing_files_and_empty_masks_get_sentences(cohort, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"has no labels\.csv"):
        import_nifti(tmp_path, tmp_path / "out")
    _, truth = cohort
    case_id = next(iter(truth))
    broken = tmp_path / "broken"
    (broken / case_id).mkdir(parents=True)
    pd.DataFrame([{"case_id": case_id, "label": "HCC"}]).to_csv(broken / "labels.csv", index=False)
    with pytest.raises(InputError, match=r"unenhanced\.nii\.gz is missing"):
        import_nifti(broken, tmp_path / "out", refine=False)
    for p in PHASES:
        image = np.zeros((8, 8, 3), np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(broken / case_id / f"{p.value}.nii.gz"))
    with pytest.raises(InputError, match=r"mask\.nii\.gz is missing"):
        import_nifti(broken, tmp_path / "out", refine=False)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3), np.uint8), np.eye(4)), str(broken / case_id / "mask.nii.gz"))
    with pytest.raises(InputError, match="The mask marks no lesion"):
        import_nifti(broken, tmp_path / "out", refine=False)
    layout = NiftiLayout(phase_names={U: "nc", A: "art", D: "portal"})
    assert layout.volume_pattern.format(case="x", phase=layout.phase_names[D]) == "x/portal.nii.gz"


def test_a_case_that_cannot_be_read_is_skipped_with_its_reason_and_the_rest_imported(
    cohort, tmp_path: Path
) -> None:
    import shutil

    root, truth = cohort
    copy = tmp_path / "bench"
    shutil.copytree(root, copy)
    gone = next(iter(truth))
    (copy / gone / "mask.nii.gz").unlink()
    report = import_nifti(copy, tmp_path / "out", refine=False)
    assert report.skipped == [(gone, "mask.nii.gz is missing for this case.")]
    assert (
        gone not in set(report.manifest["lesion_id"])
        and report.manifest["lesion_id"].nunique() == len(truth) - 1
    )
    assert any(line.startswith(f"skipped {gone}: mask.nii.gz is missing") for line in report.lines())


def test_the_cli_imports_a_benchmark(cohort, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from livercore.cli import main

    root, truth = cohort
    assert main(["cohort", "import", str(root), "--out", str(tmp_path), "--no-refine"]) == 0
    out = capsys.readouterr().out
    assert (
        f"wrote {len(truth)} lesions in {3 * len(truth)} image sets" in out
        and "no lesion of category B, C" in out
    )
    assert main(["cohort", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    assert (
        main(["cohort", "import", str(tmp_path / "nowhere"), "--out", str(tmp_path), "--format", "nifti"])
        == 2
    )
