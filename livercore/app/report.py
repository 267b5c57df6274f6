"""The downloadable, de-identified report of one reviewed lesion: a PNG sheet and a JSON record.

Nothing identifying goes in: no names, IDs, dates, UIDs, series descriptions or file names.
Acquisition parameters come from an allow-list (manufacturer, kVp, slice thickness, pixel
spacing, whether a contrast agent is recorded). The PNG is written without metadata chunks.
"""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from livercore.app.figures import cam_overlay, enlarge, percent
from livercore.app.inputs import SOURCES, ReviewCase
from livercore.app.marks import Marks
from livercore.app.measure import Measurements
from livercore.vocab import CATEGORIES, DISCLAIMER, PHASE_MODELS, PHASES

if TYPE_CHECKING:
    from livercore.analysis import Analysis, LoadedModel

REPORT_METADATA = ("manufacturer", "kvp", "slice_thickness_mm", "pixel_spacing_mm")
CARD_KEYS = ("trained_on", "date", "test_accuracy", "test_auc_clinical", "code_version")
TILE = 140  # pixels per 70 x 70 crop in the PNG (x2, nearest neighbour)


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
            "description": "class activation map (70 x 70, 0-1) on the crops the model saw",
        },
        "models": {
            name: {
                "label": PHASE_MODELS[name].label,
                "phases": [p.value for p in PHASE_MODELS[name].phases],
                "probabilities": {
                    c.value: round(float(r.probabilities[i]), 4) for i, c in enumerate(CATEGORIES)
                },
                "top_category": r.predicted.value,
                "top_category_name": r.predicted.info.name,
                "clinical_score": r.predicted.info.clinical_score,
                "cam_target": r.cam_target.value if r.cam_target else None,
                "cam_70x70": np.round(r.cam, 3).tolist() if r.cam is not None else None,
                "model_card": {k: models[name].card.get(k) for k in CARD_KEYS} if name in models else None,
            }
            for name, r in analysis.results.items()
        },
    }


def report_json(*args: Any, **kwargs: Any) -> bytes:
    """:func:`report_dict` as UTF-8 JSON bytes."""
    return json.dumps(report_dict(*args, **kwargs), indent=1).encode("utf-8")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


def report_png(case: ReviewCase, analysis: Analysis, *, opacity: float = 0.45) -> bytes:
    """A PNG sheet: the three crops, then per model its CAM on each phase it sees and its
    probabilities; the disclaimer at the foot. No metadata chunks, no identifiers."""
    label_w, bars_w, pad = 190, 330, 10
    width = label_w + len(PHASES) * (TILE + pad) + bars_w
    header_h, row_h = 84, TILE + pad
    rows = 1 + len(analysis.results)
    height = header_h + 40 + rows * row_h + 50
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    big, small = _font(20), _font(14)
    source = (
        "example case " + (case.case_id or "") if case.source == "library" else SOURCES.get(case.source, "")
    )
    draw.text((pad, 10), "livercore lesion review", fill="black", font=big)
    method = analysis.cam_method or "no CAM"
    draw.text(
        (pad, 38), f"Input: {source}. CAM: {method}, opacity {opacity:.2f}.", fill="#333333", font=small
    )
    legend = " · ".join(f"{c.value} {c.info.name}" for c in CATEGORIES)
    draw.text((pad, 58), legend, fill="#333333", font=small)
    for j, p in enumerate(PHASES):
        x = label_w + j * (TILE + pad)
        draw.text((x, header_h), p.value, fill="black", font=small)
        draw.text(
            (x, header_h + 17), f"L{p.window.level:.0f} / W{p.window.width:.0f}", fill="#555555", font=small
        )
    y = header_h + 40
    draw.text((pad, y + TILE // 2 - 8), "network input", fill="black", font=small)
    for j in range(len(PHASES)):
        tile = Image.fromarray(enlarge(analysis.crops[j], TILE // 70)).convert("RGB")
        sheet.paste(tile, (label_w + j * (TILE + pad), y))
    for name, r in analysis.results.items():
        y += row_h
        pm = PHASE_MODELS[name]
        top = r.predicted
        draw.text((pad, y + 10), pm.label, fill="black", font=big)
        draw.text((pad, y + 40), f"top: {top.value} {top.info.name}", fill="black", font=small)
        draw.text((pad, y + 60), f"clinical score {top.info.clinical_score}", fill="#333333", font=small)
        for j, p in enumerate(PHASES):
            x = label_w + j * (TILE + pad)
            if p in pm.phases and r.cam is not None:
                tile = Image.fromarray(enlarge(cam_overlay(analysis.crops[j], r.cam, opacity), TILE // 70))
                sheet.paste(tile, (x, y))
            else:
                draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), fill="#eeeeee")
                draw.text((x + 12, y + TILE // 2 - 8), "phase not used", fill="#777777", font=small)
        bx = label_w + len(PHASES) * (TILE + pad) + pad
        for i, c in enumerate(CATEGORIES):
            by = y + 6 + i * 26
            value = float(r.probabilities[i])
            draw.text((bx, by), f"{c.value}", fill="black", font=small)
            draw.rectangle((bx + 20, by + 2, bx + 20 + int(220 * value), by + 18), fill=c.info.colour)
            draw.text((bx + 26 + int(220 * value), by), percent(value * 100), fill="black", font=small)
    for k, line in enumerate(textwrap.wrap(DISCLAIMER, 125)[:2]):
        draw.text((pad, height - 42 + 18 * k), line, fill="#8a1c1c", font=small)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
