"""Turn what a user gives the app into one review case: three phases of one lesion.

Uploads arrive as (name, bytes) pairs and stay in memory: nothing here writes to disk or logs
their content. Names are labels for the user's own screen only; they never reach a report.
Every problem a user can cause raises :class:`~livercore.errors.InputError` with a sentence
to show as it is.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from livercore import dicom_io
from livercore.app.measure import PhaseCheck, Point, check_phases_by_aorta, disc_stats, locate_aorta
from livercore.errors import InputError
from livercore.preprocess import LesionBox, lesion_crop_uint8, preprocess_case
from livercore.vocab import PHASES, Category, Phase

Upload = tuple[str, bytes]  # (the file's name, its bytes)

# Screen captures: a 4K monitor is 3840 x 2160; anything larger is not a screen capture.
CAPTURE_MAX_PIXELS = 4096 * 4096
CAPTURE_MAX_BYTES = 50 * 2**20
SOURCES = {
    "library": "Example case",
    "dicom": "Three DICOM slices",
    "series": "A DICOM series per phase",
    "capture": "Three screen captures (PNG/JPEG)",
}


@dataclass(frozen=True)
class Reference:
    """The reference standard of an example case (shown to residents on request)."""

    category: Category
    subtype: str
    diameter_mm: float
    findings: str


@dataclass(frozen=True, eq=False)
class ReviewCase:
    """Three phases of one lesion, ready for the viewer, the measurements and the network."""

    source: str  # a key of SOURCES
    title: str  # shown as the case's heading; never an uploaded file's name
    images: dict[Phase, np.ndarray]  # (H, W): float32 HU, or uint8 already windowed (captures)
    spacing_mm: dict[Phase, float | None]  # pixel spacing (mm); None for captures without a scale
    is_hu: bool  # False for screen captures: no HU measurements, no window changes
    metadata: dict[Phase, dict[str, Any]] = field(default_factory=dict)  # CTSlice.metadata() allow-list
    case_id: str | None = None  # example cases only: opens with ?case=<case_id>
    lesion_boxes: dict[Phase, LesionBox] = field(default_factory=dict)  # preselected lesion (examples)
    liver_centres: dict[Phase, Point] = field(default_factory=dict)  # preselected liver ROI (examples)
    aorta_centres: dict[Phase, Point] = field(default_factory=dict)
    reference: Reference | None = None
    warnings: tuple[str, ...] = ()
    token: str = ""  # content hash: the key of every cache that depends on the images


def make_case(**kwargs: Any) -> ReviewCase:
    """A ReviewCase with its content token and its consistency warnings filled in."""
    images: dict[Phase, np.ndarray] = kwargs["images"]
    digest = hashlib.sha256()
    for p in PHASES:
        digest.update(p.value.encode())
        digest.update(np.ascontiguousarray(images[p]).tobytes())
        digest.update(repr(kwargs["spacing_mm"].get(p)).encode())
    case = ReviewCase(**kwargs, token=digest.hexdigest()[:16])
    return replace(case, warnings=(*case.warnings, *consistency_warnings(case)))


def sniff(data: bytes) -> str:
    """What a file is by its content: 'dicom', 'zip', 'png', 'jpeg', 'empty' or 'unknown'."""
    if not data:
        return "empty"
    if data[128:132] == b"DICM":
        return "dicom"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return "unknown"


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


def read_capture(data: bytes) -> np.ndarray:
    """A PNG or JPEG screen capture as a (H, W) uint8 grey image (already windowed by the viewer).

    Only PNG and JPEG are opened; images over CAPTURE_MAX_PIXELS (decompression bombs) are
    refused before decoding.
    """
    if len(data) > CAPTURE_MAX_BYTES:
        raise InputError("This image file is larger than 50 MiB, too large for a screen capture.")
    if sniff(data) not in ("png", "jpeg"):
        raise InputError(
            "This file is not a PNG or JPEG image; upload screen captures saved as PNG or JPEG "
            "(or choose a DICOM option for DICOM files)."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as image:
                width, height = image.size
                if width * height > CAPTURE_MAX_PIXELS:
                    raise InputError(
                        f"This image is {width} x {height} pixels, larger than a screen capture "
                        f"(at most {CAPTURE_MAX_PIXELS} pixels)."
                    )
                grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(
            "This image declares far more pixels than a screen capture (a decompression bomb?), so "
            "it was not decoded."
        ) from err
    except UnidentifiedImageError as err:
        raise InputError("This image could not be opened as a PNG or JPEG screen capture.") from err
    except (OSError, ValueError, SyntaxError) as err:  # truncated or damaged streams
        raise InputError("This image is damaged or truncated and could not be decoded.") from err
    if grey.ndim != 2 or min(grey.shape) < 16:
        raise InputError("This image is too small to hold a lesion (under 16 pixels on a side).")
    grey.setflags(write=False)
    return grey


def phase_hint_warnings(slices: Mapping[Phase, dicom_io.CTSlice]) -> list[str]:
    """Where a slice's own header (series description, contrast agent) names another phase."""
    out = []
    for phase, s in slices.items():
        hint = dicom_io.phase_hint(s)
        if hint is not None and hint is not phase:
            out.append(
                f"The slice used as {phase.value} looks {hint.value} from its header "
                f"(series description '{s.series_description or '—'}', contrast agent "
                f"{'recorded' if s.contrast_agent else 'not recorded'})."
            )
    return out


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
        metadata={p: slices[p].metadata() | {"phase_hint": _hint(slices[p])} for p in PHASES},
        warnings=(*phase_hint_warnings(slices), *same_series_warnings(slices)),
    )


def same_series_warnings(slices: Mapping[Phase, dicom_io.CTSlice]) -> list[str]:
    """Phases taken from one series (SeriesInstanceUID): one acquisition cannot be two phases."""
    by_series: dict[str, list[str]] = {}
    for phase, s in slices.items():
        if s.series_uid:
            by_series.setdefault(s.series_uid, []).append(phase.value)
    return [
        f"The {' and '.join(names)} images come from the same series: one acquisition cannot be "
        "two phases of the protocol."
        for names in by_series.values()
        if len(names) > 1
    ]


def _hint(s: dicom_io.CTSlice) -> str | None:
    hint = dicom_io.phase_hint(s)
    return hint.value if hint else None


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


def consistency_warnings(case: ReviewCase) -> list[str]:
    """Signs that the three phases do not belong together: different matrix or pixel spacing."""
    out = []
    shapes = {p: case.images[p].shape for p in PHASES}
    if len(set(shapes.values())) > 1:
        sizes = ", ".join(f"{p.value} {s[0]} x {s[1]}" for p, s in shapes.items())
        out.append(f"The phases differ in image size ({sizes}): they may not belong to one examination.")
    spacings = {p: s for p in PHASES if (s := case.spacing_mm[p])}
    if spacings and max(spacings.values()) - min(spacings.values()) > 0.01:
        values = ", ".join(f"{p.value} {s:.3f} mm" for p, s in spacings.items())
        out.append(f"The phases differ in pixel spacing ({values}): they may not belong to one examination.")
    return out


def aorta_check(case: ReviewCase) -> tuple[Point | None, PhaseCheck | None]:
    """Find the aorta (or take the example's) and check the phases' labels against its HU."""
    if not case.is_hu:
        return None, None
    centre = case.aorta_centres.get(Phase.ARTERIAL) or locate_aorta(
        case.images, case.spacing_mm.get(Phase.ARTERIAL)
    )
    if centre is None:
        return None, None
    stats = {p: disc_stats(case.images[p], centre, case.spacing_mm[p]) for p in PHASES}
    if any(s is None for s in stats.values()):
        return centre, None
    return centre, check_phases_by_aorta({p: s.mean_hu for p, s in stats.items() if s is not None})


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


def assignment_from_check(
    assignment: Mapping[Phase, int], suggested: Mapping[Phase, Phase]
) -> dict[Phase, int]:
    """The assignment after relabelling as a PhaseCheck suggests (labelled phase -> new phase)."""
    return {suggested.get(p, p): i for p, i in assignment.items()}
