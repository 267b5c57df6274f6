"""Turn what a user gives the app into one review case: three phases of one lesion.

Uploads arrive as (name, bytes) pairs and stay in memory: nothing here writes to disk or logs
their content. Names are labels for the user's own screen only; they never reach a report.
Every problem a user can cause raises :class:`~livercore.errors.InputError` with a sentence
to show as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from livercore import dicom_io
from livercore.errors import InputError
from livercore.file_kind import sniff
from livercore.phases import header_warnings, hint_text
from livercore.preprocess import LesionBox, lesion_crop_uint8, preprocess_case
from livercore.review_case import ReviewCase, make_case
from livercore.vocab import PHASES, Phase

Upload = tuple[str, bytes]  # (the file's name, its bytes)

SOURCES = {
    "library": "Example case",
    "dicom": "Three DICOM slices",
    "series": "A DICOM series per phase",
    "capture": "Three screen captures (PNG/JPEG)",
}


_WRONG_KIND = {
    "zip": "a zip archive; choose 'A DICOM series per phase' to read a zipped series",
    "png": "a PNG image; choose 'Three screen captures' for PNG/JPEG files",
    "jpeg": "a JPEG image; choose 'Three screen captures' for PNG/JPEG files",
    "empty": "empty",
}


def read_dicom_slices(files: Sequence[Upload]) -> list[dicom_io.CTSlice]:
    """Three single-slice CT files (any name or extension: the content decides)."""
    if len(files) != len(PHASES):
        raise InputError(f"Upload exactly three DICOM files, one per phase; {len(files)} were given.")
    slices = []
    for number, (name, data) in enumerate(files, start=1):
        kind = sniff(data)
        if kind in _WRONG_KIND:
            raise InputError(f"File {number} is {_WRONG_KIND[kind]}.")
        try:
            slices.append(dicom_io.read_ct_slice(data, label=name))
        except InputError as err:
            raise InputError(f"File {number}: {err}") from err
    return slices


def read_series_upload(files: Sequence[Upload]) -> list[dicom_io.CTSlice]:
    """One phase's series: several single-slice DICOM files, or one zip of them; sorted along z."""
    if not files:
        raise InputError("No files were given for this phase.")
    kinds = [sniff(data) for _, data in files]
    if "zip" in kinds:
        if len(files) > 1:
            raise InputError("Upload either one zip archive or the DICOM files of the series, not both.")
        return dicom_io.read_zip_series(files[0][1])
    for number, kind in enumerate(kinds, start=1):
        if kind in _WRONG_KIND and kind != "zip":
            raise InputError(f"File {number} of {len(files)} is {_WRONG_KIND[kind]}.")
    return dicom_io.read_series([data for _, data in files], labels=[name for name, _ in files])


def case_from_slices(slices: Mapping[Phase, dicom_io.CTSlice], *, source: str, title: str) -> ReviewCase:
    """A review case from one CT slice per phase (HU)."""
    missing = [p.value for p in PHASES if p not in slices]
    if missing:
        raise InputError(f"A slice is missing for: {', '.join(missing)}.")
    return make_case(
        source=source,
        title=title,
        images={p: slices[p].hu for p in PHASES},
        spacing_mm={p: float(np.mean(slices[p].pixel_spacing_mm)) for p in PHASES},
        is_hu=True,
        metadata={p: slices[p].metadata() | {"phase_hint": hint_text(slices[p])} for p in PHASES},
        warnings=tuple(header_warnings(slices)),
    )


def case_from_captures(images: Mapping[Phase, np.ndarray], *, pixel_mm: float | None) -> ReviewCase:
    """A review case from three windowed screen captures (H, W) uint8; pixel_mm if known."""
    missing = [p.value for p in PHASES if p not in images]
    if missing:
        raise InputError(f"A screen capture is missing for: {', '.join(missing)}.")
    return make_case(
        source="capture",
        title="Uploaded screen captures",
        images={p: images[p] for p in PHASES},
        spacing_mm=dict.fromkeys(PHASES, pixel_mm),
        is_hu=False,
        warnings=(
            "Screen captures often carry burned-in names, IDs and dates: check that none is "
            "inside the lesion field, and crop them away before sharing anything.",
        ),
    )


def crops_for(case: ReviewCase, boxes: Mapping[Phase, LesionBox]) -> np.ndarray:
    """(3, 70, 70) uint8: what the network sees, each phase cropped around its own lesion box."""
    if case.is_hu:
        return preprocess_case(case.images, boxes, case.spacing_mm)
    missing = [p.value for p in PHASES if p not in boxes]
    if missing:
        raise InputError(f"Mark the lesion on: {', '.join(missing)}.")
    return np.stack([lesion_crop_uint8(case.images[p], boxes[p], case.spacing_mm[p]) for p in PHASES])


TITLES = {
    "dicom": "Uploaded DICOM slices",
    "series": "Uploaded DICOM series",
    "capture": "Uploaded screen captures",
}


def case_from_pool(
    source: str,
    items: Sequence[dicom_io.CTSlice | np.ndarray],
    assignment: Mapping[Phase, int],
    *,
    pixel_mm: float | None = None,
) -> ReviewCase:
    """A review case from uploaded items (CT slices, or capture images) and which item is which
    phase (assignment[phase] = index into items)."""
    if sorted(assignment.values()) != list(range(len(PHASES))) or len(items) != len(PHASES):
        raise InputError("Each of the three images must be used for exactly one phase.")
    chosen = {p: items[assignment[p]] for p in PHASES}
    if source == "capture":
        return case_from_captures({p: np.asarray(v) for p, v in chosen.items()}, pixel_mm=pixel_mm)
    slices = {p: v for p, v in chosen.items() if isinstance(v, dicom_io.CTSlice)}
    return case_from_slices(slices, source=source, title=TITLES.get(source, "Uploaded case"))
