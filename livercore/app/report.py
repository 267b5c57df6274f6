"""The downloadable, de-identified report of one reviewed lesion: a PNG sheet and a JSON record.

Nothing identifying goes in: no names, IDs, dates, UIDs, series descriptions or file names.
Acquisition parameters come from an allow-list (manufacturer, kVp, slice thickness, pixel
spacing, whether a contrast agent is recorded). The PNG is written without metadata chunks.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from livercore.app.figures import MARK_COLOURS, PHASE_COLOURS, cam_overlay, display_u8, enlarge, percent
from livercore.app.inputs import SOURCES
from livercore.app.marks import Marks, describe_box
from livercore.contribution import points_text
from livercore.measure import Measurements
from livercore.preprocess import LesionBox, crop_square, field_side_px
from livercore.review_case import ReviewCase
from livercore.vocab import CAM_METHODS, CATEGORIES, DISCLAIMER, PHASE_MODELS, PHASES, Phase

if TYPE_CHECKING:
    from livercore.analysis import Analysis, LoadedModel, ModelResult

REPORT_METADATA = ("manufacturer", "kvp", "slice_thickness_mm", "pixel_spacing_mm")
CARD_KEYS = ("trained_on", "date", "test_accuracy", "test_auc_clinical", "code_version")
TILE = 140  # pixels per 70 x 70 crop in the PNG (x2, nearest neighbour)
PHASE_TILE = 200  # pixels per phase image (the lesion in its surroundings, with its box)
CONTEXT_FACTOR = 2.5  # phase image of CT: this many network fields around the lesion
PAD = 10  # pixels between panels
LABEL_W = 200  # the left column of row labels (model, top category), text wrapped to it
BARS_W = 330  # the right column of probability bars
TITLE_PT, TEXT_PT = 20, 14  # font sizes (pixels)


def _version() -> str:
    try:
        return version("livercore")
    except PackageNotFoundError:
        return "unknown"


def _safe_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: meta.get(k) for k in REPORT_METADATA}
    out["contrast_agent_recorded"] = bool(meta.get("contrast_agent"))
    return out


def report_dict(
    case: ReviewCase,
    marks: Marks,
    analysis: Analysis,
    models: Mapping[str, LoadedModel],
    measurements: Measurements | None,
) -> dict[str, Any]:
    """The report as plain JSON-able data: input, lesion, measurements, crops, probabilities, CAMs."""
    crops = analysis.crops
    return {
        "report": "livercore lesion review",
        "livercore_version": _version(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "deidentification": (
            "No patient identifiers: no names, IDs, dates, UIDs, series descriptions or file names; "
            "acquisition parameters from an allow-list only."
        ),
        "input": {
            "source": SOURCES.get(case.source, case.source),
            "example_case_id": case.case_id if case.source == "library" else None,
            "values_in_hu": case.is_hu,
            "phases": {p.value: _safe_metadata(case.metadata.get(p, {})) for p in PHASES},
        },
        "lesion": marks.as_dict(),
        "measurements_hu": measurements.as_dict() if measurements else None,
        "network_input": {
            "description": "70 x 70 8-bit crops, one per phase, windowed as the paper",
            "windows": {p.value: {"level": p.window.level, "width": p.window.width} for p in PHASES},
            "crops_uint8": {p.value: crops[i].tolist() for i, p in enumerate(PHASES)},
        },
        "cam": {
            "method": analysis.cam_method,
            "description": (
                CAM_METHODS[analysis.cam_method].description
                if analysis.cam_method in CAM_METHODS
                else "class activation map"
            )
            + "; one 70 x 70 map (0-1) per model for all the phases it sees",
        },
        "phase_contribution": {
            "description": (
                "Shapley value of each phase for P(category): how much showing the phase, instead of a flat "
                "image of its mean brightness, raises the probability, averaged over every order of "
                "revealing the phases; models of two or more phases only"
            ),
        },
        "models": {
            name: {
                "label": PHASE_MODELS[name].label,
                "phases": [p.value for p in PHASE_MODELS[name].phases],
                "probabilities": {
                    c.value: round(float(r.probabilities[i]), 4)
                    for i, c in enumerate(CATEGORIES)
                    if c in r.categories
                },
                "probabilities_uncalibrated": {
                    c.value: round(float(raw[i]), 4) for i, c in enumerate(CATEGORIES) if c in r.categories
                },
                "temperature": round(float(r.temperature), 4),
                "categories_known": [c.value for c in r.categories],
                "unlike_training_data": r.unlike_training,
                "out_of_distribution": r.ood.to_dict() if r.ood else None,
                "top_category": r.predicted.value,
                "top_category_name": r.predicted.info.name,
                "clinical_score": r.predicted.info.clinical_score,
                "cam_target": r.cam_target.value if r.cam_target else None,
                "cam_70x70": np.round(r.cam, 3).tolist() if r.cam is not None else None,
                "phase_contribution": _contribution_dict(r),
                "model_card": {k: models[name].card.get(k) for k in CARD_KEYS} if name in models else None,
            }
            for name, r in analysis.results.items()
            for raw in [r.raw_probabilities if r.raw_probabilities is not None else r.probabilities]
        },
        "image_checks": [f.to_dict() for f in analysis.findings],
    }


def _contribution_dict(result: ModelResult) -> dict[str, Any] | None:
    c = result.contribution
    if c is None:
        return None
    return {
        "category": c.target.value,
        "probability": round(c.probability, 4),
        "probability_all_phases_flat": round(c.baseline, 4),
        "shapley": {p.value: round(v, 4) for p, v in c.points.items()},
        "share_of_evidence": {p.value: round(v, 4) for p, v in c.shares().items()},
        "sentence": c.sentence(),
    }


def report_json(*args: Any, **kwargs: Any) -> bytes:
    """:func:`report_dict` as UTF-8 JSON bytes."""
    return json.dumps(report_dict(*args, **kwargs), indent=1).encode("utf-8")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in sheet pixels


@dataclass(frozen=True)
class PlacedText:
    """One line of text on the sheet: its box, and the column (x from, x to) it was given."""

    text: str
    box: Box
    column: tuple[int, int]


@dataclass(frozen=True)
class ReportSheet:
    """The PNG report before encoding: the RGB image, every line of text drawn on it, and the
    lesion box drawn on each phase image (sheet pixels)."""

    image: Image.Image
    texts: tuple[PlacedText, ...]
    lesion_boxes: dict[Phase, Box]


class _Canvas:
    """A white sheet of a fixed width that grows downwards; text is wrapped to a given width and
    every line drawn is recorded, so a test can check that none is cut."""

    def __init__(self, width: int, height: int) -> None:
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.texts: list[PlacedText] = []
        self.bottom = 0

    def text(
        self,
        x: int,
        y: int,
        text: str,
        *,
        width: int,
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
        fill: str = "black",
    ) -> int:
        """Draw `text` wrapped to `width` pixels from (x, y); the y below its last line."""
        line_h = _line_height(font)
        for line in _wrap(text, font, width):
            self.draw.text((x, y), line, fill=fill, font=font)
            x0, y0, x1, y1 = (round(v) for v in self.draw.textbbox((x, y), line, font=font))
            self.texts.append(PlacedText(line, (x0, y0, x1, y1), (x, x + width)))
            self.bottom = max(self.bottom, y1)
            y += line_h
        return y

    def paste(self, tile: Image.Image, xy: tuple[int, int]) -> None:
        self.image.paste(tile, xy)
        self.bottom = max(self.bottom, xy[1] + tile.height)

    def rectangle(self, box: Box, **style: Any) -> None:
        self.draw.rectangle(box, **style)
        self.bottom = max(self.bottom, box[3] + 1)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    top, bottom = font.getbbox("Ag")[1::2]
    return int(bottom - top) + 6


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    """Pixels from the pen position to the text's far edge: its advance or its ink, whichever is wider."""
    return math.ceil(max(font.getlength(text), font.getbbox(text)[2]))


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken between words (inside a word only
    when it alone is wider)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and _text_width(font, candidate) <= width:
            lines[-1] = candidate
            continue
        while _text_width(font, word) > width and len(word) > 1:
            cut = max(k for k in range(1, len(word) + 1) if _text_width(font, word[:k]) <= width or k == 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return lines or [""]


def phase_view(
    case: ReviewCase, phase: Phase, box: LesionBox, *, size_px: int = PHASE_TILE
) -> tuple[np.ndarray, Box]:
    """(size_px, size_px) uint8: one phase in the paper's window around the lesion, and the
    lesion box in its pixels (x0, y0, x1, y1). The field is CONTEXT_FACTOR network fields for
    CT in HU; for screen captures only the network's own field (a capture's corners often carry
    burned-in names and dates)."""
    image = case.images[phase]
    u8 = display_u8(image, phase.window if case.is_hu else None)
    side = field_side_px(box, case.spacing_mm.get(phase))
    if case.is_hu:
        side = round(side * CONTEXT_FACTOR)
    top, left = round(box.row - side / 2), round(box.col - side / 2)
    crop = crop_square(u8, box.row, box.col, side)
    view = np.asarray(Image.fromarray(crop).resize((size_px, size_px), Image.Resampling.BILINEAR))
    scale = size_px / side
    x0 = (box.col - box.width / 2 - left + 0.5) * scale
    y0 = (box.row - box.height / 2 - top + 0.5) * scale
    x1, y1 = x0 + box.width * scale, y0 + box.height * scale
    x0, y0, x1, y1 = (int(min(max(round(v), 0), size_px - 1)) for v in (x0, y0, x1, y1))
    return view, (x0, y0, x1, y1)


def _draw_cam_panel(
    canvas: _Canvas, x: int, y: int, crops: np.ndarray, result: ModelResult, opacity: float
) -> int:
    """One model's CAM, drawn once over the phase that carries most of its decision (its only
    phase for a single-phase model), then one bar per phase of its phase contributions with
    their sentence, from (x, y); the panel's height."""
    font = _font(TEXT_PT)
    seen = PHASE_MODELS[result.name].phases
    phase = result.contribution.leading if result.contribution else seen[0]
    if result.cam is not None:
        tile = Image.fromarray(
            enlarge(cam_overlay(crops[PHASES.index(phase)], result.cam, opacity), TILE // 70)
        )
        canvas.paste(tile, (x, y))
        canvas.text(
            x, y + TILE + 2, f"CAM over the {phase.value} crop", width=TILE, font=font, fill="#555555"
        )
    bx, width = x + TILE + PAD, 2 * TILE + PAD
    c = result.contribution
    if c is None:
        bottom = canvas.text(
            bx, y + 4, f"one phase ({phase.value}): all its evidence", width=width, font=font
        )
        return max(TILE + 24, bottom - y)
    top = canvas.text(
        bx, y + 2, f"phase contributions to P({c.target.value}), points", width=width, font=font
    )
    half = (width - 170) // 2
    centre = bx + 110 + half
    for i, (p, value) in enumerate(c.points.items()):
        by = top + 4 + i * 24
        canvas.text(bx, by, p.value, width=104, font=font)
        length = round(half * max(min(value, 1.0), -1.0))
        x0, x1 = sorted((centre, centre + length))
        canvas.rectangle((x0, by + 3, max(x1, x0 + 1), by + 17), fill=PHASE_COLOURS[p])
        canvas.text(bx + width - 40, by, points_text(value), width=40, font=font)
    canvas.rectangle((centre, top + 2, centre, top + 4 + len(c.points) * 24), fill="#999999")
    bottom = canvas.text(bx, top + 8 + len(c.points) * 24, c.sentence(), width=width, font=font)
    return max(TILE + 24, bottom - y)


def _draw_probabilities(canvas: _Canvas, x: int, y: int, probabilities: np.ndarray) -> int:
    """The five category probabilities as bars in the category colours, from (x, y); the height."""
    font = _font(TEXT_PT)
    bar_w = BARS_W - 110
    for i, c in enumerate(CATEGORIES):
        by = y + 6 + i * 26
        value = float(probabilities[i])
        canvas.text(x, by, c.value, width=18, font=font)
        canvas.rectangle((x + 20, by + 2, x + 20 + int(bar_w * value), by + 18), fill=c.info.colour)
        canvas.text(x + 26 + int(bar_w * value), by, percent(value * 100), width=70, font=font)
    return 6 + len(CATEGORIES) * 26


def _draw_hu_table(canvas: _Canvas, x: int, y: int, measurements: Measurements, width: int) -> int:
    """Measurements.rows() as a table (ROI, then mean ± SD in HU per phase) from (x, y); the y below."""
    font, bold = _font(TEXT_PT), _font(TEXT_PT + 1)
    rows = measurements.rows()
    header = ["ROI", *(p.value for p in PHASES)]
    cells = [[str(r[k]) for k in ("ROI", *(p.value for p in PHASES))] for r in rows]
    gap = 24
    phase_w = [
        max(_text_width(bold, header[k + 1]), *(_text_width(font, c[k + 1]) for c in cells))
        for k in range(len(PHASES))
    ]
    roi_w = min(
        max(_text_width(bold, header[0]), *(_text_width(font, c[0]) for c in cells)),
        width - sum(phase_w) - gap * 3,
    )
    xs = [x, x + roi_w + gap]
    for w in phase_w[:-1]:
        xs.append(xs[-1] + w + gap)
    bottom = max(
        canvas.text(cx, y, h, width=w, font=bold)
        for cx, h, w in zip(xs, header, [roi_w, *phase_w], strict=True)
    )
    canvas.rectangle((x, bottom - 2, xs[-1] + phase_w[-1], bottom - 2), fill="#999999")
    y = bottom + 2
    for row in cells:
        y = max(
            canvas.text(cx, y, v, width=w, font=font)
            for cx, v, w in zip(xs, row, [roi_w, *phase_w], strict=True)
        )
    return y


def render_report(
    case: ReviewCase,
    analysis: Analysis,
    *,
    marks: Marks | None = None,
    measurements: Measurements | None = None,
    opacity: float = 0.45,
) -> ReportSheet:
    """The report sheet: the three phases around the lesion with its box (`marks`' boxes, else
    the case's own), the HU table when there are `measurements`, the three crops the network
    saw, then per model its CAM panel and its probabilities; the disclaimer at the foot. Text is
    wrapped to its column, never cut. Nothing identifying is drawn (see the module docstring)."""
    cam_x = LABEL_W + PAD
    width = cam_x + len(PHASES) * (TILE + PAD) + BARS_W
    canvas = _Canvas(width, 1500 + 400 * len(analysis.results))  # cropped to the content below
    big, small = _font(TITLE_PT), _font(TEXT_PT)
    label_w = LABEL_W - PAD
    source = (
        "example case " + (case.case_id or "") if case.source == "library" else SOURCES.get(case.source, "")
    )
    y = canvas.text(PAD, PAD, "livercore lesion review", width=width - 2 * PAD, font=big)
    method = analysis.cam_method or "no CAM"
    y = canvas.text(
        PAD,
        y + 2,
        f"Input: {source}. CAM: {method}, opacity {opacity:.2f}.",
        width=width - 2 * PAD,
        font=small,
    )
    legend = " · ".join(f"{c.value} {c.info.name}" for c in CATEGORIES)
    y = canvas.text(PAD, y, legend, width=width - 2 * PAD, font=small, fill="#333333") + PAD

    # the phases around the lesion, with its box
    boxes = dict(marks.boxes) if marks is not None else dict(case.lesion_boxes)
    drawn: dict[Phase, Box] = {}
    canvas.text(PAD, y + PHASE_TILE // 2 - 10, "lesion box on each phase", width=label_w, font=small)
    captions = y + PHASE_TILE + 4
    for j, p in enumerate(PHASES):
        x = cam_x + j * (PHASE_TILE + PAD)
        box = boxes.get(p)
        if box is None:
            canvas.rectangle((x, y, x + PHASE_TILE - 1, y + PHASE_TILE - 1), fill="#eeeeee")
            canvas.text(x + 8, y + PHASE_TILE // 2 - 10, "no lesion box", width=PHASE_TILE - 16, font=small)
        else:
            view, (x0, y0, x1, y1) = phase_view(case, p, box)
            tile = Image.fromarray(view).convert("RGB")
            ImageDraw.Draw(tile).rectangle((x0, y0, x1, y1), outline=MARK_COLOURS["lesion"], width=2)
            canvas.paste(tile, (x, y))
            drawn[p] = (x + x0, y + y0, x + x1, y + y1)
        w = p.window
        label = f"{p.value} · L{w.level:.0f}/W{w.width:.0f}" if case.is_hu else f"{p.value} (as captured)"
        below = canvas.text(x, captions, label, width=PHASE_TILE, font=small)
        canvas.text(
            x, below, describe_box(box, case.spacing_mm.get(p)), width=PHASE_TILE, font=small, fill="#555555"
        )
    y = canvas.bottom + PAD

    if measurements is not None:
        canvas.text(PAD, y, "attenuation (HU, mean ± SD)", width=label_w, font=small)
        y = _draw_hu_table(canvas, cam_x, y, measurements, width - cam_x - PAD) + PAD

    # the network's input, then one row per model
    for j, p in enumerate(PHASES):
        x = cam_x + j * (TILE + PAD)
        canvas.text(x, y, p.value, width=TILE, font=small)
    y += _line_height(small)
    canvas.text(PAD, y + TILE // 2 - 10, "network input (70 x 70)", width=label_w, font=small)
    for j in range(len(PHASES)):
        tile = Image.fromarray(enlarge(analysis.crops[j], TILE // 70)).convert("RGB")
        canvas.paste(tile, (cam_x + j * (TILE + PAD), y))
    y = canvas.bottom + PAD
    bars_x = cam_x + len(PHASES) * (TILE + PAD) + PAD
    for name, r in analysis.results.items():
        top = r.predicted
        below = canvas.text(PAD, y + 4, PHASE_MODELS[name].label, width=label_w, font=big)
        below = canvas.text(PAD, below + 2, f"top: {top.value} {top.info.name}", width=label_w, font=small)
        canvas.text(
            PAD, below, f"clinical score {top.info.clinical_score}", width=label_w, font=small, fill="#333333"
        )
        panel = _draw_cam_panel(canvas, cam_x, y, analysis.crops, r, opacity)
        bars = _draw_probabilities(canvas, bars_x, y, r.probabilities)
        y = max(canvas.bottom, y + panel, y + bars) + PAD
    y = canvas.text(PAD, y + PAD, DISCLAIMER, width=width - 2 * PAD, font=small, fill="#8a1c1c")
    image = canvas.image.crop((0, 0, width, max(y, canvas.bottom) + PAD))
    return ReportSheet(image, tuple(canvas.texts), drawn)


def report_png(
    case: ReviewCase,
    analysis: Analysis,
    *,
    marks: Marks | None = None,
    measurements: Measurements | None = None,
    opacity: float = 0.45,
) -> bytes:
    """:func:`render_report` as PNG bytes, written without metadata chunks."""
    sheet = render_report(case, analysis, marks=marks, measurements=measurements, opacity=opacity)
    buffer = io.BytesIO()
    sheet.image.save(buffer, format="PNG")
    return buffer.getvalue()
