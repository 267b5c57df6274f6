"""livercore.measure on real CT: the automatic aorta and the liver ring, and the phase check
when the three phases are one series.

Real CT: HCC-TACE-Seg case HCC_048, The Cancer Imaging Archive (Moawad et al., 2021), used under
CC BY 4.0, https://doi.org/10.7937/TCIA.5FNA-0924 (see ATTRIBUTION.md beside the files): 16
portal-venous slices, 512 x 512, 0.703 mm pixels, oral contrast in the stomach. Positions
marked (row, col) were read by eye off the slices rendered as PNG (window 40/400).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from livercore import measure, phases
from livercore.app import inputs
from livercore.dicom_io import CTSlice, read_ct_slice, read_series
from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Phase
from tests.conftest import REAL_CT

U, A, D = PHASES
REAL_SLICES = sorted(REAL_CT.glob("slice_*.dcm"))
needs_real_ct = pytest.mark.skipif(len(REAL_SLICES) != 16, reason="real CT slices not available")
SPACING_MM = 0.703125
# The aorta's centre by eye, slice number -> (row, col): just anterior-left of the vertebral body,
# moving right and back as it descends (slice 0 is the lowest, at z = -271 mm).
AORTA_BY_EYE = {0: (260, 275), 4: (270, 280), 7: (275, 285), 8: (277, 287), 12: (292, 297), 15: (300, 302)}
# Lesion boxes (2 x 2 cm) in the right lobe whose rings cross vessels: slice -> (row, col).
LIVER_BOXES = {0: (230, 130), 7: (210, 170), 10: (180, 230)}


@pytest.fixture(scope="module")
def series() -> list[CTSlice]:
    return read_series([str(p) for p in REAL_SLICES])


def _one_series_as_three_phases(ct: CTSlice) -> dict[Phase, np.ndarray]:
    return dict.fromkeys(PHASES, ct.hu)


def _box(row: float, col: float) -> LesionBox:
    side = 20.0 / SPACING_MM
    return LesionBox(row, col, side, side)


# --- the aorta on one series uploaded as all three phases ---------------------------------------


@needs_real_ct
@pytest.mark.parametrize("number", sorted(AORTA_BY_EYE))
def test_aorta_is_found_on_a_real_slice_used_for_every_phase(series: list[CTSlice], number: int) -> None:
    ct = series[number]
    assert ct.label == f"slice_{number:02d}.dcm"
    found = measure.locate_aorta(_one_series_as_three_phases(ct), SPACING_MM)
    assert found is not None
    assert np.hypot(*np.subtract(found, AORTA_BY_EYE[number])) * SPACING_MM < 10
    disc = measure.disc_stats(ct.hu, found, SPACING_MM)
    assert disc is not None and 150 < disc.mean_hu < 300  # portal-venous aorta, about 230 HU
    assert disc.sd_hu < 30  # inside the lumen, not across its wall


@needs_real_ct
def test_aorta_is_found_on_every_real_slice_not_the_stomach_or_the_vertebra(series: list[CTSlice]) -> None:
    # The stomach (oral contrast, ~220 HU) and the vertebral body (~180 HU) are as bright as the
    # aorta; the aorta's centre moves at most a few mm between 5 mm apart slices.
    centres = []
    for ct in series:
        centre = measure.locate_aorta({A: ct.hu}, SPACING_MM)
        assert centre is not None, ct.label
        disc = measure.disc_stats(ct.hu, centre, SPACING_MM)
        assert disc is not None and 150 < disc.mean_hu < 300, ct.label
        centres.append(centre)
    steps_mm = np.hypot(*np.diff(np.array(centres), axis=0).T) * SPACING_MM
    assert float(steps_mm.max()) < 4


@needs_real_ct
def test_one_series_as_three_phases_reads_as_one_phase_without_a_swap(series: list[CTSlice]) -> None:
    ct = series[7]  # the series' middle slice, the review page's first view
    case = inputs.case_from_slices(dict.fromkeys(PHASES, ct), source="series", title="Uploaded DICOM series")
    centre, check = phases.aorta_check(case)
    assert centre is not None and np.hypot(*np.subtract(centre, AORTA_BY_EYE[7])) * SPACING_MM < 10
    assert check is not None and not check.plausible and check.suggested is None
    said = re.search(
        r"same aortic attenuation \(about (\d+) HU\), so they look like one phase", check.message
    )
    assert said is not None and 150 < int(said.group(1)) < 300, check.message


# --- the liver ring ------------------------------------------------------------------------------


@needs_real_ct
@pytest.mark.parametrize("number", sorted(LIVER_BOXES))
def test_liver_ring_in_real_parenchyma_reads_about_100_hu(series: list[CTSlice], number: int) -> None:
    ring = measure.liver_ring_stats(series[number].hu, _box(*LIVER_BOXES[number]), SPACING_MM)
    assert ring is not None
    assert 90 <= ring.mean_hu <= 115  # portal-venous liver of this series
    assert 5 <= ring.sd_hu <= 25  # the parenchyma's noise and texture, not vessels (~180 HU)


@needs_real_ct
def test_liver_ring_around_the_portal_vein_reads_the_liver_beside_it(series: list[CTSlice]) -> None:
    # Slice 3: a box on the right portal vein (its ring crosses the vein's branches) and a box in
    # clean parenchyma 5 cm away.
    hu = series[3].hu
    on_vein = measure.liver_ring_stats(hu, _box(200, 200), SPACING_MM)
    clean = measure.liver_ring_stats(hu, _box(240, 150), SPACING_MM)
    assert on_vein is not None and clean is not None
    assert abs(on_vein.mean_hu - clean.mean_hu) < 10
    assert on_vein.sd_hu < 25


def test_liver_ring_drops_a_vessel_and_fat_it_crosses() -> None:
    rng = np.random.default_rng(0)
    hu = rng.normal(100.0, 10.0, (120, 120)).astype(np.float32)
    hu[:, 74:79] = 190.0  # a portal vein branch through the ring's right side (cols 73-81)
    hu[40:44, :] = -80.0  # a fissure's fat through its top (rows 39-47)
    ring = measure.liver_ring_stats(hu, LesionBox(60, 60, 20, 20), 1.0)
    assert ring is not None
    assert ring.mean_hu == pytest.approx(100.0, abs=2.0)
    assert ring.sd_hu == pytest.approx(10.0, abs=2.0)


def test_clip_to_median_on_known_values() -> None:
    values = np.array([99.0, 100.0, 100.0, 101.0, 180.0])  # median 100, MAD 1 -> limit 3 x 1.4826
    np.testing.assert_array_equal(measure.clip_to_median(values), [99.0, 100.0, 100.0, 101.0])
    assert measure.clip_to_median(np.array([])).size == 0


# --- pydicom-data's real CT ----------------------------------------------------------------------


def _pydicom_ct(name: str) -> tuple[np.ndarray, float]:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom-data here")
    ct = read_ct_slice(str(path))
    return ct.hu, float(np.mean(ct.pixel_spacing_mm))


def test_aorta_is_found_on_pydicom_datas_abdominal_ct() -> None:
    # explicit_VR-UN.dcm: a contrast-enhanced pancreas CT (TCIA Pancreas-CT) stored with its rows
    # running from back to front (ImageOrientationPatient 1,0,0,0,-1,0): the aorta lies below the
    # vertebral body on the image, just above the superior mesenteric artery.
    hu, spacing = _pydicom_ct("explicit_VR-UN.dcm")
    found = measure.locate_aorta({A: hu}, spacing)
    assert found is not None
    assert np.hypot(*np.subtract(found, (237, 267))) * spacing < 10
    disc = measure.disc_stats(hu, found, spacing)
    assert disc is not None and 150 < disc.mean_hu < 300


@pytest.mark.parametrize(
    "name",
    [
        "693_UNCR.dcm",  # a head: brain and skull
        "J2K_pixelrep_mismatch.dcm",  # a head at the skull base
        "bad_sequence.dcm",  # a vertebra without contrast: the aorta is not opacified
    ],
)
def test_no_aorta_is_found_where_none_is_opacified(name: str) -> None:
    hu, spacing = _pydicom_ct(name)
    assert measure.locate_aorta(dict.fromkeys(PHASES, hu), spacing) is None


# --- the phase check ---------------------------------------------------------------------------


def test_equal_aortas_read_as_one_phase_and_propose_no_swap() -> None:
    check = phases.check_phases_by_aorta({U: 221.0, A: 226.0, D: 223.0})
    assert not check.plausible and check.suggested is None
    assert "same aortic attenuation (about 223 HU)" in check.message
    assert "look like one phase, not an unenhanced, arterial and delayed set" in check.message
    assert "swapped" not in check.message
