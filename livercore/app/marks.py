"""What the user has marked on the viewer: the lesion box and the liver and aorta ROIs per phase.

Plotly reports a selection in data coordinates of the viewer's image: x is the column and y
the row (pixels). A box selection becomes a :class:`LesionBox`; a click (a selected point of
the viewer's invisible grid) becomes a centre, with the lesion diameter the user typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from livercore.measure import Point
from livercore.preprocess import LesionBox
from livercore.vocab import PHASES, Phase

MIN_BOX_PX = 3.0  # a box narrower than this is a stray click, not a lesion


class MarkMode(StrEnum):
    """What a selection on the viewer sets."""

    BOX = "Lesion: draw a box"
    CLICK = "Lesion: click its centre"
    LIVER = "Liver ROI: click"
    AORTA = "Aorta ROI: click"

    @property
    def draws_box(self) -> bool:
        return self is MarkMode.BOX


@dataclass(frozen=True)
class Marks:
    """Per phase: the lesion box, the liver ROI centre and the aorta ROI centre (pixels)."""

    boxes: dict[Phase, LesionBox] = field(default_factory=dict)
    liver: dict[Phase, Point] = field(default_factory=dict)
    aorta: dict[Phase, Point] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every phase has a lesion box (the network needs all three)."""
        return all(p in self.boxes for p in PHASES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lesion_box_px": {
                p.value: {
                    "row": round(b.row, 1),
                    "col": round(b.col, 1),
                    "height": round(b.height, 1),
                    "width": round(b.width, 1),
                }
                for p, b in self.boxes.items()
            },
            "liver_roi_centre_px": {p.value: [round(v, 1) for v in c] for p, c in self.liver.items()},
            "aorta_roi_centre_px": {p.value: [round(v, 1) for v in c] for p, c in self.aorta.items()},
        }


def selection_box(selection: Mapping[str, Any] | None) -> tuple[float, float, float, float] | None:
    """(row0, col0, row1, col1) of a plotly box selection, or None."""
    boxes = (selection or {}).get("box") or []
    if not boxes:
        return None
    xs, ys = boxes[-1].get("x") or [], boxes[-1].get("y") or []
    if len(xs) < 2 or len(ys) < 2:
        return None
    return float(min(ys)), float(min(xs)), float(max(ys)), float(max(xs))


def selection_point(selection: Mapping[str, Any] | None) -> Point | None:
    """(row, col) of the last clicked point of a plotly selection, or None."""
    points = (selection or {}).get("points") or []
    if not points or "x" not in points[-1] or "y" not in points[-1]:
        return None
    return float(points[-1]["y"]), float(points[-1]["x"])


def apply_selection(
    marks: Marks,
    phase: Phase,
    selection: Mapping[str, Any] | None,
    mode: MarkMode,
    *,
    diameter_mm: float,
    spacing_mm: float | None,
    linked: bool,
) -> Marks:
    """The marks after a selection on `phase`'s viewer; with `linked`, it applies to every phase.

    Returns `marks` unchanged when the selection holds nothing usable for `mode`.
    """
    targets = PHASES if linked else (phase,)
    if mode is MarkMode.BOX:
        corners = selection_box(selection)
        if corners is None:
            return marks
        box = LesionBox.from_corners(*corners)
        if min(box.height, box.width) < MIN_BOX_PX:
            return marks
        return replace(marks, boxes={**marks.boxes, **dict.fromkeys(targets, box)})
    point = selection_point(selection)
    if point is None:
        return marks
    if mode is MarkMode.CLICK:
        box = LesionBox.from_center(point[0], point[1], diameter_mm, spacing_mm or 1.0)
        return replace(marks, boxes={**marks.boxes, **dict.fromkeys(targets, box)})
    if mode is MarkMode.LIVER:
        return replace(marks, liver={**marks.liver, **dict.fromkeys(targets, point)})
    return replace(marks, aorta={**marks.aorta, **dict.fromkeys(targets, point)})


def resize_boxes(marks: Marks, diameter_mm: float, spacing_mm: Mapping[Phase, float | None]) -> Marks:
    """Every lesion box made a square of diameter_mm around its current centre."""
    boxes = {
        p: LesionBox.from_center(b.row, b.col, diameter_mm, spacing_mm.get(p) or 1.0)
        for p, b in marks.boxes.items()
    }
    return replace(marks, boxes=boxes)


def describe_box(box: LesionBox | None, spacing_mm: float | None) -> str:
    """The lesion box in words, e.g. "lesion box 21 x 20 mm, centre row 194, column 154"."""
    if box is None:
        return "no lesion marked"
    if spacing_mm:
        size = f"{box.height * spacing_mm:.0f} x {box.width * spacing_mm:.0f} mm"
    else:
        size = f"{box.height:.0f} x {box.width:.0f} pixels"
    return f"lesion box {size}, centre row {box.row:.0f}, column {box.col:.0f}"
