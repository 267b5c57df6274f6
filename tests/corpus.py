"""A corpus of bad (and a few good) upload files, generated, for the hardening tests.

Every entry is (name, bytes, expected): expected is "ok" or a fragment of the sentence the
user must see. Generated from one phantom slice so the corpus needs no files of its own.
"""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache

import numpy as np
import pydicom
from PIL import Image

from livercore.dicom_io import ct_slice_dataset
from livercore.phantom import generate_case
from livercore.vocab import Phase


@lru_cache(maxsize=1)
def good_dicom() -> bytes:
    case = generate_case("test-2016", 0, 2)
    ds = ct_slice_dataset(
        case.hu[Phase.ARTERIAL],
        phase=Phase.ARTERIAL,
        pixel_spacing_mm=case.spacing_mm,
        slice_thickness_mm=2.5,
        patient_id="PH-CORPUS",
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        study_date="20160101",
        injection_time_s=36000.0,
        manufacturer="GE MEDICAL SYSTEMS",
        series_number=2,
    )
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _modified(**changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(good_dicom()))
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 90).save(buffer, format="PNG")
    return buffer.getvalue()


def corpus() -> list[tuple[str, bytes, str]]:
    good = good_dicom()
    rng = np.random.default_rng(0)
    huge = bytearray(_modified(Rows=60000, Columns=60000))
    return [
        ("good.dcm", good, "ok"),
        ("good-no-extension", good, "ok"),
        ("GOOD.DCM", good, "ok"),
        ("capture.png", _png(600, 640), "ok"),
        ("random.dcm", rng.bytes(4096), "not a DICOM file"),
        ("notes.dcm", b"Patient: DOE^JANE\nthis is text, not an image\n" * 20, "not a DICOM file"),
        ("empty.dcm", b"", "not a DICOM file"),
        ("truncated.dcm", good[: len(good) * 2 // 3], "truncated"),
        ("huge-matrix.dcm", bytes(huge), "pixels"),
        ("mr.dcm", _modified(Modality="MR"), "MR"),
        ("us.dcm", _modified(Modality="US"), "US"),
        ("seg.dcm", _modified(Modality="SEG"), "SEG"),
        ("rtstruct.dcm", _modified(Modality="RTSTRUCT"), "RTSTRUCT"),
        ("sr.dcm", _modified(Modality="SR"), "SR"),
        ("no-pixels.dcm", _modified(PixelData=None), "pixel data"),
        ("multiframe.dcm", _modified(NumberOfFrames=4), "frame"),
        ("image-renamed.dcm", _png(64, 64), "ok"),  # content decides, not the name
        ("text-renamed.png", b"not an image at all" * 10, "not a DICOM file"),
        ("bomb.png", _png(20000, 20000), "far more pixels than a screen capture"),
        ("tiny.png", _png(4, 4), "too small"),
        ("zip-traversal.zip", _zip({"../../etc/evil.dcm": good}), "zip"),
        ("zip-nested.zip", _zip({"inner.zip": _zip({"a.dcm": good})}), "no CT"),
        ("zip-bomb.zip", _zip({"zeros.dcm": b"\0" * 30_000_000}), "compress"),
        ("zip-many.zip", _zip({f"f{i}.txt": b"x" for i in range(2500)}), "entries"),
        ("zip-good.zip", _zip({"a/1.dcm": good, "__MACOSX/._1.dcm": b"junk"}), "ok"),
    ]
