"""Check uploads before use: what each file is, or a plain sentence saying why it is unusable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from livercore.errors import InputError

MAX_FILE_BYTES = 256 * 2**20  # a zipped series may be large; single slices are far smaller
log = logging.getLogger(__name__)


def describe_bytes(data: bytes) -> str:
    """What the bytes are ("CT slice 512 x 512, ..."); InputError with a sentence if unusable."""
    from livercore import dicom_io
    from livercore.captures import read_capture
    from livercore.file_kind import sniff
    from livercore.phases import phase_hint

    kind = sniff(data)
    if kind == "zip":
        series = dicom_io.read_zip_series(data)
        first = series[0]
        return (
            f"zip archive of a CT series: {len(series)} slices of {first.hu.shape[1]} x {first.hu.shape[0]}"
        )
    if kind in ("png", "jpeg"):
        image = read_capture(data)
        return (
            f"{kind.upper()} screen capture, {image.shape[1]} x {image.shape[0]} pixels "
            "(check it for burned-in patient names)"
        )
    ct = dicom_io.read_ct_slice(data)
    hint = phase_hint(ct)
    spacing = ct.pixel_spacing_mm[0]
    thickness = f", {ct.slice_thickness_mm:g} mm slice" if ct.slice_thickness_mm else ""
    phase = f", looks {hint.value}" if hint else ""
    return f"CT slice {ct.hu.shape[1]} x {ct.hu.shape[0]}, {spacing:.2f} mm pixels{thickness}{phase}"


def validate_file(path: str | os.PathLike[str]) -> tuple[bool, str]:
    """(ok, what it is or why not). Never raises for a bad file."""
    p = Path(path)
    try:
        if not p.is_file():
            raise InputError("There is no such file.")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise InputError("The file is larger than 256 MiB, far more than one case needs.")
        return True, describe_bytes(p.read_bytes())
    except InputError as err:
        return False, str(err)
    except Exception:  # a reader bug must not become a traceback on a user's terminal
        log.exception("unexpected error while validating a file")
        return False, "The file could not be read (an unexpected error; details are in the log)."
