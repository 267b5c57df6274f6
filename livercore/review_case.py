"""A review case: three phases of one lesion, ready for the viewer, the measurements and the
network, whatever it came from (an upload, a stored example, a regenerated phantom case)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from livercore.measure import Point
from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Category, Phase


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
