"""Tests for livercore.dicom_io: reading real CT, rejecting bad uploads, writing phantom slices.

Bad inputs are generated here from pydicom's CT_small.dcm and the real slices, so the corpus
needs no binary fixtures.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from livercore.dicom_io import (
    CTSlice,
    ct_slice_dataset,
    derive_uid,
    read_ct_slice,
    read_series,
    read_zip_series,
    write_dataset,
)
from livercore.errors import InputError
from livercore.phases import assign_phases, phase_hint
from livercore.vocab import PHASE_DELAY_S, Phase

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
DICOMDIR = get_testdata_file("DICOMDIR")

# Real CT: HCC-TACE-Seg case HCC_048, The Cancer Imaging Archive (Moawad et al., 2021), used
# under CC BY 4.0, https://doi.org/10.7937/TCIA.5FNA-0924 (see ATTRIBUTION.md beside the files).
REAL_CT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct" / "HCC048"
REAL_CT = sorted(REAL_CT_DIR.glob("slice_*.dcm"))
needs_real_ct = pytest.mark.skipif(len(REAL_CT) != 16, reason="real CT slices not available")


def ct_small() -> pydicom.Dataset:
    return pydicom.dcmread(CT_SMALL)


def to_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def phantom_dataset(phase: Phase, hu: np.ndarray | None = None, **overrides) -> pydicom.Dataset:
    options = dict(
        phase=phase,
        pixel_spacing_mm=0.7,
        slice_thickness_mm=5.0,
        patient_id="case-0001",
        study_uid=derive_uid("case-0001", "study"),
        series_uid=derive_uid("case-0001", phase.value),
        study_date="20240102",
        injection_time_s=10 * 3600.0,
        manufacturer="livercore phantom",
        series_number=1 + list(Phase).index(phase),
    )
    options.update(overrides)
    if hu is None:
        hu = np.zeros((8, 8))
    return ct_slice_dataset(hu, **options)


def written_slice(ds: pydicom.Dataset) -> CTSlice:
    buffer = io.BytesIO()
    write_dataset(ds, buffer)
    return read_ct_slice(buffer.getvalue())


# --- Reading known files -------------------------------------------------------------------


def test_ct_small_hu_from_rescale():
    # CT_small.dcm: RescaleSlope 1, RescaleIntercept -1024; stored values read by pydicom.
    ct = read_ct_slice(CT_SMALL)
    assert ct.hu.shape == (128, 128)
    assert ct.hu.dtype == np.float32
    assert ct.hu[0, 0] == 175 - 1024
    assert ct.hu[0, 1] == 180 - 1024
    assert ct.hu[64, 64] == 1928 - 1024
    assert ct.notes == ()


def test_ct_small_header_values():
    ct = read_ct_slice(CT_SMALL)
    assert ct.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert ct.slice_thickness_mm == 5.0
    assert ct.position_z_mm == pytest.approx(-75.699997)
    assert ct.instance_number == 1
    assert ct.acquisition_time_s == 11 * 3600 + 29 * 60 + 36  # AcquisitionTime 112936
    assert ct.contrast_agent == "ISOVUE300/100"
    assert ct.manufacturer == "GE MEDICAL SYSTEMS"
    assert ct.kvp == 120.0


def test_sources_bytes_path_and_file_object_agree():
    data = Path(CT_SMALL).read_bytes()
    with open(CT_SMALL, "rb") as fp:
        from_file = read_ct_slice(fp)
    for ct in (read_ct_slice(data), read_ct_slice(Path(CT_SMALL)), from_file):
        np.testing.assert_array_equal(ct.hu, read_ct_slice(CT_SMALL).hu)


def test_hu_is_read_only():
    with pytest.raises(ValueError):
        read_ct_slice(CT_SMALL).hu[0, 0] = 0


def test_missing_rescale_defaults_to_identity_and_is_noted():
    ds = ct_small()
    del ds.RescaleSlope
    del ds.RescaleIntercept
    ct = read_ct_slice(to_bytes(ds))
    assert ct.hu[0, 0] == 175
    assert "assumed slope 1 and intercept 0" in ct.notes[0]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("RescaleSlope", "NaN"), ("RescaleIntercept", "inf"), ("RescaleSlope", "-Infinity")],
)
def test_non_finite_rescale_is_refused_with_a_sentence(keyword: str, value: str) -> None:
    ds = ct_small()
    setattr(ds, keyword, value)
    with pytest.raises(InputError, match=f"{keyword} is not a finite number"):
        read_ct_slice(to_bytes(ds))


def test_implicit_vr_reads_the_same():
    ds = ct_small()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    np.testing.assert_array_equal(read_ct_slice(to_bytes(ds)).hu, read_ct_slice(CT_SMALL).hu)


def test_rle_compressed_reads_the_same():
    ds = ct_small()
    ds.compress(RLELossless)
    np.testing.assert_array_equal(read_ct_slice(to_bytes(ds)).hu, read_ct_slice(CT_SMALL).hu)


def test_metadata_is_an_allow_list_without_identifiers():
    ds = ct_small()
    meta = read_ct_slice(CT_SMALL).metadata()
    assert set(meta) == {
        "modality",
        "manufacturer",
        "kvp",
        "slice_thickness_mm",
        "pixel_spacing_mm",
        "series_description",
        "contrast_agent",
        "acquisition_time",
    }
    assert meta["acquisition_time"] == "11:29:36"
    values = " ".join(str(v) for v in meta.values())
    assert str(ds.PatientName) not in values
    assert str(ds.PatientID) not in values
    assert not {"PatientName", "PatientID", "patient_name", "patient_id"} & set(meta)


# --- Real CT series (CC BY 4.0, HCC-TACE-Seg HCC_048; see REAL_CT above) --------------------


@needs_real_ct
def test_real_slices_read_as_one_series_sorted_by_z():
    series = read_series(list(reversed(REAL_CT)))
    z = [s.position_z_mm for s in series]
    assert len(series) == 16
    assert z == sorted(z)
    assert z[0] == -271.0 and z[-1] == -196.0
    assert {s.pixel_spacing_mm for s in series} == {(0.703125, 0.703125)}
    assert {s.slice_thickness_mm for s in series} == {2.5}
    assert {s.hu.shape for s in series} == {(512, 512)}
    assert series[0].label == "slice_00.dcm"


@needs_real_ct
def test_real_liver_parenchyma_is_about_100_hu():
    # Slice at z = -231 mm; the ROI lies in the right lobe, clear of vessels and the lesion
    # (picked by eye on a rendered slice). The aorta ROI checks the portal-venous phase.
    ct = read_series(REAL_CT)[8]
    assert ct.position_z_mm == -231.0
    liver = ct.hu[190:230, 150:200]
    aorta = ct.hu[266:280, 280:294]
    assert 90 < float(liver.mean()) < 110
    assert float(liver.std()) < 25
    assert 180 < float(aorta.mean()) < 260


@needs_real_ct
def test_real_slice_portal_venous_series_gets_no_phase_hint():
    # "LIVER 2 PHASE (C/A/P)" names a contrast protocol; the agent tag is blank after
    # de-identification, which alone would suggest an unenhanced series.
    ct = read_ct_slice(REAL_CT[0])
    assert ct.contrast_agent is None
    assert phase_hint(ct) is None


@needs_real_ct
def test_series_mixing_series_uids_is_rejected():
    ds = pydicom.dcmread(REAL_CT[1])
    ds.SeriesInstanceUID = derive_uid("another series")
    with pytest.raises(InputError, match="different series"):
        read_series([REAL_CT[0], to_bytes(ds)])


@needs_real_ct
def test_series_mixing_sizes_is_rejected():
    ds = ct_small()
    ds.SeriesInstanceUID = pydicom.dcmread(REAL_CT[0]).SeriesInstanceUID
    with pytest.raises(InputError, match="image size"):
        read_series([REAL_CT[0], to_bytes(ds)])


def test_empty_series_is_rejected():
    with pytest.raises(InputError, match="No DICOM files"):
        read_series([])


# --- Bad single files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).bytes(4096),
        b"Patient notes: nothing to see here.\n" * 20,
        b"",
        b"\x00" * 128 + b"DICX" + b"\x00" * 64,
    ],
    ids=["random-bytes", "text", "empty", "wrong-marker"],
)
def test_not_dicom_is_rejected(data):
    with pytest.raises(InputError, match="not a DICOM file"):
        read_ct_slice(data)


def test_empty_file_on_disk_is_rejected(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="not a DICOM file"):
        read_ct_slice(path)


@needs_real_ct
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.999])
def test_truncated_real_slice_is_rejected(fraction):
    data = REAL_CT[0].read_bytes()
    with pytest.raises(InputError):
        read_ct_slice(data[: int(len(data) * fraction)])


def test_truncated_pixel_data_names_the_shortfall():
    data = Path(CT_SMALL).read_bytes()
    with pytest.raises(InputError, match="truncated"):
        read_ct_slice(data[:-1000])


def test_real_mr_file_is_rejected_as_mr():
    with pytest.raises(InputError, match=r"MR \(magnetic resonance\).*not a CT image"):
        read_ct_slice(MR_SMALL)


@pytest.mark.parametrize(
    ("modality", "words"),
    [
        ("MR", "magnetic resonance"),
        ("US", "ultrasound"),
        ("SEG", "segmentation"),
        ("RTSTRUCT", "radiotherapy structure set"),
        ("SR", "structured report"),
        ("XYZ", "a XYZ object"),
    ],
)
def test_non_ct_modality_is_named(modality, words):
    ds = ct_small()
    ds.Modality = modality
    with pytest.raises(InputError, match=words):
        read_ct_slice(to_bytes(ds))


def test_missing_pixel_data_is_rejected():
    ds = ct_small()
    del ds.PixelData
    with pytest.raises(InputError, match="no image"):
        read_ct_slice(to_bytes(ds))


def test_multi_frame_is_rejected():
    ds = ct_small()
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3
    with pytest.raises(InputError, match="3 frames"):
        read_ct_slice(to_bytes(ds))


def test_huge_rows_columns_rejected_before_decoding():
    ds = ct_small()
    ds.Rows = ds.Columns = 60000  # 3.6 G pixels declared, 32 KiB of data present
    with pytest.raises(InputError, match="60000 x 60000 pixels"):
        read_ct_slice(to_bytes(ds))


def test_pixel_budget_is_configurable():
    with pytest.raises(InputError, match="128 x 128"):
        read_ct_slice(CT_SMALL, max_pixels=100 * 100)


def test_file_over_byte_limit_is_rejected():
    with pytest.raises(InputError, match="larger than 10 KiB"):
        read_ct_slice(CT_SMALL, max_bytes=10 * 1024)


def test_dicomdir_is_rejected():
    with pytest.raises(InputError, match="DICOMDIR"):
        read_ct_slice(DICOMDIR)


def test_deflated_transfer_syntax_is_rejected_before_inflating():
    ds = ct_small()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    with pytest.raises(InputError, match="transfer syntax 'Deflated Explicit VR Little Endian'"):
        read_ct_slice(to_bytes(ds))


def test_jpeg_ls_is_outside_the_allow_list():
    ds = ct_small()
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not a frame \xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(InputError, match="transfer syntax 'JPEG-LS Lossless"):
        read_ct_slice(to_bytes(ds))


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEG2000Lossless])
def test_undecodable_compressed_image_is_rejected(syntax):
    ds = ct_small()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8 not really a compressed frame \xff\xd9"])
    ds["PixelData"].VR = "OB"
    with pytest.raises(InputError, match="Could not decode the compressed image"):
        read_ct_slice(to_bytes(ds))


def test_damaged_header_value_is_an_input_error():
    data = Path(CT_SMALL).read_bytes()
    assert data.count(b"0.661468\\0.661468") == 1
    damaged = data.replace(b"0.661468\\0.661468", b"abcdefgh\\abcdefgh")
    with pytest.raises(InputError, match="Pixel Spacing"):
        read_ct_slice(damaged)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about each damaged value
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    cut=st.integers(min_value=0, max_value=40000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=2000), st.integers(0, 255)), max_size=8),
)
def test_fuzzed_ct_small_raises_only_input_error(cut, flips):
    """Truncations and header byte flips: only InputError may escape the reader."""
    data = bytearray(Path(CT_SMALL).read_bytes()[:cut] if cut else Path(CT_SMALL).read_bytes())
    for position, value in flips:
        if position < len(data):
            data[position] = value
    try:
        ct = read_ct_slice(bytes(data))
    except InputError:
        return
    assert ct.hu.ndim == 2


# --- Zip archives ----------------------------------------------------------------------------


@needs_real_ct
def test_zip_of_real_series_reads_and_skips_clutter():
    entries = {f"study/series/{p.name}": p.read_bytes() for p in reversed(REAL_CT)}
    entries["__MACOSX/study/series/._slice_00.dcm"] = b"\x00\x05\x16\x07 resource fork"
    entries["study/README.txt"] = b"exported from PACS"
    entries["study/nested.zip"] = zip_bytes({"a.dcm": b"x"})
    entries["study/"] = b""
    series = read_zip_series(zip_bytes(entries))
    assert len(series) == 16
    assert [s.position_z_mm for s in series] == sorted(s.position_z_mm for s in series)
    assert series[0].label == "study/series/slice_00.dcm"


def test_zip_skips_dicomdir_and_non_ct_objects():
    series = read_zip_series(
        zip_bytes(
            {
                "DICOMDIR": Path(DICOMDIR).read_bytes(),
                "mr.dcm": Path(MR_SMALL).read_bytes(),
                "ct.dcm": Path(CT_SMALL).read_bytes(),
            }
        )
    )
    assert len(series) == 1


def test_zip_without_ct_is_rejected():
    with pytest.raises(InputError, match=r"no CT slices.*1 MR"):
        read_zip_series(zip_bytes({"mr.dcm": Path(MR_SMALL).read_bytes()}))


def test_not_a_zip_is_rejected():
    with pytest.raises(InputError, match="not a readable zip"):
        read_zip_series(Path(CT_SMALL).read_bytes())


def test_zip_bomb_ratio_is_rejected_before_reading():
    bomb = zip_bytes({"a.dcm": b"\x00" * (20 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(InputError, match="zip bomb"):
        read_zip_series(bomb)


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil.dcm", "C:evil"])
def test_zip_with_climbing_names_is_rejected(name):
    with pytest.raises(InputError, match="unsafe path"):
        read_zip_series(zip_bytes({name: Path(CT_SMALL).read_bytes()}))


def test_zip_with_too_many_entries_is_rejected():
    data = zip_bytes({f"{i}.txt": b"x" for i in range(6)})
    with pytest.raises(InputError, match="6 entries"):
        read_zip_series(data, max_entries=5)


def test_zip_with_large_declared_size_is_rejected():
    data = zip_bytes({"ct.dcm": Path(CT_SMALL).read_bytes()}, zipfile.ZIP_STORED)
    with pytest.raises(InputError, match="unpack to more than 1 KiB"):
        read_zip_series(data, max_total_bytes=1024)


def test_zip_with_bzip2_is_rejected():
    data = zip_bytes({"ct.dcm": Path(CT_SMALL).read_bytes()}, zipfile.ZIP_BZIP2)
    with pytest.raises(InputError, match="compression method"):
        read_zip_series(data)


@needs_real_ct
def test_zip_mixing_series_is_rejected():
    data = zip_bytes({"ct.dcm": Path(CT_SMALL).read_bytes(), "real.dcm": REAL_CT[0].read_bytes()})
    with pytest.raises(InputError, match="different series"):
        read_zip_series(data)


def test_zip_entry_errors_name_the_entry_number():
    ds = ct_small()
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    with pytest.raises(InputError, match=r"Entry 2 of the zip archive: .*2 frames"):
        read_zip_series(zip_bytes({"ok.dcm": Path(CT_SMALL).read_bytes(), "bad.dcm": to_bytes(ds)}))


# --- Writing ---------------------------------------------------------------------------------


def test_round_trip_is_exact_for_integer_hu(tmp_path):
    hu = np.random.default_rng(1).integers(-1024, 3072, size=(64, 48)).astype(np.float64)
    hu[0, :4] = [-1024, 3071, 0, -1]
    path = tmp_path / "slice.dcm"
    write_dataset(phantom_dataset(Phase.ARTERIAL, hu), path)
    ct = read_ct_slice(path)
    np.testing.assert_array_equal(ct.hu, hu)
    assert ct.pixel_spacing_mm == (0.7, 0.7)
    assert ct.slice_thickness_mm == 5.0


def test_written_hu_are_rounded_and_clipped():
    hu = np.array([[-2000.0, -1024.4, 12.6, 5000.0]])
    ct = written_slice(phantom_dataset(Phase.DELAYED, hu))
    np.testing.assert_array_equal(ct.hu, [[-1024, -1024, 13, 3071]])


def test_written_dataset_is_a_standard_ct_image():
    ds = phantom_dataset(Phase.ARTERIAL, position_z_mm=-12.5, instance_number=7)
    reread = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    assert reread.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert reread.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert reread.file_meta.MediaStorageSOPClassUID == reread.SOPClassUID
    assert reread.file_meta.MediaStorageSOPInstanceUID == reread.SOPInstanceUID
    for uid in (reread.SOPInstanceUID, reread.StudyInstanceUID, reread.SeriesInstanceUID):
        assert UID(uid).is_valid
    assert reread.Modality == "CT"
    assert list(reread.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (reread.RescaleSlope, reread.RescaleIntercept, reread.RescaleType) == (1, -1024, "HU")
    assert (reread.BitsAllocated, reread.BitsStored, reread.HighBit) == (16, 12, 11)
    assert reread.PixelRepresentation == 0
    assert [float(v) for v in reread.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(reread.ImagePositionPatient[2]) == -12.5
    assert reread.InstanceNumber == 7
    assert reread.KVP == 120
    assert reread.PatientName == "PHANTOM^case-0001"
    assert reread.PatientIdentityRemoved == "YES"
    assert reread.DeidentificationMethod == "synthetic phantom"


def test_contrast_tags_and_times_follow_the_phase():
    # Injection at 10:00:00; arterial at +35 s and delayed at +180 s (PHASE_DELAY_S).
    assert (PHASE_DELAY_S[Phase.ARTERIAL], PHASE_DELAY_S[Phase.DELAYED]) == (35.0, 180.0)
    unenhanced, arterial, delayed = (phantom_dataset(p) for p in Phase)
    assert "ContrastBolusAgent" not in unenhanced
    assert "ContrastBolusStartTime" not in unenhanced
    assert arterial.ContrastBolusAgent == delayed.ContrastBolusAgent == "Iopamidol 370 mgI/mL"
    assert arterial.ContrastBolusStartTime == "100000.000000"
    assert arterial.AcquisitionTime == "100035.000000"
    assert delayed.AcquisitionTime == "100300.000000"
    assert unenhanced.AcquisitionTime == "095500.000000"  # 5 min before the injection
    assert unenhanced.SeriesDescription == "Liver unenhanced 5 mm"
    assert arterial.SeriesDescription == "Liver late arterial"
    assert delayed.SeriesDescription == "Liver delayed 180 s"


def test_same_case_gives_same_uids():
    first, second = phantom_dataset(Phase.DELAYED), phantom_dataset(Phase.DELAYED)
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    other = phantom_dataset(Phase.DELAYED, instance_number=2)
    assert other.SOPInstanceUID != first.SOPInstanceUID
    assert derive_uid("case-0001", "study") != derive_uid("case-0002", "study")


def test_written_slices_read_back_with_time_and_contrast():
    ct = written_slice(phantom_dataset(Phase.ARTERIAL))
    assert ct.acquisition_time_s == 10 * 3600 + 35
    assert ct.contrast_start_time_s == 10 * 3600
    assert ct.contrast_agent == "Iopamidol 370 mgI/mL"
    assert ct.metadata()["series_description"] == "Liver late arterial"


def test_bad_writer_arguments_are_programming_errors():
    with pytest.raises(ValueError, match="YYYYMMDD"):
        phantom_dataset(Phase.ARTERIAL, study_date="2024-01-02")
    with pytest.raises(ValueError, match="NaN"):
        phantom_dataset(Phase.ARTERIAL, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="one day"):
        phantom_dataset(Phase.ARTERIAL, injection_time_s=86390.0)


# --- Phases ----------------------------------------------------------------------------------


def slice_with(description: str = "", agent: str | None = None, time_s: float | None = None):
    return CTSlice(
        hu=np.zeros((2, 2), np.float32),
        pixel_spacing_mm=(1.0, 1.0),
        slice_thickness_mm=5.0,
        position_z_mm=0.0,
        instance_number=1,
        acquisition_time_s=time_s,
        series_uid="1.2.3",
        series_description=description,
        contrast_agent=agent,
        manufacturer="",
        kvp=120.0,
    )


@pytest.mark.parametrize(
    ("description", "agent", "expected"),
    [
        ("Liver late arterial", "Iopamidol", Phase.ARTERIAL),
        ("HEPATIC ARTERIAL 1.25mm", "Iopamidol", Phase.ARTERIAL),
        ("ART 5mm", "Iopamidol", Phase.ARTERIAL),
        ("Abdomen AP", "Iopamidol", Phase.ARTERIAL),
        ("Liver delayed 180 s", "Iopamidol", Phase.DELAYED),
        ("Equilibrium", "Iopamidol", Phase.DELAYED),
        ("Late 5mm", "Iopamidol", Phase.DELAYED),
        ("Venous 180s", "Iopamidol", Phase.DELAYED),
        ("Liver unenhanced 5 mm", None, Phase.UNENHANCED),
        ("Non-contrast abdomen", None, Phase.UNENHANCED),
        ("PLAIN", None, Phase.UNENHANCED),
        ("NC 5mm", "Iopamidol", Phase.UNENHANCED),  # the description outranks a study-wide agent
        ("Pre", None, Phase.UNENHANCED),
        ("Abdomen 5mm", None, Phase.UNENHANCED),  # no agent, nothing else says otherwise
        ("Abdomen 5mm", "Omnipaque", None),
        ("Portal venous", None, None),
        ("Abdomen C+", None, None),
        ("LIVER 3 PHASE", None, None),
        ("NC/ART/DEL", None, None),  # names all three: ambiguous
    ],
)
def test_phase_hint(description, agent, expected):
    assert phase_hint(slice_with(description, agent)) is expected


def test_phase_hints_of_written_slices():
    for phase in Phase:
        assert phase_hint(written_slice(phantom_dataset(phase))) is phase


def test_assign_phases_orders_by_acquisition_time():
    slices = [written_slice(phantom_dataset(p)) for p in (Phase.DELAYED, Phase.UNENHANCED, Phase.ARTERIAL)]
    assert assign_phases(slices) == {Phase.UNENHANCED: 1, Phase.ARTERIAL: 2, Phase.DELAYED: 0}


def test_assign_phases_time_outranks_descriptions():
    slices = [
        slice_with("Liver delayed", "X", time_s=100.0),
        slice_with("Liver arterial", "X", time_s=400.0),
        slice_with("Liver unenhanced", None, time_s=600.0),
    ]
    assert assign_phases(slices) == {Phase.UNENHANCED: 0, Phase.ARTERIAL: 1, Phase.DELAYED: 2}


def test_assign_phases_uses_hints_without_times():
    slices = [
        slice_with("Liver arterial", "X"),
        slice_with("Liver delayed", "X"),
        slice_with("Liver plain", None),
    ]
    assert assign_phases(slices) == {Phase.UNENHANCED: 2, Phase.ARTERIAL: 0, Phase.DELAYED: 1}


def test_assign_phases_combines_partial_times_and_hints():
    # Only two times: the unenhanced hint places slice 1, time orders the other two.
    slices = [
        slice_with("Abdomen", "X", time_s=500.0),
        slice_with("Unenhanced", None),
        slice_with("Abdomen", "X", time_s=300.0),
    ]
    assert assign_phases(slices) == {Phase.UNENHANCED: 1, Phase.ARTERIAL: 2, Phase.DELAYED: 0}


def test_assign_phases_falls_back_to_upload_order():
    slices = [slice_with("Abdomen", "X") for _ in range(3)]
    assert assign_phases(slices) == {Phase.UNENHANCED: 0, Phase.ARTERIAL: 1, Phase.DELAYED: 2}


def test_assign_phases_needs_three_slices():
    with pytest.raises(InputError, match="Three slices"):
        assign_phases([slice_with()] * 2)
