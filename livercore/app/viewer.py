"""The lesion viewer: one CT phase with its marks, where a drag draws the lesion box and a click
marks a point, as a Streamlit component (st.components.v2, mounted by ui.lesion_viewer; the
drawing is viewer.js, its style viewer.css). This module holds what the component is given.

Why not a plotly chart: Streamlit creates a chart anew when its figure changes, so every mark
had three viewers' images decoded and plotted again, about a second of the browser's time per
lesion (benchmarks/bench_app.py). This element keeps its image and moves only the marks. It
reports a selection in data coordinates (x = column, y = row, pixel centres at integers) and in
the shape plotly gives them, so marks.apply_selection reads it as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from livercore.app.figures import VIEWER_PX, zoom_ranges
from livercore.measure import Point
from livercore.preprocess import LesionBox

SELECTION = "selection"  # the trigger a selection sets: {"box": [{"x", "y"}]} or {"points": [{"x", "y"}]}


def assets() -> tuple[str, str]:
    """The component's JavaScript and CSS."""
    here = Path(__file__).parent
    return (here / "viewer.js").read_text(encoding="utf-8"), (here / "viewer.css").read_text(encoding="utf-8")


def viewer_data(
    png_uri: str,
    shape: tuple[int, int],
    *,
    title: str,
    caption: str = "",
    box: LesionBox | None = None,
    liver: Point | None = None,
    aorta: Point | None = None,
    roi_radius_px: float | None = None,
    clickable: bool = False,
    zoom: float = 1.0,
    centre: Point | None = None,
    size_px: int = VIEWER_PX,
) -> dict[str, Any]:
    """What viewer.js draws: `title` above the image ("<phase> · <window>": the phase in bold),
    the image, the marks (pixels), `caption` below; the field (zoom around `centre`, holding the
    marks whole) and what a press does (box: draw a box; click: mark a point). The title and
    caption are drawn by the element itself: two page elements fewer for the browser to redraw
    per viewer at every mark."""
    keep: list[tuple[float, float, float, float]] = []  # marks the field keeps whole, in this order
    if box is not None:
        keep.append(
            (
                box.row - box.height / 2,
                box.col - box.width / 2,
                box.row + box.height / 2,
                box.col + box.width / 2,
            )
        )
    radius = roi_radius_px or 7.0
    for roi in (liver, aorta):
        if roi is not None:
            keep.append((roi[0] - radius - 3, roi[1] - radius - 3, roi[0] + radius + 3, roi[1] + radius + 3))
    return {
        "src": png_uri,
        "shape": [int(shape[0]), int(shape[1])],
        "title": title,
        "caption": caption,
        "box": [box.row, box.col, box.height, box.width] if box is not None else None,
        "liver": list(liver) if liver is not None else None,
        "aorta": list(aorta) if aorta is not None else None,
        "roi_radius": radius,
        "field": [list(r) for r in zoom_ranges(shape, zoom, centre, keep=keep)],
        "mode": "click" if clickable else "box",
        "size_px": size_px,
    }
