"""The volume phantom (livercore.phantom.volume): short multiphase volumes whose truth is known,
checked from their pixels and through the readers of real data (DICOM series, DICOM SEG,
NIfTI), and generate_case left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from livercore.dicom_study import propose_phases, read_studies
from livercore.phantom import (
    export_volumes,
    generate_case,
    generate_volume_case,
    spec,
    write_dicom_study,
    write_nifti_case,
    write_seg,
)
from livercore.phantom.volume import (
    MASK_FILE,
    PHASE_FILES,
    SEG_FILE,
    VolumeCase,
    ras_affine,
    series_description,
)
from livercore.vocab import PHASES, Phase

U, A, D = PHASES
COHORT = "test-2016"
# Two cysts (their pixels say where they are in every phase), a small hypervascular nodule and
# a train-2013 lesion of five sections (its image set's section lies off the lesion's centre).
CASES = {"cyst": (COHORT, 0), "cyst2": (COHORT, 20), "nodule": (COHORT, 2), "train": ("train-2013", 16)}


@pytest.fixture(scope="module")
def cases() -> dict[str, VolumeCase]:
    return {name: generate_volume_case(cohort, 0, index) for name, (cohort, index) in CASES.items()}


# --- generate_case stays as it was -------------------------------------------------------------

# sha256 of the U, A, D pixels (int16 bytes), computed with the code before the volume phantom.
GENERATE_CASE_SHA256 = {
    ("test-2016", 0, 0, None, True): "b8c9fc717106737a54d74c556dbccce1ba34d01977743ae6fab9209a9df41810",
    ("test-2016", 0, 7, None, True): "7845dc283d20fb32ef644041a09d202b0f85f348c5e1fde6505dd85b19d8d3e4",
    ("train-2013", 0, 500, None, True): "75466e7ca5f8e5531a7d0e5c4add4ffb2ca323ab99df1700e20ea4a85c1526c4",
    ("site-x", 3, 5, 20, True): "de3fc87fe87b0c84fc43519eb5f22abe4d6824c726341db25ee569dc10fc35c6",
    ("test-2016", 0, 5, None, False): "20d7b2bca8eb4f2642fad0bac4f629ea54d174ae7c67839fcb6c17a5f847918f",
}


@pytest.mark.parametrize("key", list(GENERATE_CASE_SHA256))
def test_generate_case_pixels_are_unchanged(key) -> None:
    cohort, seed, index, size, lesion = key
    case = generate_case(cohort, seed, index, size, lesion=lesion)
    digest = hashlib.sha256(b"".join(case.hu[p].tobytes() for p in PHASES)).hexdigest()
    assert digest == GENERATE_CASE_SHA256[key]


# --- the case -----------------------------------------------------------------------------------


def test_a_volume_case_is_a_pure_function_of_its_index(cases) -> None:
    again = generate_volume_case(COHORT, 0, 2)
    first = cases["nodule"]
    for p in PHASES:
        np.testing.assert_array_equal(again.hu[p], first.hu[p])
        np.testing.assert_array_equal(again.section_z_mm[p], first.section_z_mm[p])
    np.testing.assert_array_equal(again.lesion_mask, first.lesion_mask)
    assert again.lesion_center_mm == first.lesion_center_mm and again.shift_mm == first.shift_mm


def test_it_is_the_2d_case_s_patient_lesion_scanner_and_misregistration(cases) -> None:
    for name in ("cyst", "nodule"):
        case, (cohort, index) = cases[name], CASES[name]
        flat = generate_case(cohort, 0, index)
        assert (case.category, case.subtype, case.image_set.vendor) == (
            flat.category,
            flat.subtype,
            flat.image_set.vendor,
        )
        assert case.spacing_mm == flat.spacing_mm and case.manufacturer == flat.manufacturer
        assert case.diameter_mm == pytest.approx(flat.lesion_diameter_mm, rel=1e-6)  # its largest section
        for p in PHASES:  # the same in-plane position and whole-pixel shift in every phase
            assert case.lesion_center_voxel[p][1:] == pytest.approx(flat.lesion_center[p], abs=1e-9)


def test_the_volume_s_organs_are_the_2d_section_s_draw_for_draw() -> None:
    """_anatomy_layers repeats anatomy.render_section's random stream; at the reference section
    its liver and organs are the section's own (only the liver's vessels are new)."""
    from livercore.phantom import anatomy
    from livercore.phantom.cohort import draw_case
    from livercore.phantom.volume import _anatomy_layers

    for cohort, index in (CASES["nodule"], CASES["train"]):
        draws = draw_case(cohort, 0, index)
        flat_rng, volume_rng = draws.section_rng(), draws.section_rng()
        section = anatomy.render_section(draws.patient, flat_rng, draws.section_level)
        layers = _anatomy_layers(draws.patient, volume_rng, draws.section_level)
        assert flat_rng.bit_generator.state == volume_rng.bit_generator.state
        liver, _, organ_image, organ_alpha = layers.section(0.0, 1)
        visible = section.liver_mask >= 0.999  # liver parenchyma in the section (and vessel rims)
        np.testing.assert_allclose(liver[visible], section.liver_mask[visible], atol=1e-6)
        same = np.abs(layers.liver_values[1] - section.mobile.image[1])[visible] < 1e-3
        assert same.mean() > 0.95  # the rest are the section's own vessels' rims
        covered = organ_alpha > 0.999  # the other organs (the section's vessels start at its IVC)
        assert (np.abs(organ_image - section.mobile.image[1])[covered] < 1e-3).mean() > 0.99


def test_sections_are_contiguous_at_each_phase_s_interval_and_cover_the_lesion(cases) -> None:
    for case in cases.values():
        vendor = spec.VENDORS[case.image_set.vendor]
        assert case.thickness_mm == {U: 5.0, A: vendor.contrast_thickness_mm, D: vendor.contrast_thickness_mm}
        for p in PHASES:
            volume, z = case.hu[p], case.section_z_mm[p]
            assert volume.dtype == np.int16 and volume.shape[1:] == (512, 512)
            assert 9 <= volume.shape[0] <= 15 and len(z) == volume.shape[0]
            np.testing.assert_allclose(np.diff(z), case.thickness_mm[p])
            k, r, c = case.lesion_center_voxel[p]
            assert 1 <= k <= volume.shape[0] - 2  # the lesion and a margin on both sides
            assert case.to_voxel(p, case.lesion_center_mm[p]) == pytest.approx((k, r, c))
        assert case.lesion_mask.shape == case.hu[A].shape and case.lesion_mask.dtype == np.uint8


def test_the_lesion_is_largest_at_its_centre_and_small_and_faint_towards_its_poles(cases) -> None:
    for case in cases.values():
        areas = case.lesion_mask.sum(axis=(1, 2)).astype(int)
        peak = int(np.argmax(areas))
        assert abs(peak - case.lesion_center_voxel[A][0]) <= 1.0
        assert np.all(np.diff(areas[: peak + 1]) >= 0) and np.all(np.diff(areas[peak:]) <= 0)
        equivalent = 2 * np.sqrt(areas.max() / np.pi) * case.spacing_mm
        assert equivalent == pytest.approx(case.diameter_mm, rel=0.1)
    # A cyst in the pixels: its pole sections are less dark than its largest (partial volume).
    for name in ("cyst", "cyst2"):
        case = cases[name]
        sections = np.nonzero(case.lesion_mask.any(axis=(1, 2)))[0]
        mean_hu = {k: float(case.hu[A][k][case.lesion_mask[k] > 0].mean()) for k in sections}
        largest = int(np.argmax(case.lesion_mask.sum(axis=(1, 2))))
        assert min(mean_hu[sections[0]], mean_hu[sections[-1]]) > mean_hu[largest] + 3, (name, mean_hu)


def _cyst_centroid(case: VolumeCase, phase: Phase) -> np.ndarray:
    """The cyst's centroid (section, row, col) from the pixels: water-like voxels after light
    smoothing, the connected region nearest where patient coordinates put the arterial centre."""
    smooth = ndimage.gaussian_filter(case.hu[phase].astype(np.float32), (0, 1.5, 1.5))
    expect = np.array(case.to_voxel(phase, case.lesion_center_mm[A]))
    section = smooth[round(expect[0])]
    liver = float(np.median(section[section > 30]))
    inside = (smooth > -20) & (smooth < (liver + 10) / 2)
    labels, n = ndimage.label(inside)
    centres = np.array(ndimage.center_of_mass(inside, labels, range(1, n + 1)))
    sizes = np.asarray(ndimage.sum(inside, labels, range(1, n + 1)))
    scale = np.array([case.thickness_mm[phase], case.spacing_mm, case.spacing_mm])
    expected_voxels = 4 / 3 * np.pi * (case.diameter_mm / 2) ** 3 / scale.prod()
    distance = np.linalg.norm((centres - expect) * scale, axis=1)
    distance[sizes < 0.3 * expected_voxels] = np.inf
    return centres[int(np.argmin(distance))]


def test_the_shift_truth_is_what_the_lesion_s_pixels_show(cases) -> None:
    for name in ("cyst", "cyst2"):
        case = cases[name]
        for p in PHASES:
            centre = _cyst_centroid(case, p)
            truth = np.array(case.lesion_center_voxel[p])
            assert np.abs(centre[1:] - truth[1:]).max() <= 1.5, (name, p)
            assert abs(centre[0] - truth[0]) <= 0.4, (name, p)
            moved = np.array(case.lesion_center_mm[A]) + np.array(case.shift_mm[p])
            np.testing.assert_allclose(case.lesion_center_mm[p], moved)
        assert case.shift_mm[A] == (0.0, 0.0, 0.0)
        for p in (U, D):
            dx, dy, dz = case.shift_mm[p]
            assert abs(dz) <= spec.SECTION_JITTER_MM and np.hypot(dx, dy) <= spec.MISREGISTRATION_MM + 1
            assert dx / case.spacing_mm == pytest.approx(round(dx / case.spacing_mm))  # whole pixels


def _vessels(volume: np.ndarray) -> np.ndarray:
    """Band-pass (difference of Gaussians): vessels, not the organs' outlines."""
    v = volume.astype(np.float32)
    return ndimage.gaussian_filter(v, (0, 1.2, 1.2)) - ndimage.gaussian_filter(v, (0, 6, 6))


def _liver_ring(case: VolumeCase) -> np.ndarray:
    """The pixels 3-50 mm outside the lesion (its largest section) in the arterial phase: the
    liver around it, its vessels and outline."""
    _, r, c = case.lesion_center_voxel[A]
    radius = case.diameter_mm / 2 / case.spacing_mm
    rows, cols = np.mgrid[:512, :512]
    d = np.hypot(rows - r, cols - c)
    return (d > radius * 1.3 + 3) & (d < radius * 1.3 + 50 / case.spacing_mm)


def test_the_liver_around_the_lesion_changes_from_section_to_section(cases) -> None:
    for name in ("cyst", "cyst2"):
        case = cases[name]
        ring = _liver_ring(case)
        v = _vessels(case.hu[A])
        adjacent = np.mean([np.corrcoef(v[k][ring], v[k + 1][ring])[0, 1] for k in range(len(v) - 1)])
        far = np.corrcoef(v[0][ring], v[-1][ring])[0, 1]
        assert adjacent > 0.9 and far < adjacent - 0.2, (name, adjacent, far)


def test_the_liver_around_the_lesion_moves_with_the_breath_hold(cases) -> None:
    """Outside the lesion, the delayed phase's vessels (moved back by the known in-plane shift)
    line up with the arterial ones (interpolated between its sections) best at the true
    craniocaudal shift, searched in 0.5 mm steps."""
    for name in ("cyst", "cyst2"):
        case = cases[name]
        ring = _liver_ring(case)
        art, late = _vessels(case.hu[A]), _vessels(case.hu[D])
        sp, (dx, dy, dz) = case.spacing_mm, case.shift_mm[D]
        late = np.roll(late, (-round(dy / sp), -round(dx / sp)), axis=(1, 2))
        z_art, z_late = case.section_z_mm[A], case.section_z_mm[D]

        def alignment(trial_dz: float, art=art, late=late, ring=ring, z_art=z_art, z_late=z_late) -> float:
            values = []
            for k, z in enumerate(z_late):
                f = (z - trial_dz - z_art[0]) / (z_art[1] - z_art[0])
                if 0 <= f <= len(z_art) - 1:
                    i = min(int(f), len(z_art) - 2)
                    reference = (1 - (f - i)) * art[i] + (f - i) * art[i + 1]
                    values.append(np.corrcoef(reference[ring], late[k][ring])[0, 1])
            return float(np.mean(values))

        trials = np.arange(-8, 8.01, 0.5)
        best = trials[int(np.argmax([alignment(t) for t in trials]))]
        assert abs(best - dz) <= 1.0, (name, best, dz)


# --- DICOM --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_folder(cases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dicom") / cases["cyst"].case_id
    write_dicom_study(cases["cyst"], folder)
    write_seg(cases["cyst"], folder / SEG_FILE)
    return folder


def test_the_dicom_study_reads_back_as_three_volumes_in_patient_space(cases, dicom_folder) -> None:
    case = cases["cyst"]
    (study,) = read_studies(dicom_folder)  # the SEG beside the images is skipped
    assert len(study.series) == 3 and study.notes == ()
    proposal = propose_phases(study)
    assert proposal.series == {U: 0, A: 1, D: 2}
    times = [v.acquisition_time_s for v in study.series]
    assert times == sorted(times) and len(set(times)) == 3
    for p, volume in zip(PHASES, study.series, strict=True):
        assert volume.kind == p.value and volume.description == series_description(case, p)
        assert volume.spacing_mm == pytest.approx((case.thickness_mm[p], case.spacing_mm, case.spacing_mm))
        assert volume.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        assert volume.origin_mm == pytest.approx(case.origin_mm(p))
        np.testing.assert_array_equal(volume.hu, case.hu[p])
        assert volume.to_voxel(case.lesion_center_mm[p]) == pytest.approx(
            case.lesion_center_voxel[p], abs=1e-6
        )
        first = volume.slices[0]
        assert first.slice_thickness_mm == case.thickness_mm[p]
        assert [s.position_z_mm for s in volume.slices] == pytest.approx(list(case.section_z_mm[p]))
    import pydicom

    ds = pydicom.dcmread(next((dicom_folder / "SE2").glob("*.dcm")))
    assert float(ds.SpacingBetweenSlices) == case.thickness_mm[A]
    assert float(ds.SliceLocation) == pytest.approx(float(ds.ImagePositionPatient[2]))
    assert ds.PatientID == case.image_set.patient_id and ds.PatientIdentityRemoved == "YES"


def test_series_without_descriptions_are_blank_and_still_read(cases, tmp_path: Path) -> None:
    write_dicom_study(cases["nodule"], tmp_path, describe=False)
    (study,) = read_studies(tmp_path)
    assert [v.description for v in study.series] == ["", "", ""]
    assert study.series[0].kind == "unenhanced"  # no contrast agent, nothing in the description
    assert [v.hu.shape[0] for v in study.series] == [cases["nodule"].hu[p].shape[0] for p in PHASES]


def test_the_seg_holds_the_arterial_mask_and_references_the_arterial_series(cases, dicom_folder) -> None:
    import highdicom as hd
    import pydicom

    case = cases["cyst"]
    seg = hd.seg.segread(dicom_folder / SEG_FILE)
    assert seg.SegmentationType == "BINARY" and seg.get_segment_description(1).segment_label == "lesion"
    arterial = sorted((dicom_folder / "SE2").glob("*.dcm"))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in arterial]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    pixels = seg.get_pixels_by_source_instance(
        [s.SOPInstanceUID for s in sources], assert_missing_frames_are_empty=True
    )
    np.testing.assert_array_equal(pixels[..., 0], case.lesion_mask)
    from livercore.annotation import read_seg

    (study,) = read_studies(dicom_folder)
    mask = read_seg(dicom_folder / SEG_FILE).volume.resample_onto(study.series[1])
    np.testing.assert_array_equal(mask, case.lesion_mask)


# --- NIfTI --------------------------------------------------------------------------------------


def test_nifti_volumes_are_ras_with_the_mask_in_the_arterial_space(cases, tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    case = cases["train"]
    write_nifti_case(case, tmp_path)
    for p in PHASES:
        image = nib.load(tmp_path / PHASE_FILES[p])
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        np.testing.assert_allclose(image.affine, ras_affine(case, p), atol=1e-6)
        data = np.asarray(image.dataobj)
        assert data.dtype == np.int16 and data.shape == case.hu[p].shape[::-1]
        np.testing.assert_array_equal(data[::-1, ::-1, :].transpose(2, 1, 0), case.hu[p])
    mask = nib.load(tmp_path / MASK_FILE)
    np.testing.assert_allclose(mask.affine, ras_affine(case, A), atol=1e-6)
    i, j, k = np.nonzero(np.asarray(mask.dataobj))
    centre = mask.affine @ [i.mean(), j.mean(), k.mean(), 1.0]
    lps = np.array([-centre[0], -centre[1], centre[2]])  # RAS -> LPS
    truth = np.array(case.lesion_center_mm[A])
    assert np.abs(lps[:2] - truth[:2]).max() <= 1.5 * case.spacing_mm
    assert abs(lps[2] - truth[2]) <= 0.5 * case.thickness_mm[A]


def test_the_nifti_reader_finds_the_lesion_where_patient_coordinates_put_it(cases, tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    from livercore.annotation import lesions_from_mask
    from livercore.nifti_cohort import NiftiLayout, read_case

    for name in ("cyst", "train"):
        case = cases[name]
        write_nifti_case(case, tmp_path / case.case_id)
        volumes, mask = read_case(tmp_path, case.case_id, NiftiLayout())
        (lesion,) = lesions_from_mask(mask, volumes[A])
        assert lesion.diameter_mm == pytest.approx(case.diameter_mm, rel=0.1)
        for p in PHASES:
            found = np.array(volumes[p].to_voxel(lesion.centre_mm))
            # No breath-hold refinement: in U and D the truth minus the shift.
            expected = np.array(case.to_voxel(p, case.lesion_center_mm[A]))
            assert np.abs(found[1:] - expected[1:]).max() <= 1.5, (name, p)
            assert abs(found[0] - expected[0]) <= 0.75, (name, p)
            np.testing.assert_array_equal(volumes[p].hu, case.hu[p])


# --- a cohort -------------------------------------------------------------------------------------


def test_export_volumes_writes_both_formats_and_the_truth(tmp_path: Path) -> None:
    truth = export_volumes("vol-check", tmp_path, seed=3, size=2, workers=2)
    assert len(truth) == 2 and (tmp_path / "truth.csv").is_file()
    for p in PHASES:
        for column in (f"lesion_{a}_{p.value}" for a in ("x_mm", "y_mm", "z_mm", "section", "row", "col")):
            assert column in truth.columns
        assert {f"shift_{a}_mm_{p.value}" for a in "xyz"} <= set(truth.columns)
    points = pd.read_csv(tmp_path / "dicom" / "points.csv")
    assert list(points.columns) == ["case_id", "category", "subtype", "x_mm", "y_mm", "z_mm", "diameter_mm"]
    np.testing.assert_allclose(points["z_mm"], truth["lesion_z_mm_arterial"])
    labels = pd.read_csv(tmp_path / "nifti" / "labels.csv")
    assert list(labels.columns) == ["case_id", "label", "category", "subtype"]
    for case_id in truth["case_id"]:
        assert (tmp_path / "dicom" / case_id / SEG_FILE).is_file()
        assert {f.name for f in (tmp_path / "nifti" / case_id).iterdir()} == {
            *PHASE_FILES.values(),
            MASK_FILE,
        }
        (study,) = read_studies(tmp_path / "dicom" / case_id)
        assert len(study.series) == 3
