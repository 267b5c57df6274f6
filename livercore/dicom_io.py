"""Read CT slices from DICOM uploads and write synthetic phantom slices as DICOM.

Reading is defensive (docs/hardening.md): uploads are parsed in memory, never with
``force=True``; anything unusable raises :class:`~livercore.errors.InputError` with a sentence a
radiologist understands. Checks run cheapest first: file meta (transfer syntax, DICOMDIR)
before the data set is parsed, header tags (modality, frames, Rows x Columns budget) before the
pixels are decoded.

Writing produces a standard single-slice CT Image Storage object for the phantom, clearly
synthetic and marked de-identified.
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    MediaStorageDirectoryStorage,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from livercore.errors import InputError
from livercore.vocab import PHASE_DELAY_S, Phase

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")

# Per slice: 2048 x 2048 covers every clinical CT matrix (512 and 1024 are usual).
MAX_PIXELS = 2048 * 2048
# Per file: a 2048 x 2048 x 32-bit slice is 16 MiB; the rest is header headroom.
MAX_FILE_BYTES = 64 * 1024 * 1024
# Per series: 1000 slices of 512 x 512 are 1 GiB as float32 HU; a liver series at 0.625 mm
# has about 400.
MAX_SLICES = 1000
# Per zip: declared uncompressed total; 1000 slices of 512 x 512 x 16 bit are 0.5 GiB.
MAX_ZIP_BYTES = 512 * 1024 * 1024
# Per zip entry: DICOM CT compresses about 2-4 x; 200 x only happens for crafted bombs.
MAX_COMPRESSION_RATIO = 200

UNCOMPRESSED_SYNTAXES: frozenset[str] = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}
)
# Compressed syntaxes are accepted only when pydicom has a decoder plugin for them installed.
# Deflated Explicit VR is left out: pydicom inflates the whole data set before any check.
COMPRESSED_SYNTAXES: frozenset[str] = frozenset(
    {JPEGBaseline8Bit, JPEGLossless, JPEGLosslessSV1, JPEG2000Lossless, JPEG2000, RLELossless}
)

# Plain names for modalities users upload by mistake (DICOM PS3.3 C.7.3.1.1.1).
MODALITY_NAMES: dict[str, str] = {
    "MR": "an MR (magnetic resonance) image",
    "US": "an ultrasound image",
    "PT": "a PET image",
    "NM": "a nuclear medicine image",
    "CR": "a radiograph (computed radiography)",
    "DX": "a radiograph (digital radiography)",
    "MG": "a mammogram",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "SEG": "a segmentation object",
    "RTSTRUCT": "a radiotherapy structure set",
    "RTDOSE": "a radiotherapy dose object",
    "RTPLAN": "a radiotherapy plan",
    "SR": "a structured report",
    "PR": "a presentation state",
    "KO": "a key object selection",
    "DOC": "an encapsulated document",
    "OT": "an 'other' (OT) image",
}

# Written slices: 12 stored bits hold round(HU) + 1024 for HU in [-1024, 3071].
HU_OFFSET = 1024
STORED_MAX = 4095
CONTRAST_AGENT = "Iopamidol 370 mgI/mL"
# The unenhanced scan precedes the injection by a few minutes (positioning, planning).
UNENHANCED_LEAD_S = 300.0
SERIES_DESCRIPTIONS: dict[Phase, str] = {
    Phase.UNENHANCED: "Liver unenhanced 5 mm",
    Phase.ARTERIAL: "Liver late arterial",
    Phase.DELAYED: "Liver delayed 180 s",
}


@dataclass(frozen=True, eq=False)
class CTSlice:
    """One axial CT slice in HU with the header values the app needs.

    ``hu`` is read-only. ``notes`` records assumptions made while reading (e.g. a default
    rescale). ``label`` is the caller's name for the source (file or zip entry name); it may
    carry identifiers, so it is never part of :meth:`metadata`.
    """

    hu: np.ndarray  # (H, W) float32 in HU, after the modality LUT
    pixel_spacing_mm: tuple[float, float]  # (row, column) spacing, PixelSpacing (0028,0030)
    slice_thickness_mm: float | None  # SliceThickness (0018,0050)
    position_z_mm: float | None  # ImagePositionPatient[2] (0020,0032), else SliceLocation
    instance_number: int | None  # InstanceNumber (0020,0013)
    # seconds since midnight: AcquisitionTime (0008,0032), else ContentTime, else SeriesTime
    acquisition_time_s: float | None
    series_uid: str  # SeriesInstanceUID (0020,000E), "" when absent
    series_description: str  # SeriesDescription (0008,103E), "" when absent
    contrast_agent: str | None  # ContrastBolusAgent (0018,0010), None when absent or blank
    manufacturer: str  # Manufacturer (0008,0070), "" when absent
    kvp: float | None  # KVP (0018,0060)
    # seconds since midnight: ContrastBolusStartTime (0018,1042)
    contrast_start_time_s: float | None = None
    notes: tuple[str, ...] = ()
    label: str = ""
    # Geometry and grouping, for building volumes (livercore.dicom_study); identifiers stay in
    # memory and out of metadata().
    position_mm: tuple[float, ...] | None = None  # ImagePositionPatient (0020,0032), x y z in mm
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (0020,0037), 6 cosines
    study_uid: str = ""  # StudyInstanceUID (0020,000D), "" when absent

    def metadata(self) -> dict[str, Any]:
        """The allow-listed header values that may be shown; never patient identifiers."""
        return {
            "modality": "CT",
            "manufacturer": self.manufacturer,
            "kvp": self.kvp,
            "slice_thickness_mm": self.slice_thickness_mm,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "series_description": self.series_description,
            "contrast_agent": self.contrast_agent,
            "acquisition_time": _format_clock(self.acquisition_time_s),
        }


# ---------------------------------------------------------------------------------------------
# Reading


def read_ct_slice(
    source: Source,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_FILE_BYTES,
    label: str = "",
) -> CTSlice:
    """Read one single-frame CT slice and convert it to HU.

    Parameters
    ----------
    source
        The file: its bytes, a path, or a binary file object. It is read into memory whole
        (at most ``max_bytes``) and parsed with ``pydicom.dcmread(force=False)``.
    max_pixels
        Largest Rows x Columns (0028,0010/0011) accepted; checked before decoding.
    max_bytes
        Largest file size in bytes.
    label
        A name for the source, kept on the slice as a label only (default: a path's file name).

    Returns
    -------
    CTSlice
        ``hu`` is (Rows, Columns) float32 in HU from pydicom's ``apply_modality_lut``
        (RescaleSlope/RescaleIntercept; absent values default to 1 and 0, recorded in
        ``notes``).

    Raises
    ------
    InputError
        Not DICOM, DICOMDIR, a transfer syntax outside the allow-list or without a decoder,
        not CT, no pixel data, multi-frame, over the pixel budget, truncated or undecodable
        pixel data, or a header pydicom cannot parse.
    """
    if not label and isinstance(source, str | os.PathLike):
        label = os.path.basename(os.fspath(source))
    return _slice_from_dataset(_read_dataset(_read_bytes(source, max_bytes)), max_pixels, label)


def read_series(
    sources: Sequence[Source],
    *,
    max_pixels: int = MAX_PIXELS,
    max_slices: int = MAX_SLICES,
    labels: Sequence[str] | None = None,
) -> list[CTSlice]:
    """Read several files of one CT series, sorted along z.

    Slices are sorted by ``position_z_mm`` (ascending, mm; slices without a position last),
    then by ``instance_number``.

    Raises
    ------
    InputError
        No files, more than ``max_slices``, any unreadable file (named by its position in the
        upload, never by header content), or files that mix series (SeriesInstanceUID),
        matrix sizes or pixel spacings.
    """
    if not sources:
        raise InputError("No DICOM files were given; upload the slices of one CT series.")
    if len(sources) > max_slices:
        raise InputError(
            f"{len(sources)} files were given; at most {max_slices} slices of one series can be read at once."
        )
    names = list(labels) if labels is not None else [""] * len(sources)
    slices = []
    for i, (source, name) in enumerate(zip(sources, names, strict=True), start=1):
        try:
            slices.append(read_ct_slice(source, max_pixels=max_pixels, label=name))
        except InputError as err:
            raise InputError(f"File {i} of {len(sources)}: {err}") from err
    return _sorted_series(slices)


def read_zip_series(data: bytes, **limits: int) -> list[CTSlice]:
    """Read one CT series from a zip archive held in memory: :func:`read_zip_slices` (with its
    `limits`), checked to be one series and sorted as by :func:`read_series`."""
    return _sorted_series(read_zip_slices(data, **limits))


def read_zip_slices(
    data: bytes,
    *,
    max_entries: int = 2000,
    max_total_bytes: int = MAX_ZIP_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_slices: int = MAX_SLICES,
) -> list[CTSlice]:
    """Read every CT slice of a zip archive held in memory, in archive order.

    Nothing is extracted to disk and entry names are only kept as ``CTSlice.label``. Limits
    come from the central directory and are checked before any entry is decompressed: the
    number of entries, the declared uncompressed total (bytes), each entry's compression ratio
    (over 200 is a zip bomb), the compression method (stored or deflate), encryption, and
    names that climb out of the archive (``..`` or absolute paths). Directories, ``__MACOSX``
    resource forks, nested archives, files that are not DICOM, DICOMDIR indexes and non-CT
    objects (dose reports, presentation states) are skipped.

    Raises
    ------
    InputError
        Not a zip, a limit exceeded, a damaged entry, or no CT slice inside.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise InputError("This file is not a readable zip archive.") from err
    with archive:
        infos = archive.infolist()
        _check_zip_directory(infos, max_entries, max_total_bytes)
        slices: list[CTSlice] = []
        skipped: dict[str, int] = {}
        for number, info in enumerate(infos, start=1):
            if _skip_zip_entry(info.filename) or info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    blob = member.read(info.file_size + 1)
            except Exception as err:  # zlib/bz2/lzma/CRC errors differ by method
                raise InputError(f"Entry {number} of the zip archive is damaged.") from err
            if len(blob) != info.file_size:
                raise InputError(f"Entry {number} of the zip archive is larger than its declared size.")
            if not _has_dicom_marker(blob):
                continue
            try:
                sop_class, _ = _read_file_meta(blob)
                if sop_class == MediaStorageDirectoryStorage:
                    continue
                ds = _read_dataset(blob)
                modality = str(ds.get("Modality", "") or "").strip().upper()
                if modality != "CT":
                    kind = modality or "without modality"
                    skipped[kind] = skipped.get(kind, 0) + 1
                    continue
                slices.append(_slice_from_dataset(ds, max_pixels, info.filename))
            except InputError as err:
                raise InputError(f"Entry {number} of the zip archive: {err}") from err
            if len(slices) > max_slices:
                raise InputError(
                    f"The zip archive holds more than {max_slices} CT slices; upload one series."
                )
    if not slices:
        found = ", ".join(f"{n} {m}" for m, n in sorted(skipped.items())) or "none"
        raise InputError(f"The zip archive contains no CT slices (other DICOM objects found: {found}).")
    return slices


def _read_bytes(source: Source, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        try:
            if os.path.getsize(source) > max_bytes:
                raise InputError(_too_large(max_bytes))
            with open(source, "rb") as fp:
                data = fp.read(max_bytes + 1)
        except OSError as err:
            raise InputError("The file could not be opened.") from err
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(_too_large(max_bytes))
    return data


def _too_large(max_bytes: int) -> str:
    return f"The file is larger than {_size(max_bytes)}, too large for one CT slice."


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:g} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:g} KiB"


def _has_dicom_marker(data: bytes) -> bool:
    """DICOM Part 10 files carry a 128-byte preamble and the marker ``DICM``."""
    return data[128:132] == b"DICM"


def _read_dataset(data: bytes) -> Dataset:
    """Parse a Part 10 file in memory after vetting its file meta (transfer syntax, DICOMDIR)."""
    not_dicom = (
        "This file is not a DICOM file (no 'DICM' marker after the 128-byte preamble); "
        "upload CT images exported as DICOM."
    )
    if not _has_dicom_marker(data):
        raise InputError(not_dicom)
    sop_class, syntax = _read_file_meta(data)
    if sop_class == MediaStorageDirectoryStorage:
        raise InputError(
            "This file is a DICOMDIR (the index of a DICOM disc), not an image; upload the "
            "image files it lists instead."
        )
    if not syntax:
        raise InputError("This DICOM file does not state its transfer syntax (0002,0010).")
    if syntax not in UNCOMPRESSED_SYNTAXES and syntax not in COMPRESSED_SYNTAXES:
        raise InputError(
            f"This DICOM file uses the transfer syntax '{syntax.name}', which this app does "
            "not read; export the images uncompressed (Explicit VR Little Endian)."
        )
    try:
        return pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError as err:
        raise InputError(not_dicom) from err
    except Exception as err:  # pydicom raises many types on damaged headers
        raise InputError("This DICOM file is damaged: its header could not be read.") from err


def _read_file_meta(data: bytes) -> tuple[UID, UID]:
    """(MediaStorageSOPClassUID, TransferSyntaxUID) from file meta group 0002 only.

    Group 0002 is always Explicit VR Little Endian (DICOM PS3.10 7.1); either UID is "" when
    absent.
    """
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = read_dataset(
            fp,
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=lambda tag, vr, length: tag >> 16 != 2,
        )
        # Elements are parsed lazily: read the values here, where a damaged one is caught.
        return (
            UID(str(meta.get("MediaStorageSOPClassUID") or "")),
            UID(str(meta.get("TransferSyntaxUID") or "")),
        )
    except Exception as err:
        raise InputError("This DICOM file is damaged: its file meta information could not be read.") from err


def _slice_from_dataset(ds: Dataset, max_pixels: int, label: str) -> CTSlice:
    try:
        return _checked_slice(ds, max_pixels, label)
    except InputError:
        raise
    except Exception as err:  # lazily parsed elements raise when first accessed
        raise InputError("This DICOM file is damaged: a header value could not be read.") from err


def _checked_slice(ds: Dataset, max_pixels: int, label: str) -> CTSlice:
    if "DirectoryRecordSequence" in ds:
        raise InputError("This file is a DICOMDIR (the index of a DICOM disc), not an image.")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not modality:
        raise InputError("This DICOM file has no Modality (0008,0060); it cannot be taken as CT.")
    if modality != "CT":
        what = MODALITY_NAMES.get(modality, f"a {modality} object")
        raise InputError(f"This DICOM file is {what} (modality {modality}), not a CT image.")
    if "PixelData" not in ds:
        raise InputError("This CT file contains no image (no Pixel Data element, 7FE0,0010).")
    frames = _int(ds, "NumberOfFrames") or 1
    if frames > 1:
        raise InputError(
            f"This CT file holds {frames} frames (a multi-frame or enhanced CT object); "
            "upload single-slice CT images, one slice per file."
        )
    rows, columns = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    if rows <= 0 or columns <= 0:
        raise InputError("This CT file has no valid image size (Rows, Columns).")
    if rows * columns > max_pixels:
        raise InputError(
            f"This CT image is {rows} x {columns} pixels, over the limit of {max_pixels} pixels per slice."
        )
    if (_int(ds, "SamplesPerPixel") or 1) != 1:
        raise InputError("This CT file holds a colour image; CT slices are greyscale.")
    bits = _int(ds, "BitsAllocated")
    if bits not in (8, 16, 32):
        raise InputError(f"This CT file has an unsupported pixel size (Bits Allocated {bits}).")
    spacing = _pixel_spacing(ds)

    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if syntax in UNCOMPRESSED_SYNTAXES:
        expected = rows * columns * bits // 8
        if len(ds.PixelData) < expected:
            raise InputError(
                "This CT file is truncated: it holds "
                f"{len(ds.PixelData)} bytes of pixel data, {expected} are needed."
            )
    elif not get_decoder(syntax).is_available:
        raise InputError(
            f"Could not decode the compressed image ({syntax.name}): no decoder for it is "
            "installed; export the images uncompressed."
        )
    try:
        stored = ds.pixel_array
    except Exception as err:  # decoders raise ValueError, RuntimeError, OSError, ...
        raise InputError(
            f"Could not decode the compressed image ({syntax.name}); the pixel data may be "
            "truncated or damaged."
            if syntax in COMPRESSED_SYNTAXES
            else "Could not decode the pixel data; the file may be truncated or damaged."
        ) from err
    if stored.shape != (rows, columns):
        raise InputError(f"The decoded image is {stored.shape}, not the {rows} x {columns} in its header.")

    notes = []
    if "ModalityLUTSequence" not in ds:
        invalid = [
            k for k in ("RescaleSlope", "RescaleIntercept") if _present(ds, k) and _float(ds, k) is None
        ]
        if invalid:
            values = ", ".join(f"{k} {str(ds.get(k)).strip()[:20]!r}" for k in invalid)
            raise InputError(
                f"This CT file's {' and '.join(invalid)} is not a finite number ({values}), so its "
                "pixel values cannot be converted to HU."
            )
        missing = [k for k in ("RescaleSlope", "RescaleIntercept") if _float(ds, k) is None]
        if missing:
            # apply_modality_lut only rescales when both tags are present.
            ds.RescaleSlope = _float(ds, "RescaleSlope") or 1.0
            ds.RescaleIntercept = _float(ds, "RescaleIntercept") or 0.0
            notes.append(
                f"{' and '.join(missing)} missing; assumed slope 1 and intercept 0 "
                "(stored values taken as HU)."
            )
        if ds.RescaleSlope == 0:
            raise InputError("This CT file has a RescaleSlope of 0, so it holds no HU values.")
    hu = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    hu.setflags(write=False)

    return CTSlice(
        hu=hu,
        pixel_spacing_mm=spacing,
        slice_thickness_mm=_float(ds, "SliceThickness"),
        position_z_mm=_position_z(ds),
        instance_number=_int(ds, "InstanceNumber"),
        acquisition_time_s=_first_time(ds, ("AcquisitionTime", "ContentTime", "SeriesTime")),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_description=_text(ds, "SeriesDescription"),
        contrast_agent=_text(ds, "ContrastBolusAgent") or None,
        manufacturer=_text(ds, "Manufacturer"),
        kvp=_float(ds, "KVP"),
        contrast_start_time_s=_first_time(ds, ("ContrastBolusStartTime",)),
        notes=tuple(notes),
        label=label,
        position_mm=_floats(ds, "ImagePositionPatient", 3),
        orientation=_floats(ds, "ImageOrientationPatient", 6),
        study_uid=_text(ds, "StudyInstanceUID"),
    )


def _sorted_series(slices: list[CTSlice]) -> list[CTSlice]:
    uids = {s.series_uid for s in slices}
    if len(uids) > 1:
        raise InputError(
            f"The files belong to {len(uids)} different series (SeriesInstanceUID); upload "
            "one series at a time."
        )
    shapes = {s.hu.shape for s in slices}
    if len(shapes) > 1:
        sizes = ", ".join(f"{h} x {w}" for h, w in sorted(shapes))
        raise InputError(f"The slices differ in image size ({sizes}); upload one series.")
    spacings = {tuple(round(v, 4) for v in s.pixel_spacing_mm) for s in slices}
    if len(spacings) > 1:
        raise InputError("The slices differ in pixel spacing; upload one series.")
    return sorted(
        slices,
        key=lambda s: (
            s.position_z_mm is None,
            s.position_z_mm or 0.0,
            s.instance_number is None,
            s.instance_number or 0,
        ),
    )


def _check_zip_directory(infos: list[zipfile.ZipInfo], max_entries: int, max_total_bytes: int) -> None:
    if len(infos) > max_entries:
        raise InputError(f"The zip archive has {len(infos)} entries, more than the {max_entries} allowed.")
    if sum(i.file_size for i in infos) > max_total_bytes:
        raise InputError(f"The zip archive would unpack to more than {_size(max_total_bytes)}.")
    for number, info in enumerate(infos, start=1):
        name = info.filename.replace("\\", "/")
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
            raise InputError(
                f"Entry {number} of the zip archive has an unsafe path (absolute or with '..'); "
                "the archive was not read."
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # bzip2 and LZMA streams are inflated without an output bound, chunk by chunk.
            raise InputError(
                "The zip archive uses a compression method other than the standard deflate; "
                "re-create it with a standard zip tool."
            )
        if info.flag_bits & 0x1:
            raise InputError("The zip archive is password-protected; upload it unencrypted.")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise InputError(
                f"Entry {number} of the zip archive is compressed more than "
                f"{MAX_COMPRESSION_RATIO} to 1 (a possible zip bomb); the archive was not read."
            )


_ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst")


def _skip_zip_entry(name: str) -> bool:
    """Skip macOS resource forks, Finder files and nested archives (never opened)."""
    parts = name.replace("\\", "/").split("/")
    base = parts[-1].lower()
    return (
        "__MACOSX" in parts
        or base.startswith("._")
        or base == ".ds_store"
        or base.endswith(_ARCHIVE_SUFFIXES)
    )


# Header values: lenient parsing, because optional tags are often blank or malformed.


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _present(ds: Dataset, keyword: str) -> bool:
    """Whether the header holds a non-empty value for `keyword`."""
    value = ds.get(keyword)
    return value is not None and str(value).strip() != ""


def _float(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(ds: Dataset, keyword: str) -> int | None:
    number = _float(ds, keyword)
    return None if number is None else int(number)


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    value = ds.get("PixelSpacing")
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        row = col = math.nan
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        raise InputError(
            "This CT file has no valid Pixel Spacing (0028,0030); the pixel size in mm is needed."
        )
    return row, col


def _floats(ds: Dataset, keyword: str, n: int) -> tuple[float, ...] | None:
    """A multi-valued number tag of exactly n finite values, else None."""
    value = ds.get(keyword)
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n and all(math.isfinite(v) for v in numbers) else None


def _position_z(ds: Dataset) -> float | None:
    position = ds.get("ImagePositionPatient")
    try:
        z = float(position[2])
        if math.isfinite(z):
            return z
    except (TypeError, ValueError, IndexError):
        pass
    return _float(ds, "SliceLocation")


_CLOCK = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


def _seconds_since_midnight(value: object) -> float | None:
    """DICOM TM ``HHMMSS.FFFFFF`` (or ACR-NEMA ``HH:MM:SS``) as seconds; None if unparseable."""
    match = _CLOCK.match(str(value).strip().replace(":", ""))
    if not match:
        return None
    hours, minutes, seconds = (int(g or 0) for g in match.groups()[:3])
    if hours > 23 or minutes > 59 or seconds > 60:  # 60: a leap second
        return None
    fraction = float(match.group(4) or 0.0)
    return hours * 3600 + minutes * 60 + seconds + fraction


def _first_time(ds: Dataset, keywords: Sequence[str]) -> float | None:
    for keyword in keywords:
        value = ds.get(keyword)
        if value:
            seconds = _seconds_since_midnight(value)
            if seconds is not None:
                return seconds
    return None


def _format_clock(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Writing


def derive_uid(*parts: str) -> str:
    """A valid DICOM UID derived deterministically from ``parts`` (pydicom's generate_uid).

    The same case and role (e.g. ``derive_uid("case-0007", "study")``) always give the same UID.
    """
    return str(generate_uid(entropy_srcs=list(parts)))


def ct_slice_dataset(
    hu: np.ndarray,
    *,
    phase: Phase,
    pixel_spacing_mm: float,
    slice_thickness_mm: float,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    study_date: str,
    injection_time_s: float,
    manufacturer: str,
    series_number: int,
    patient_name: str | None = None,
    position_z_mm: float = 0.0,
    instance_number: int = 1,
    sop_instance_uid: str | None = None,
    kvp: float = 120.0,
    series_description: str | None = None,
    spacing_between_slices_mm: float | None = None,
) -> Dataset:
    """Build a single-slice CT Image Storage data set (SOP class 1.2.840.10008.5.1.4.1.1.2).

    Parameters
    ----------
    hu
        (H, W) array in HU. Stored as uint16 with 12 bits stored: round(HU) + 1024 clipped to
        [0, 4095], so HU outside [-1024, 3071] are clipped; RescaleSlope 1, RescaleIntercept
        -1024, RescaleType HU. Integer HU inside the range read back exactly.
    phase
        Sets SeriesDescription, the display window, AcquisitionTime and the contrast tags.
    pixel_spacing_mm, slice_thickness_mm
        PixelSpacing (square pixels) and SliceThickness in mm.
    patient_id, patient_name
        Synthetic identifiers; the name defaults to ``PHANTOM^<patient_id>``.
    study_uid, series_uid
        Study/SeriesInstanceUID; see :func:`derive_uid` for reproducible ones.
    study_date
        StudyDate, also Series/Acquisition/ContentDate, ``YYYYMMDD``.
    injection_time_s
        Contrast injection start in seconds since midnight (ContrastBolusStartTime).
        AcquisitionTime = injection + ``PHASE_DELAY_S[phase]``; the unenhanced scan is taken
        ``UNENHANCED_LEAD_S`` (300 s) before the injection. The day must not wrap.
    manufacturer, kvp
        Manufacturer (0008,0070) and KVP (0018,0060).
    series_number, instance_number, position_z_mm
        SeriesNumber, InstanceNumber and ImagePositionPatient z (mm); the image is centred on
        x = y = 0 with ImageOrientationPatient 1\\0\\0\\0\\1\\0 (axial, head first supine).
    sop_instance_uid
        Defaults to a UID derived from ``series_uid`` and ``instance_number``, so the same case
        always gives the same file.
    series_description
        SeriesDescription; None gives the phase's default (``SERIES_DESCRIPTIONS``), "" a
        blank one (a series whose description names no phase).
    spacing_between_slices_mm
        SpacingBetweenSlices (0018,0088) for a slice of a contiguous series; absent when None.

    Returns
    -------
    pydicom.Dataset
        With file meta (Explicit VR Little Endian); save with :func:`write_dataset`.
        ContrastBolusAgent is "Iopamidol 370 mgI/mL" on arterial and delayed slices and absent
        on unenhanced ones. PatientIdentityRemoved is YES.
    """
    hu = np.asarray(hu)
    if hu.ndim != 2 or hu.size == 0:
        raise ValueError(f"hu must be a non-empty (H, W) array, got shape {hu.shape}")
    if not np.all(np.isfinite(hu)):
        raise ValueError("hu contains NaN or infinite values")
    if not re.fullmatch(r"\d{8}", study_date):
        raise ValueError(f"study_date must be YYYYMMDD, got {study_date!r}")
    acquisition_s = injection_time_s + (
        -UNENHANCED_LEAD_S if phase is Phase.UNENHANCED else PHASE_DELAY_S[phase]
    )
    study_start_s = injection_time_s - UNENHANCED_LEAD_S
    if study_start_s < 0 or injection_time_s + max(PHASE_DELAY_S.values()) >= 86400:
        raise ValueError("injection_time_s must leave the whole protocol within one day")

    stored = (np.clip(np.rint(hu), -HU_OFFSET, STORED_MAX - HU_OFFSET) + HU_OFFSET).astype("<u2")
    rows, columns = stored.shape
    sop_uid: str = sop_instance_uid or derive_uid(series_uid, str(instance_number), "sop")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    # SOP Common, Patient, General Study
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name or f"PHANTOM^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = _tm(study_start_s)
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    # General Series, Frame of Reference, General Equipment
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = SERIES_DESCRIPTIONS[phase] if series_description is None else series_description
    ds.SeriesDate = study_date
    ds.SeriesTime = _tm(acquisition_s)
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "ABDOMEN"
    ds.FrameOfReferenceUID = derive_uid(study_uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = manufacturer
    # General Image, Image Plane, Contrast/Bolus, CT Image
    ds.InstanceNumber = instance_number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = study_date
    ds.AcquisitionTime = _tm(acquisition_s)
    ds.ContentDate = study_date
    ds.ContentTime = _tm(acquisition_s)
    ds.PixelSpacing = [_ds(pixel_spacing_mm), _ds(pixel_spacing_mm)]
    ds.SliceThickness = _ds(slice_thickness_mm)
    if spacing_between_slices_mm is not None:
        ds.SpacingBetweenSlices = _ds(spacing_between_slices_mm)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [
        _ds(-(columns - 1) / 2 * pixel_spacing_mm),
        _ds(-(rows - 1) / 2 * pixel_spacing_mm),
        _ds(position_z_mm),
    ]
    ds.SliceLocation = _ds(position_z_mm)
    if phase is not Phase.UNENHANCED:
        ds.ContrastBolusAgent = CONTRAST_AGENT
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusStartTime = _tm(injection_time_s)
    ds.KVP = _ds(kvp)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -HU_OFFSET
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = _ds(phase.window.level)
    ds.WindowWidth = _ds(phase.window.width)
    ds.PixelData = stored.tobytes()
    return ds


def write_dataset(ds: Dataset, path: str | os.PathLike[str] | BinaryIO) -> None:
    """Write ``ds`` as a DICOM Part 10 file (preamble, DICM, file meta) to a path or buffer."""
    ds.save_as(path, enforce_file_format=True)


def _tm(seconds: float) -> str:
    """Seconds since midnight as DICOM TM ``HHMMSS.FFFFFF``."""
    whole, micro = divmod(round(seconds * 1e6), 1_000_000)
    return f"{whole // 3600:02d}{whole % 3600 // 60:02d}{whole % 60:02d}.{micro:06d}"


def _ds(value: float) -> str:
    """A DS (decimal string) value: at most 16 characters, as precise as they allow."""
    return format_number_as_ds(float(value))
