"""The breath-hold shift between phases against the phantom's known truth (livercore.registration).

2-D: single sections of generate_case (in-plane shift of whole pixels). 3-D: the short volumes
of livercore.phantom.volume (shifts in plane and craniocaudally, phases of 5 and 2.5-3 mm).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from livercore.dicom_study import SeriesVolume
from livercore.errors import InputError
from livercore.phantom import generate_case
from livercore.registration import BreathHoldShift, refine_shift
from livercore.vocab import Phase
from tests.conftest import REAL_CT

U, A, D = Phase.UNENHANCED, Phase.ARTERIAL, Phase.DELAYED
SAMPLE_2D = range(30)  # test-2016 cases: 60 phase pairs
SAMPLE_3D = range(10)  # test-2016 volume cases: 20 phase pairs


def section_volume(
    hu: np.ndarray, spacing_mm: float, thickness_mm: float, **geometry: object
) -> SeriesVolume:
    """One 512 x 512 section as a one-section volume centred on the image (as dicom_io writes)."""
    h, w = hu.shape
    origin = geometry.get("origin_mm", (-(w - 1) / 2 * spacing_mm, -(h - 1) / 2 * spacing_mm, 0.0))
    return SeriesVolume(
        number=1,
        hu=np.asarray(hu, np.float32)[None],
        spacing_mm=(thickness_mm, spacing_mm, spacing_mm),
        origin_mm=origin,  # type: ignore[arg-type]
        orientation=geometry.get("orientation", (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)),  # type: ignore[arg-type]
    )


def lesion_mm(volume: SeriesVolume, row: float, col: float) -> tuple[float, float, float]:
    """generate_case's lesion centre (pixel centres at .5) in patient coordinates."""
    return volume.to_patient((0, row - 0.5, col - 0.5))


@pytest.fixture(scope="module")
def cases_2d() -> list:
    return [generate_case("test-2016", 0, i) for i in SAMPLE_2D]


@pytest.fixture(scope="module")
def cases_3d() -> list:
    volume = pytest.importorskip("livercore.phantom.volume")
    with ProcessPoolExecutor(max_workers=2) as pool:  # about 3 s of one core per case
        n = len(SAMPLE_3D)
        return list(pool.map(volume.generate_volume_case, ["test-2016"] * n, [0] * n, SAMPLE_3D))


def phase_volume(case, phase: Phase) -> SeriesVolume:  # case: livercore.phantom.volume.VolumeCase
    sp = case.spacing_mm
    return SeriesVolume(
        number=1,
        hu=case.hu[phase].astype(np.float32),
        spacing_mm=(case.thickness_mm[phase], sp, sp),
        origin_mm=case.origin_mm(phase),
        orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    )


def test_recovers_the_in_plane_shift_of_single_sections(cases_2d: list) -> None:
    errors, flagged = [], []
    for c in cases_2d:
        ref = section_volume(c.hu[A], c.spacing_mm, c.thickness_mm[A])
        centre = lesion_mm(ref, *c.lesion_center[A])
        for p in (U, D):
            got = refine_shift(
                ref,
                section_volume(c.hu[p], c.spacing_mm, c.thickness_mm[p]),
                centre,
                c.lesion_diameter_mm / 2,
            )
            truth = np.subtract(c.lesion_center[p], c.lesion_center[A])  # (rows, cols) pixels
            found = np.array([got.offset_mm[1], got.offset_mm[0]]) / c.spacing_mm
            errors.append(float(np.abs(found - truth).max()))
            flagged.append(not got.plausible)
            assert got.offset_mm[2] == 0.0 and "in plane" in got.reason
    errors_px = np.array(errors)
    assert np.mean(errors_px <= 1.0) >= 0.95, np.round(np.sort(errors_px)[-5:], 2)
    assert not np.any((errors_px > 2.0) & ~np.array(flagged))


def test_recovers_the_shift_in_plane_and_craniocaudally_of_volumes(cases_3d: list) -> None:
    good, wrong_unflagged = [], []
    for c in cases_3d:
        ref = phase_volume(c, A)
        for p in (U, D):
            got = refine_shift(ref, phase_volume(c, p), c.lesion_center_mm[A], c.diameter_mm / 2)
            error = np.subtract(got.offset_mm, c.shift_mm[p])
            in_plane_px = float(np.abs(error[:2]).max()) / c.spacing_mm
            z_sections = abs(float(error[2])) / c.thickness_mm[A]
            good.append(in_plane_px <= 1.0 and z_sections <= 1.0)
            wrong_unflagged.append((in_plane_px > 2.0 or z_sections > 2.0) and got.plausible)
    assert np.mean(good) >= 0.95
    assert not any(wrong_unflagged)


def test_a_shift_larger_than_a_breath_hold_is_flagged(cases_2d: list, cases_3d: list) -> None:
    c = cases_2d[0]
    ref = section_volume(c.hu[A], c.spacing_mm, c.thickness_mm[A])
    x0, y0, z0 = ref.origin_mm  # type: ignore[misc]
    moved = section_volume(c.hu[A], c.spacing_mm, c.thickness_mm[A], origin_mm=(x0 + 15.0, y0, z0))
    got = refine_shift(ref, moved, lesion_mm(ref, *c.lesion_center[A]), c.lesion_diameter_mm / 2)
    assert not got.plausible and "check this case" in got.reason
    assert got.offset_mm[0] > 10.0
    v = cases_3d[0]
    x0, y0, z0 = v.origin_mm(D)
    delayed = phase_volume(v, D)
    moved_3d = SeriesVolume(1, delayed.hu, delayed.spacing_mm, (x0, y0 - 15.0, z0), delayed.orientation)
    got = refine_shift(phase_volume(v, A), moved_3d, v.lesion_center_mm[A], v.diameter_mm / 2)
    assert not got.plausible


def test_noise_or_another_patient_is_flagged(cases_2d: list, cases_3d: list) -> None:
    rng = np.random.default_rng(0)
    c = cases_2d[1]
    ref = section_volume(c.hu[A], c.spacing_mm, c.thickness_mm[A])
    noise = section_volume(rng.normal(60, 15, c.hu[A].shape), c.spacing_mm, 2.5)
    got = refine_shift(ref, noise, lesion_mm(ref, *c.lesion_center[A]), c.lesion_diameter_mm / 2)
    assert not got.plausible and got.score < 0.2
    flagged = []
    for i, v in enumerate(cases_3d[:5]):  # a case's arterial phase against the next case's delayed one
        other = cases_3d[i + 1]
        delayed = phase_volume(other, D)
        n = delayed.hu.shape[0]
        z0 = v.lesion_center_mm[A][2] - (n - 1) / 2 * delayed.spacing_mm[0]
        x0, y0, _ = other.origin_mm(D)
        placed = SeriesVolume(1, delayed.hu, delayed.spacing_mm, (x0, y0, z0), delayed.orientation)
        flagged.append(
            not refine_shift(phase_volume(v, A), placed, v.lesion_center_mm[A], v.diameter_mm / 2).plausible
        )
    assert all(flagged)


def test_a_phase_against_itself_gives_no_shift(cases_3d: list) -> None:
    v = cases_3d[2]
    ref = phase_volume(v, A)
    got = refine_shift(ref, ref, v.lesion_center_mm[A], v.diameter_mm / 2)
    assert got.plausible and got.score > 0.99
    assert np.abs(got.offset_mm).max() < 0.1


def test_single_sections_are_matched_in_plane(cases_2d: list, cases_3d: list) -> None:
    v = cases_3d[3]
    ref = phase_volume(v, A)
    delayed = phase_volume(v, D)
    k = round(delayed.to_voxel(v.lesion_center_mm[A])[0])
    one = SeriesVolume(
        1, delayed.hu[k : k + 1], delayed.spacing_mm, delayed.to_patient((k, 0, 0)), delayed.orientation
    )
    for a, b, centre in ((ref, one, v.lesion_center_mm[A]), (one, ref, v.lesion_center_mm[D])):
        got = refine_shift(a, b, centre, v.diameter_mm / 2)
        assert isinstance(got, BreathHoldShift)
        assert got.offset_mm[2] == 0.0 and "in plane" in got.reason
        sign = 1.0 if a is ref else -1.0
        assert (
            np.abs(np.subtract(got.offset_mm[:2], np.multiply(sign, v.shift_mm[D][:2]))).max()
            < 2 * v.spacing_mm
        )


def test_another_field_of_view_or_storage_order_gives_the_same_shift(cases_2d: list) -> None:
    c = cases_2d[4]
    sp = c.spacing_mm
    ref = section_volume(c.hu[A], sp, c.thickness_mm[A])
    centre = lesion_mm(ref, *c.lesion_center[A])
    moving = section_volume(c.hu[D], sp, c.thickness_mm[D])
    plain = refine_shift(ref, moving, centre, c.lesion_diameter_mm / 2)
    x0, y0, z0 = moving.origin_mm  # type: ignore[misc]
    # A smaller field of view (rows and columns 60 on), and the image stored turned by 90 degrees
    # (rows running along -x, columns along +y).
    cropped = section_volume(
        c.hu[D][60:, 60:], sp, c.thickness_mm[D], origin_mm=(x0 + 60 * sp, y0 + 60 * sp, z0)
    )
    turned = section_volume(
        np.rot90(c.hu[D], k=1),
        sp,
        c.thickness_mm[D],
        origin_mm=(x0 + (c.hu[D].shape[1] - 1) * sp, y0, z0),
        orientation=(0.0, 1.0, 0.0, -1.0, 0.0, 0.0),
    )
    for other in (cropped, turned):
        got = refine_shift(ref, other, centre, c.lesion_diameter_mm / 2)
        assert np.abs(np.subtract(got.offset_mm, plain.offset_mm)).max() < 0.1
        assert got.plausible == plain.plausible


def test_volumes_without_geometry_or_a_centre_outside_are_input_errors(cases_2d: list) -> None:
    c = cases_2d[0]
    ref = section_volume(c.hu[A], c.spacing_mm, 2.5)
    bare = SeriesVolume(1, ref.hu, ref.spacing_mm, None, None)
    with pytest.raises(InputError):
        refine_shift(ref, bare, lesion_mm(ref, *c.lesion_center[A]), 10.0)
    with pytest.raises(InputError):
        refine_shift(ref, ref, (500.0, 0.0, 0.0), 10.0)


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="../shared/data/real-ct is not beside this checkout")
@pytest.mark.parametrize("offset_mm", [(3.0, -2.0, 0.0), (4.0, 1.5, -5.0)])
def test_the_real_hcc048_series_finds_a_known_shift_of_its_own_geometry(
    offset_mm: tuple[float, float, float],
) -> None:
    """Real liver around the real HCC: the same pixels with the patient frame moved (as another
    breath-hold's series would place them) give that move back."""
    from dataclasses import replace

    from livercore.dicom_study import read_studies

    (study,) = read_studies(REAL_CT)
    volume = study.series[0]
    moved = replace(volume, origin_mm=tuple(np.asarray(volume.origin_mm) + np.asarray(offset_mm)))
    found = refine_shift(volume, moved, volume.to_patient((7, 230, 150)), 15.0)
    assert found.plausible
    np.testing.assert_allclose(found.offset_mm, offset_mm, atol=0.2)  # 0.3 px, 0.04 sections
