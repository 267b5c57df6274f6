"""What the cohort builder page draws (pages/builder.py): the section viewer with its click grid
and lesion circles, the progress and lesion tables, the sentences under each phase.

Figures and tables only; the logic is livercore.cohort_builder, the widgets are the page's.
The viewer's data coordinates are x = column, y = row (pixels), so a clicked point maps straight
back to the section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from livercore.app.figures import VIEWER_PX, viewer_layout, zoom_ranges
from livercore.app.marks import MIN_BOX_PX, selection_box, selection_point
from livercore.cohort_builder import (
    CLICKED,
    CORRECTED,
    DONE,
    IN_PROGRESS,
    REFINED,
    PhasePoint,
    SavedLesion,
    StudyFolder,
    StudyRecord,
)
from livercore.vocab import PHASES, SUBTYPE_LABELS, Phase

# A click selects the nearest point of an invisible grid (plotly selects points, not pixels);
# the browser draws every point, so they are few: a coarse grid over the field shown (finer
# when zoomed in) and a fine patch around the centre once there is one, to place it to a pixel.
GRID_POINTS = 30  # coarse points per side of the field shown
FINE_POINTS = 20  # fine points per side of the patch around the centre: 1.2 pixels apart
# One size for every point: plotly picks the point whose marker edge is nearest, so a larger
# coarse marker would win over a nearer fine one.
MARKER_PX = 6
# The patch reaches this far from the centre: as far as a click on the coarse grid of the whole
# section (512 / GRID_POINTS pixels apart) can be off.
FINE_HALF_PX = 12.0
COLOURS = {  # Okabe-Ito
    "accepted": "#F0E442",  # yellow: the centre as it will be saved
    "proposed": "#E69F00",  # orange, dashed: propagated, waiting to be accepted or corrected
    "saved": "#56B4E9",  # sky blue: lesions of this study saved before
}
STATUS_LABELS = {DONE: "done", IN_PROGRESS: "in progress", None: "not started"}


@dataclass(frozen=True)
class Circle:
    """A lesion circle on the viewer: centre (row, col) and radius in pixels."""

    row: float
    col: float
    radius_px: float
    colour: str
    dashed: bool = False
    label: str = ""


def section_figure(
    png_uri: str,
    shape: tuple[int, int],
    circles: Sequence[Circle] = (),
    *,
    zoom: float = 1.0,
    centre: tuple[float, float] | None = None,
    clickable: bool = True,
    size_px: int = VIEWER_PX,
) -> go.Figure:
    """One section with its lesion circles; `clickable`: with the invisible points a click
    selects (else the chart is for drawing a box)."""
    fig = go.Figure(go.Image(source=png_uri, x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    keep = [
        (c.row - c.radius_px, c.col - c.radius_px, c.row + c.radius_px, c.col + c.radius_px) for c in circles
    ]
    (r0, r1), (c0, c1) = zoom_ranges(shape, zoom, centre, keep=keep[:1])
    if clickable:
        fig.add_trace(_click_grid(shape, (r0, r1), (c0, c1), centre))
    shapes = []
    for c in circles:
        line = {"color": c.colour, "width": 2, "dash": "dash" if c.dashed else "solid"}
        shapes.append(
            {
                "type": "circle",
                "xref": "x",
                "yref": "y",
                "x0": c.col - c.radius_px,
                "x1": c.col + c.radius_px,
                "y0": c.row - c.radius_px,
                "y1": c.row + c.radius_px,
                "line": line,
            }
        )
        arm = max(min(c.radius_px * 0.25, 6.0), 2.0)
        for dr, dc in ((arm, 0.0), (0.0, arm)):
            shapes.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "y",
                    "x0": c.col - dc,
                    "x1": c.col + dc,
                    "y0": c.row - dr,
                    "y1": c.row + dr,
                    "line": {"color": c.colour, "width": 1},
                }
            )
    return viewer_layout(fig, shapes, size_px, ((r0, r1), (c0, c1)), COLOURS["accepted"])


def _click_grid(
    shape: tuple[int, int],
    rows: tuple[float, float],
    cols: tuple[float, float],
    centre: tuple[float, float] | None,
) -> go.Scatter:
    """The invisible points a click selects: a coarse grid over the field shown and, around
    the centre when there is one, a fine patch."""
    grids = [_grid(rows, cols, (rows[1] - rows[0]) / GRID_POINTS, shape)]
    if centre is not None:
        half = min(FINE_HALF_PX, (rows[1] - rows[0]) / 4)
        step = max(2 * half / FINE_POINTS, 1.0)
        grids.append(
            _grid((centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half), step, shape)
        )
    return go.Scatter(
        x=np.concatenate([g[1] for g in grids]),
        y=np.concatenate([g[0] for g in grids]),
        mode="markers",
        hoverinfo="none",
        showlegend=False,
        marker={"size": MARKER_PX, "opacity": 0},
        selected={"marker": {"opacity": 0}},
        unselected={"marker": {"opacity": 0}},
    )


def _grid(
    rows: tuple[float, float], cols: tuple[float, float], step: float, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of points `step` pixels apart over a window, kept inside the image."""
    r = np.arange(max(rows[0], 0.0) + step / 2, min(rows[1], shape[0] - 0.5), step)
    c = np.arange(max(cols[0], 0.0) + step / 2, min(cols[1], shape[1] - 0.5), step)
    gy, gx = np.meshgrid(np.round(r, 2), np.round(c, 2), indexing="ij")
    return gy.ravel(), gx.ravel()


def selection_centre(
    selection: Mapping[str, Any] | None, spacing_mm: float
) -> tuple[tuple[float, float], float | None] | None:
    """((row, col), diameter in mm or None) of a viewer selection: a box around the lesion gives
    its centre and diameter (the mean of its sides), a click the point clicked; None for
    neither (or a box too small to be one)."""
    corners = selection_box(selection)
    if corners is not None:
        r0, c0, r1, c1 = corners
        if min(r1 - r0, c1 - c0) >= MIN_BOX_PX:
            return ((r0 + r1) / 2, (c0 + c1) / 2), round((r1 - r0 + c1 - c0) / 2 * spacing_mm, 1)
    point = selection_point(selection)
    return (point, None) if point is not None else None


def radius_px(diameter_mm: float, spacing_mm: float) -> float:
    return diameter_mm / 2 / spacing_mm


def phase_circles(
    phase: Phase,
    section: int,
    spacing_mm: float,
    *,
    point: PhasePoint | None,
    diameter_mm: float,
    saved: Sequence[SavedLesion] = (),
    series: int | None = None,
) -> list[Circle]:
    """The circles of one phase's viewer at `section`: the lesion being marked (when its centre
    lies on this section) first, then the study's saved lesions on this section."""
    out = []
    if point is not None and point.section == section:
        colour = COLOURS["accepted"] if point.accepted else COLOURS["proposed"]
        out.append(
            Circle(point.row, point.col, radius_px(diameter_mm, spacing_mm), colour, not point.accepted)
        )
    for lesion in saved:
        p = lesion.points.get(phase)
        if p is not None and p.section == section and (series is None or p.series == series):
            out.append(
                Circle(
                    p.row,
                    p.col,
                    radius_px(lesion.diameter_mm, spacing_mm),
                    COLOURS["saved"],
                    label=f"lesion {lesion.number}",
                )
            )
    return out


def point_sentence(phase: Phase, point: PhasePoint | None, reference: Phase | None, sections: int) -> str:
    """What the annotator should know about one phase's centre, in a sentence."""
    if point is None:
        return "Click the lesion centre."
    where = f"section {point.section + 1} of {sections}, row {point.row:.0f}, column {point.col:.0f}"
    if point.source == CLICKED:
        return f"Centre clicked here ({where}); the other phases follow it."
    if point.source == CORRECTED:
        return f"Corrected by your click ({where})."
    shift = float(np.linalg.norm(point.shift_mm))
    how = (
        f"propagated from the {reference.value if reference else 'clicked'} phase with a breath-hold shift of "
        f"{shift:.1f} mm"
        if point.source == REFINED
        else f"propagated from the {reference.value if reference else 'clicked'} phase through patient coordinates"
    )
    text = f"Centre {how} ({where})."
    if point.review:
        text += f" Check: {point.review}"
    if point.accepted:
        return text + " Accepted."
    return text + " Accept it, or click the right place."


def progress_table(folders: Sequence[StudyFolder], records: Mapping[str, StudyRecord]) -> pd.DataFrame:
    """One row per study: its label, status and saved lesions (no folder names)."""
    return pd.DataFrame(
        {
            "study": [f.label for f in folders],
            "status": [STATUS_LABELS[records[f.key].status if f.key in records else None] for f in folders],
            "lesions": [records[f.key].lesions if f.key in records else 0 for f in folders],
        }
    )


def lesions_table(lesions: Sequence[SavedLesion]) -> pd.DataFrame:
    """The saved lesions of a study: number, category, subtype, diameter, where, who, review."""
    return pd.DataFrame(
        {
            "lesion": [lesion.number for lesion in lesions],
            "category": [f"{lesion.category.value} {lesion.category.info.name}" for lesion in lesions],
            "subtype": [SUBTYPE_LABELS.get(lesion.subtype, lesion.subtype) for lesion in lesions],
            "diameter (mm)": [round(lesion.diameter_mm, 1) for lesion in lesions],
            "sections (U/A/D)": [
                " / ".join(str(lesion.points[p].section + 1) for p in PHASES) for lesion in lesions
            ],
            "by": [lesion.annotator for lesion in lesions],
            "review": [lesion.review or "" for lesion in lesions],
        }
    )
