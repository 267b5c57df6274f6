"""The app's figures: the viewers' images and field, the cohort builder's viewer layout, bars and
the time-attenuation curve as HTML and SVG, the compare page's heatmap, CAM overlays.

Images are (H, W) arrays; the viewers' data coordinates are x = column, y = row (pixels), so a
selection maps straight back to the image.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from livercore.contribution import points_text
from livercore.measure import Measurements, Point
from livercore.preprocess import window_to_uint8
from livercore.vocab import CATEGORIES, PHASE_DELAY_S, PHASE_MODELS, PHASES, Category, Phase, Window

if TYPE_CHECKING:  # plotly takes half a second to import: the home page does not wait for it
    import plotly.graph_objects as go

    from livercore.contribution import PhaseContribution

MARK_COLOURS = {"lesion": "#F0E442", "liver": "#56B4E9", "aorta": "#E69F00"}  # Okabe-Ito: yellow, sky, orange
# The viewers' image is square, at most VIEWER_PX wide, narrowed to its column (three phases
# side by side: about 335 px at a 1500 px window, 358 px on a 390 px phone).
VIEWER_PX = 340
# Height of the band above the cohort builder's plotly viewer that holds Plotly's toolbar
# (modebar) and Streamlit's fullscreen button, so that neither covers the image.
TOOLBAR_PX = 30
# The builder viewer's toolbar: zoom in, zoom out, reset. Plotly's zoom and pan tools are left
# out: they take over the drag, and no select tool is offered to get it back.
VIEWER_TOOLBAR_REMOVE = ("zoom2d", "pan2d", "select2d", "lasso2d", "autoScale2d", "toImage")
CAM_COLOURSCALE = "Turbo"  # perceptually ordered rainbow: dark blue (low) to dark red (high)


def _cam_lut() -> np.ndarray:
    """256-entry RGB lookup table of the CAM colour scale."""
    from plotly.colors import hex_to_rgb, sample_colorscale

    colours = sample_colorscale(CAM_COLOURSCALE, list(np.linspace(0.0, 1.0, 256)))
    out = []
    for c in colours:
        if c.startswith("#"):
            out.append(hex_to_rgb(c))
        else:  # "rgb(r, g, b)"
            out.append(tuple(round(float(v)) for v in c[c.index("(") + 1 : -1].split(",")))
    return np.array(out, dtype=np.uint8)


def display_u8(image: np.ndarray, window: Window | None) -> np.ndarray:
    """(H, W) uint8 for display: HU through `window`, or an already windowed uint8 image as is."""
    if window is None:
        return np.asarray(image, np.uint8)
    return window_to_uint8(image, window)


def png_data_uri(image_u8: np.ndarray) -> str:
    """A (H, W) or (H, W, 3) uint8 image as a PNG data URI (no metadata chunks)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image_u8, np.uint8)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def viewer_layout_spec(
    shapes: list[dict],
    size_px: int,
    ranges: tuple[tuple[float, float], tuple[float, float]],
    selection_colour: str,
) -> dict:
    """The image viewers' common layout: a square of `size_px` showing rows r0..r1 and columns
    c0..c1 (`ranges`) without axes, the toolbar band above, box selections in `selection_colour`."""
    (r0, r1), (c0, c1) = ranges
    return {
        **({"shapes": shapes} if shapes else {}),  # as plotly's validation leaves an empty list: out
        "width": size_px,
        "height": size_px + TOOLBAR_PX,
        "margin": {"l": 0, "r": 0, "t": TOOLBAR_PX, "b": 0},
        "xaxis": {"range": [c0, c1], "visible": False, "constrain": "domain"},
        "yaxis": {
            "range": [r1, r0],
            "visible": False,
            "scaleanchor": "x",
            "constrain": "domain",
            "constraintoward": "top",
        },
        "plot_bgcolor": "black",
        "paper_bgcolor": "rgba(0,0,0,0)",
        # grey icons: Plotly would pick white ones for the transparent band
        "modebar": {
            "remove": list(VIEWER_TOOLBAR_REMOVE),
            "bgcolor": "rgba(0,0,0,0)",
            "color": "#8a8a8a",
            "activecolor": "#333333",
        },
        "hovermode": "closest",
        "showlegend": False,
        "newselection": {"line": {"color": selection_colour, "width": 2}},
        "activeselection": {"fillcolor": selection_colour, "opacity": 0.1},
    }


def viewer_layout(
    fig: go.Figure,
    shapes: list[dict],
    size_px: int,
    ranges: tuple[tuple[float, float], tuple[float, float]],
    selection_colour: str,
) -> go.Figure:
    """`fig` with the viewers' layout (viewer_layout_spec)."""
    return fig.update_layout(**viewer_layout_spec(shapes, size_px, ranges, selection_colour))


def zoom_ranges(
    shape: tuple[int, int],
    zoom: float,
    centre: Point | None,
    *,
    keep: Sequence[tuple[float, float, float, float]] = (),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((row0, row1), (col0, col1)) of the viewer's field: the image / zoom around `centre`
    (default the image centre), shifted to stay inside the image and to hold each mark of
    `keep` ((row0, col0, row1, col1) extents, in order of priority) whole, as far as the field
    can hold it with the marks before it. Pixel edges at +-0.5."""
    rows, cols = shape
    halves = [size / max(zoom, 1.0) / 2 for size in (rows, cols)]
    # where the field's centre may lie, per axis: inside the image ...
    allowed = [(half - 0.5, size - 0.5 - half) for size, half in zip((rows, cols), halves, strict=True)]
    for r0, c0, r1, c1 in keep:  # ... and where it holds each mark whole
        narrowed = [
            (max(lo, hi_mark - half), min(hi, lo_mark + half))
            for (lo, hi), (lo_mark, hi_mark), half in zip(allowed, ((r0, r1), (c0, c1)), halves, strict=True)
        ]
        if all(lo <= hi for lo, hi in narrowed):
            allowed = narrowed
    out = []
    for (lo, hi), half, c in zip(allowed, halves, centre or (rows / 2, cols / 2), strict=True):
        c = (lo + hi) / 2 if lo > hi else min(max(c, lo), hi)
        out.append((c - half, c + half))
    return out[0], out[1]


def percent(value: float) -> str:
    """A probability in % for display: "<1 %" rather than a misleading "0 %"."""
    return "<1 %" if value < 0.5 else f"{value:.0f} %"


_BLUES = ((0xF7, 0xFB, 0xFF), (0x08, 0x30, 0x6B))  # the ends of ColorBrewer's Blues


def probability_table_html(table: Mapping[str, np.ndarray]) -> str:
    """Models (rows) x categories (columns): each model's probabilities (5,) in %, the cell
    shaded from white (0 %) to dark blue (100 %), its value written in. An HTML table for
    st.html: the compare page's first plotly chart was its slowest part to draw."""
    head = "".join(
        f'<th scope="col" style="padding:0.3em 0.5em;font-weight:600">{c.value} {html.escape(c.info.name)}</th>'
        for c in CATEGORIES
    )
    rows = []
    for name, probabilities in table.items():
        cells = []
        for c in CATEGORIES:
            value = float(np.asarray(probabilities, float)[c.output_index]) * 100
            t = min(max(value / 100, 0.0), 1.0)
            rgb = tuple(round(lo + (hi - lo) * t) for lo, hi in zip(*_BLUES, strict=True))
            ink = "white" if t > 0.55 else "#262730"
            cells.append(
                f'<td data-category="{c.value}" style="padding:0.35em 0.5em;text-align:center;'
                f'background:rgb{rgb};color:{ink};font-variant-numeric:tabular-nums">{html.escape(percent(value))}</td>'
            )
        rows.append(
            f'<tr data-model="{name}"><th scope="row" style="padding:0.3em 0.5em;text-align:left;'
            f'font-weight:600">{html.escape(PHASE_MODELS[name].label)}</th>{"".join(cells)}</tr>'
        )
    return (
        '<table aria-label="Probability of each category (%) by model" '
        'style="border-collapse:collapse;width:100%;table-layout:fixed;font-size:0.875rem">'
        f'<thead><tr><th scope="col" style="width:11em"></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2 or 5 times a power of ten step giving about `ticks` ticks over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** np.floor(np.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def attenuation_svg(measurements: Measurements, *, height: int = 300) -> str:
    """Time-attenuation: mean ± SD (HU) of lesion, liver and aorta over unenhanced, arterial and
    delayed, as an inline SVG for st.html (a plotly chart would be created anew in the browser at
    every mark: benchmarks/bench_app.py). Each point carries its value as a tooltip; the same
    figures are in the table beside it."""
    width, left, right, top, bottom = 460, 58, 14, 12, 64
    series = []
    for name, values, colour in (
        ("Lesion", measurements.lesion, MARK_COLOURS["lesion"]),
        ("Liver", measurements.liver, MARK_COLOURS["liver"]),
        ("Aorta", measurements.aorta, MARK_COLOURS["aorta"]),
    ):
        stats = [values.get(p) for p in PHASES]
        if any(stats):
            series.append((name, stats, colour))
    spans = [(s.mean_hu - s.sd_hu, s.mean_hu + s.sd_hu) for _, stats, _ in series for s in stats if s]
    lo, hi = (min(v for v, _ in spans), max(v for _, v in spans)) if spans else (-10.0, 100.0)
    step = _nice_step(hi - lo)
    lo, hi = float(np.floor(lo / step) * step), float(np.ceil(hi / step) * step)
    if hi - lo < step:
        hi = lo + step
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [left + plot_w * (i + 0.5) / len(PHASES) for i in range(len(PHASES))]

    def y(hu: float) -> float:
        return top + plot_h * (hi - hu) / (hi - lo)

    out = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px;font:12px sans-serif" '
        'role="img" aria-label="Time-attenuation curves: mean and SD in HU per phase" data-chart="attenuation">'
    ]
    for k in range(round((hi - lo) / step) + 1):
        hu = lo + k * step
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(hu):.1f}" y2="{y(hu):.1f}" stroke="rgba(128,128,128,0.25)"/>'
            f'<text x="{left - 6}" y="{y(hu) + 4:.1f}" text-anchor="end" fill="currentColor">{hu:g}</text>'
        )
    out.append(
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        'fill="currentColor">HU (mean ± SD)</text>'
    )
    for x, p in zip(xs, PHASES, strict=True):
        delay = f", {PHASE_DELAY_S[p]:.0f} s" if p is not Phase.UNENHANCED else ""
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle" fill="currentColor">'
            f"{html.escape(p.short)} ({html.escape(p.value)}{delay})</text>"
        )
    for name, stats, colour in series:
        line = "#333333" if name == "Lesion" else colour
        points = [(x, s, p) for x, s, p in zip(xs, stats, PHASES, strict=True) if s]
        path = " ".join(f"{x:.1f},{y(s.mean_hu):.1f}" for x, s, _ in points)
        out.append(f'<g data-series="{name}">')
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{line}" stroke-width="{3 if name == "Lesion" else 2}"/>'
        )
        for x, s, p in points:
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(s.mean_hu - s.sd_hu):.1f}" y2="{y(s.mean_hu + s.sd_hu):.1f}" '
                f'stroke="{line}" stroke-width="1.5"/>'
                f'<circle cx="{x:.1f}" cy="{y(s.mean_hu):.1f}" r="5" fill="{colour}" stroke="#333333">'
                f"<title>{name}, {html.escape(p.value)}: {s.mean_hu:.0f} ± {s.sd_hu:.0f} HU</title></circle>"
            )
        out.append("</g>")
    legend_y = height - 14
    for k, (name, _, colour) in enumerate(series):
        x = left + k * 90
        out.append(
            f'<line x1="{x - 4}" x2="{x + 16}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
            f'stroke="{"#333333" if name == "Lesion" else colour}" stroke-width="{3 if name == "Lesion" else 2}"/>'
            f'<circle cx="{x + 6}" cy="{legend_y - 4}" r="5" fill="{colour}" stroke="#333333"/>'
            f'<text x="{x + 22}" y="{legend_y}" fill="currentColor">{name}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def cam_overlay(crop_u8: np.ndarray, cam: np.ndarray, opacity: float) -> np.ndarray:
    """(70, 70, 3) uint8: the grey crop (70, 70) with the CAM (70, 70) in [0, 1] blended on top
    in the Turbo colour scale; `opacity` in [0, 1] is the weight of the CAM."""
    grey = np.repeat(np.asarray(crop_u8, np.float32)[..., None], 3, axis=2)
    colour = _CAM_LUT_RGB[np.clip(np.rint(np.asarray(cam, np.float32) * 255), 0, 255).astype(np.uint8)]
    blended = (1 - opacity) * grey + opacity * colour.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, factor: int = 3) -> np.ndarray:
    """Nearest-neighbour enlargement: each pixel the network sees stays a visible square."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def cam_colourbar_png(width: int = 210, height: int = 12) -> np.ndarray:
    """(height, width, 3) uint8 strip of the CAM colour scale, low (left) to high (right)."""
    index = np.linspace(0, 255, width).round().astype(np.uint8)
    return np.repeat(_CAM_LUT_RGB[index][None], height, axis=0)


_CAM_LUT_RGB = _cam_lut()


PHASE_COLOURS = {Phase.UNENHANCED: "#999999", Phase.ARTERIAL: "#D55E00", Phase.DELAYED: "#0072B2"}


# --- bars as HTML ---------------------------------------------------------------------------------
# The review, compare and quiz pages redraw their bars on every lesion selection. As plotly
# charts each cost the browser some 100-300 ms of main-thread time per redraw (benchmarks/
# bench_app.py); as HTML they cost next to nothing, and carry their numbers printed beside them.
_BAR_ROW = (
    "display:grid;grid-template-columns:{label};align-items:center;column-gap:0.6em;"
    "margin:0.2em 0;font-size:0.875rem;line-height:1.4"
)
_TRACK = "position:relative;height:1.05em;background:rgba(128,128,128,0.16);border-radius:2px"
_NUMBER = "text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap"


def probability_bars_html(probabilities: np.ndarray, *, categories: Sequence[Category] = CATEGORIES) -> str:
    """The category probabilities (5,) as horizontal bars, each in its category colour, its
    percentage beside it; only the `categories` the model knows (a model trained without C
    has no C bar). HTML for st.html."""
    shown = [c for c in CATEGORIES if c in categories]
    rows = []
    for c in shown:
        value = float(probabilities[c.output_index]) * 100
        rows.append(
            f'<div role="listitem" data-category="{c.value}" style="{_BAR_ROW.format(label="13em 1fr 3.2em")}">'
            f"<span>{c.value}&nbsp; {html.escape(c.info.name)}</span>"
            f'<span style="{_TRACK}"><span style="position:absolute;left:0;top:0;bottom:0;'
            f'width:{min(max(value, 0.0), 100.0):.1f}%;background:{c.info.colour};border-radius:2px"></span></span>'
            f'<span style="{_NUMBER}">{html.escape(percent(value))}</span></div>'
        )
    return f'<div role="list" aria-label="Probability of each category (%)">{"".join(rows)}</div>'


def contribution_bars_html(contribution: PhaseContribution) -> str:
    """One bar per phase from a centre line: its Shapley value for P(target), in percentage
    points (right: for, left: against), the signed points beside it. HTML for st.html."""
    values = {p: contribution.points[p] * 100 for p in contribution.points}
    limit = max(10.0, *(abs(v) * 1.15 for v in values.values()))
    rows = []
    for p, v in values.items():
        half = min(abs(v) / limit, 1.0) * 50
        side = f"left:50%;width:{half:.1f}%" if v >= 0 else f"left:{50 - half:.1f}%;width:{half:.1f}%"
        rows.append(
            f'<div role="listitem" data-phase="{p.value}" style="{_BAR_ROW.format(label="6.5em 1fr 5.5em")}">'
            f"<span>{p.value}</span>"
            f'<span style="{_TRACK}"><span style="position:absolute;left:50%;top:-2px;bottom:-2px;'
            f'border-left:1px solid rgba(128,128,128,0.8)"></span><span style="position:absolute;top:0;'
            f'bottom:0;{side};background:{PHASE_COLOURS[p]};border-radius:2px"></span></span>'
            f'<span style="{_NUMBER}">{points_text(v / 100)} point{"" if round(abs(v)) == 1 else "s"}</span></div>'
        )
    label = f"Points of P({contribution.target.value}) each phase carries"
    return f'<div role="list" aria-label="{html.escape(label)}">{"".join(rows)}</div>'
