"""Compressed DICOM through the pylibjpeg plugins, behind the transfer-syntax allow-list."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from livercore.dicom_io import read_ct_slice
from livercore.errors import InputError

from .corpus import good_dicom

pydicom_data = pytest.importorskip("pydicom.data")


def _testdata(name: str) -> str:
    path = pydicom_data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} is not in pydicom-data here")
    return str(path)


def test_jpeg2000_abdominal_ct_reads_to_the_same_hu_as_its_uncompressed_twin():
    # pydicom-data 693_J2KR (JPEG 2000 lossless) and 693_UNCR: one abdominal CT slice, 5 mm plain
    compressed = read_ct_slice(_testdata("693_J2KR.dcm"))
    plain = read_ct_slice(_testdata("693_UNCR.dcm"))
    np.testing.assert_array_equal(compressed.hu, plain.hu)
    assert compressed.hu.shape == (512, 512)
    assert -1100 < np.median(compressed.hu) < 200  # air and soft tissue in HU, not raw stored values


def _phantom_dataset() -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(good_dicom()))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_lossless_compressed_phantom_reads_back_exactly(syntax):
    ds = _phantom_dataset()
    expected = ds.pixel_array.astype(np.float32) - 1024
    ds.compress(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    ct = read_ct_slice(buffer.getvalue())
    np.testing.assert_array_equal(ct.hu, expected)


def test_jpeg_lossless_is_decoded():
    # pydicom's JPEG-LL.dcm is a nuclear-medicine image; relabelled CT, it exercises the decoder
    ds = pydicom.dcmread(_testdata("JPEG-LL.dcm"))
    ds.Modality = "CT"
    if "NumberOfFrames" in ds:
        del ds.NumberOfFrames
    buffer = io.BytesIO()
    ds.save_as(buffer)
    ct = read_ct_slice(buffer.getvalue())
    reference = pydicom.dcmread(_testdata("JPEG-LL.dcm")).pixel_array
    assert ct.hu.shape == reference.shape
    assert np.isfinite(ct.hu).all()


def test_a_transfer_syntax_outside_the_allow_list_is_refused():
    with pytest.raises(InputError, match="transfer syntax"):
        read_ct_slice(_testdata("MR_small_jpeg_ls_lossless.dcm"))
