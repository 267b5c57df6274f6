"""The Streamlit app: each page through the router (AppTest), and the app package's logic."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livercore import captures, file_kind, measure, phases, review_case
from livercore.app import compare, figures, inputs, marks, report
from livercore.contribution import PhaseContribution
from livercore.errors import InputError
from livercore.preprocess import LesionBox
from livercore.teaching import catalogue, findings
from livercore.vocab import CATEGORIES, DISCLAIMER, MODEL_NAMES, PHASE_MODELS, PHASES, Category, Phase
from tests.browser_harness import write_untrained_models

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
EXAMPLE = "teaching-0-0026"  # an example case: classic HCC, 38 mm
U, A, D = PHASES


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = write_untrained_models(tmp_path_factory.mktemp("models"))
    before = os.environ.get("LIVERCORE_MODELS")
    os.environ["LIVERCORE_MODELS"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("LIVERCORE_MODELS", None)
    else:
        os.environ["LIVERCORE_MODELS"] = before


@pytest.fixture(scope="module")
def phantom_dicom(tmp_path_factory: pytest.TempPathFactory) -> dict[Phase, bytes]:
    """One phantom case (test-2016 #3, classic HCC 47 mm) as three DICOM files' bytes."""
    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case

    out = tmp_path_factory.mktemp("phantom")
    row = write_case(generate_case("test-2016", 0, 3), out)
    return {p: (out / str(row[p.value])).read_bytes() for p in PHASES}


def app_at(page: str, query: dict[str, str] | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(page)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    return at


def texts(at) -> str:
    parts = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def viewers(at) -> list[dict]:
    """The data of the page's lesion viewers (livercore.app.viewer), in page order."""
    return [json.loads(e.proto.json) for e in at.get("bidi_component")]


def image_count(at) -> int:
    return len(at.get("image"))


def pool_marks(box_centre: tuple[float, float], diameter_px: float = 60) -> marks.Marks:
    box = LesionBox(box_centre[0], box_centre[1], diameter_px, diameter_px)
    return marks.Marks(boxes=dict.fromkeys(PHASES, box))


# --- pages ---------------------------------------------------------------------------------------


def test_home_page_shows_disclaimer_and_model_cards(models_dir: Path) -> None:
    at = app_at("pages/home.py")
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    table = at.table[0].value
    assert list(table.columns) == [PHASE_MODELS[n].label for n in MODEL_NAMES]
    assert "nothing (untrained test model)" in table.to_string()
    assert "0.84 (0.82-0.90)" in table.to_string()  # the paper's triphasic test accuracy beside the card


def test_home_page_draws_the_full_model_cards_only_when_opened(models_dir: Path) -> None:
    at = app_at("pages/home.py")
    assert not at.exception
    assert [e.label for e in at.expander] == ["Full model cards: Bundled models (synthetic phantom CT)"]
    assert not at.get("json")  # closed: nothing for the browser to draw
    at.session_state["model-cards-bundled"] = True  # what opening it in the browser sets
    at.run()
    assert not at.exception
    assert len(at.get("json")) == len(MODEL_NAMES)
    assert json.loads(at.get("json")[0].proto.body)["trained_on"] == "nothing (untrained test model)"


def test_home_page_starts_residents_at_the_library_quiz_and_results(models_dir: Path) -> None:
    import re

    at = app_at("pages/home.py")
    assert not at.exception
    # the router's page titles (streamlit_app.py), so the home page's links read as the menu does
    router = dict(re.findall(r'st\.Page\(\s*"pages/(\w+)\.py",\s*title="([^"]+)"', Path(APP).read_text()))
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    for page in ("library", "quiz", "results", "review", "compare"):
        assert router[page] in links, router[page]
    assert links[router["library"]] == "library" and links[router["quiz"]] == "quiz"
    assert links[router["results"]] == "results"
    body = texts(at)
    assert "**Residents:** start in the **Teaching library**" in body and "**Quiz**" in body
    assert "synthetic CT from the livercore phantom" in body and "on patients' CT" in body


def test_model_cards_say_which_figures_are_phantom_and_which_patients() -> None:
    from livercore.app import ui

    card = {
        "trained_on": "train-2013 phantom cohort (seed 0)",
        "tested_on": "100 cases",
        "test_accuracy": 0.96,
    }
    table = ui.model_cards_table({"triphasic": card})
    assert table.loc["this model: test accuracy, synthetic phantom CT", "Triphasic"] == "0.960"
    paper = next(label for label in table.index if label.startswith("paper: test accuracy"))
    assert "100 patients" in paper and table.loc[paper, "Triphasic"] == "0.84 (0.82-0.90)"
    own = ui.model_cards_table({"triphasic": {**card, "trained_on": "120 image sets"}})
    assert (
        "this model: test accuracy, its own data (trained on, tested on)" in own.index
    )  # no phantom claimed


def test_review_page_without_a_case_asks_for_one(models_dir: Path) -> None:
    at = app_at("pages/review.py")
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    assert any("Choose an example case" in i.value for i in at.info)


def test_shared_link_opens_example_with_prediction_and_cams(models_dir: Path) -> None:
    at = app_at("pages/review.py", {"case": EXAMPLE})
    assert not at.exception
    body = texts(at)
    number = next(e.number for e in catalogue.example_cases() if e.case_id == EXAMPLE)
    assert f"Example case {number}" in body
    assert "Triphasic model:" in body and "top category" in body
    assert [v["caption"].split(",")[0] for v in viewers(at)] == ["lesion box 38 x 38 mm"] * 3
    assert [v["title"].split(" · ")[0] for v in viewers(at)] == ["unenhanced", "arterial", "delayed"]
    # 3 network-input crops + one CAM (drawn once, not once per phase) + the CAM colour bar
    assert image_count(at) == 5
    assert "of the evidence for" in body  # the phase contributions' sentence, beside their bars
    leading = at.radio(key="cam_phase_triphasic")
    assert leading.value in PHASES and any("(carries most)" in o for o in leading.options)
    assert "One map for all 3 phases" in body
    assert "Phase check" in body and "as expected" in body
    measured = next(t.value for t in at.table if "ROI" in t.value.columns)
    assert measured.shape == (3, 4)  # lesion, liver, aorta x (ROI, U, A, D)
    assert list(measured["ROI"]) == ["Lesion", "Liver", "Aorta"]
    assert any(f"review?case={EXAMPLE}" in c.value for c in at.code)


def test_cam_method_target_and_model_can_be_changed(models_dir: Path) -> None:
    at = app_at("pages/review.py", {"case": EXAMPLE})
    at.selectbox(key="cam_method").set_value("EigenCAM")
    at.selectbox(key="cam_target").set_value(Category.D)
    at.selectbox(key="review_model").set_value("arterial")
    at.run()
    assert not at.exception
    body = texts(at)
    assert "Arterial model:" in body
    assert "for no particular category" in body  # EigenCAM has no target ...
    assert "evidence for D" not in body  # ... so no caption claims one
    assert at.selectbox(key="cam_target").disabled
    assert "This model sees one phase (arterial)" in body
    at.selectbox(key="cam_method").set_value("GradCAM").run()
    assert "GradCAM for D haemangioma" in texts(at)


def test_example_case_opens_in_one_click(models_dir: Path) -> None:
    at = app_at("pages/review.py")
    entries = catalogue.example_cases()
    at.button_group(key="example_pick").set_value(entries[2].case_id)
    at.run()
    assert not at.exception
    assert "Example case 3" in texts(at)
    assert at.query_params["case"] == [entries[2].case_id] or at.query_params["case"] == entries[2].case_id


def test_dicom_upload_without_extensions_is_read_and_phases_assigned(models_dir: Path, phantom_dicom) -> None:
    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["dicom"])
    at.run()
    # shuffled order, no extension, upper-case extension: the content and the headers decide
    at.file_uploader(key="dicom_files").set_value(
        [
            ("IM0003", phantom_dicom[D], "application/octet-stream"),
            ("IM0001.DCM", phantom_dicom[U], "application/dicom"),
            ("im2", phantom_dicom[A], "application/octet-stream"),
        ]
    )
    at.run()
    assert not at.exception
    body = texts(at)
    assert "Uploaded DICOM slices" in body
    assert "as expected" in body  # the aorta confirms the assignment
    assert any("Mark the lesion" in i.value for i in at.info)
    # a box drawn on the viewer ends up in the session's marks; set it as the viewer would
    at.session_state["review_marks"] = pool_marks((214, 200), 70)
    at.run()
    assert not at.exception
    assert "Triphasic model:" in texts(at)


def test_non_dicom_upload_gets_a_plain_message(models_dir: Path, phantom_dicom) -> None:
    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["dicom"])
    at.run()
    at.file_uploader(key="dicom_files").set_value(
        [
            ("a.dcm", b"hello, not an image", "text/plain"),
            ("b.dcm", phantom_dicom[A], "application/dicom"),
            ("c.dcm", b"", "application/dicom"),
        ]
    )
    at.run()
    assert not at.exception
    assert any("not a DICOM file" in e.value for e in at.error)


def test_swapped_phases_are_flagged_and_can_be_fixed(models_dir: Path, phantom_dicom) -> None:
    """Arterial pixels under the delayed file's header and vice versa: the aorta gives it away."""
    import pydicom

    def swap_pixels(a: bytes, b: bytes) -> bytes:
        ds, other = pydicom.dcmread(io.BytesIO(a)), pydicom.dcmread(io.BytesIO(b))
        ds.PixelData = other.PixelData
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["dicom"])
    at.run()
    at.file_uploader(key="dicom_files").set_value(
        [
            ("u", phantom_dicom[U], "application/dicom"),
            ("a", swap_pixels(phantom_dicom[A], phantom_dicom[D]), "x"),
            ("d", swap_pixels(phantom_dicom[D], phantom_dicom[A]), "x"),
        ]
    )
    at.run()
    assert not at.exception
    assert any("look swapped" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Use the order the aorta suggests").click()
    at.run()
    assert not at.exception
    assert not any("look swapped" in w.value for w in at.warning)
    assert "as expected" in texts(at)


def test_series_per_phase_with_a_zip(models_dir: Path, phantom_dicom) -> None:
    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["series"])
    at.run()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("series/IM1", phantom_dicom[A])
    at.file_uploader(key=f"series_{U}").set_value([("u1.DCM", phantom_dicom[U], "application/dicom")])
    at.file_uploader(key=f"series_{A}").set_value([("arterial.zip", buffer.getvalue(), "application/zip")])
    at.file_uploader(key=f"series_{D}").set_value([("d1", phantom_dicom[D], "application/dicom")])
    at.run()
    assert not at.exception
    assert not at.error
    assert "Uploaded DICOM series" in texts(at)


def test_real_ct_series_gets_a_slice_slider_and_an_honest_phase_check(models_dir: Path) -> None:
    """16 real portal-venous slices (HCC-TACE-Seg, CC BY 4.0) given as all three phases."""
    from tests.conftest import REAL_CT

    files = sorted(REAL_CT.glob("*.dcm"))
    if not files:
        pytest.skip("../shared/data/real-ct is not available")
    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["series"])
    at.run()
    for p in PHASES:
        at.file_uploader(key=f"series_{p}").set_value(
            [(f.name, f.read_bytes(), "application/dicom") for f in files]
        )
    at.run()
    assert not at.exception
    assert [s.key for s in at.slider][:3] == [f"slice_{p}" for p in PHASES]
    assert "slice 8 of 16" in texts(at)
    at.slider(key=f"slice_{D}").set_value(3)
    at.run()
    assert not at.exception
    assert "slice 3 of 16" in texts(at)
    body = texts(at)
    # one series three times: the aorta cannot confirm the phases, and the page says so
    assert "Phase check" in body and "as expected" not in body
    assert any("come from the same series" in w.value for w in at.warning)


def test_screen_captures_warn_about_burned_in_text(models_dir: Path, phantom_dicom) -> None:
    from livercore.dicom_io import read_ct_slice
    from livercore.preprocess import window_to_uint8

    at = app_at("pages/review.py")
    at.radio(key="review_source").set_value(inputs.SOURCES["capture"])
    at.run()
    for p in PHASES:
        png = io.BytesIO()
        Image.fromarray(window_to_uint8(read_ct_slice(phantom_dicom[p]).hu, p.window)).save(png, format="PNG")
        at.file_uploader(key=f"capture_{p}").set_value((f"{p}.png", png.getvalue(), "image/png"))
    at.run()
    assert not at.exception
    assert any("burned-in" in w.value for w in at.warning)
    at.session_state["review_marks"] = pool_marks((214, 200), 70)
    at.run()
    assert not at.exception
    body = texts(at)
    assert "Triphasic model:" in body
    assert "not HU" in body


def test_compare_page_shows_the_five_models_for_the_review_lesion(models_dir: Path) -> None:
    at = app_at("pages/review.py", {"case": EXAMPLE})
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.exception
    assert DISCLAIMER in [w.value for w in at.warning]
    table = at.table[0].value
    assert list(table.index) == [PHASE_MODELS[n].label for n in MODEL_NAMES]
    assert table.loc["Triphasic", "paper test accuracy"] == "0.84 (0.82-0.90)"
    body = texts(at)
    for name in MODEL_NAMES:
        assert f"**{PHASE_MODELS[name].label}**" in body
    # one CAM per model (not one per phase it sees), plus the colour bar
    assert image_count(at) == len(MODEL_NAMES) + 1
    assert body.count("of the evidence for") == 2  # the two multiphase models' phase sentences
    assert body.count("This model sees one phase") == 3
    assert "agree" in body
    at.selectbox(key="compare_cam_phase").set_value(Phase.DELAYED).run()
    body = texts(at)
    assert not at.exception
    # the triphasic, art/del and delayed maps over the delayed crop; the others over their own phase
    assert body.count("over the delayed crop") == 3 and "over the unenhanced crop" in body


def test_compare_page_can_open_an_example_case(models_dir: Path) -> None:
    at = app_at("pages/compare.py")
    assert not at.exception
    at.button_group(key="compare_pick").set_value(catalogue.example_cases()[8].case_id)
    at.run()
    assert not at.exception
    assert len(at.table[0].value) == len(MODEL_NAMES)


def test_pages_without_models_explain_what_is_missing(tmp_path: Path) -> None:
    before = os.environ.get("LIVERCORE_MODELS")
    os.environ["LIVERCORE_MODELS"] = str(tmp_path)
    try:
        for page in ("pages/home.py", "pages/compare.py"):
            at = app_at(page)
            assert not at.exception
            assert any("No trained models" in e.value for e in at.error)
        at = app_at("pages/review.py", {"case": EXAMPLE})
        assert not at.exception
        assert any("No trained models" in e.value for e in at.error)
        assert any("ROI" in t.value.columns for t in at.table)  # measurements still shown without models
    finally:
        if before is None:
            os.environ.pop("LIVERCORE_MODELS", None)
        else:
            os.environ["LIVERCORE_MODELS"] = before


# --- the app package -----------------------------------------------------------------------------


def test_roi_stats_on_known_values() -> None:
    hu = np.zeros((5, 5), np.float32)
    hu[1:4, 1:4] = [[10, 20, 30], [10, 20, 30], [10, 20, 30]]
    stats = measure.roi_stats(hu, hu > 0)
    assert stats is not None
    assert stats.mean_hu == pytest.approx(20.0)
    assert stats.sd_hu == pytest.approx(np.std([10, 20, 30] * 3, ddof=1))
    assert str(stats) == "20 ± 9"
    assert measure.roi_stats(hu, np.zeros_like(hu, bool)) is None


def test_aorta_order_check_suggests_the_swap() -> None:
    ok = phases.check_phases_by_aorta({U: 40, A: 320, D: 150})
    assert ok.plausible and ok.suggested is None
    swapped = phases.check_phases_by_aorta({U: 40, A: 150, D: 320})
    assert not swapped.plausible
    assert swapped.suggested == {U: U, A: D, D: A}
    assert phases.assignment_from_check({U: 0, A: 1, D: 2}, swapped.suggested) == {U: 0, D: 1, A: 2}


def test_aorta_is_found_on_phantom_phases() -> None:
    from livercore.phantom.cohort import generate_case

    case = generate_case("test-2016", 0, 7)
    found = measure.locate_aorta(case.hu, case.spacing_mm)
    assert found is not None
    assert np.hypot(*np.subtract(found, case.aorta_center[A])) < 3
    assert measure.locate_aorta({p: case.hu[U] for p in PHASES}, case.spacing_mm) is None  # no contrast


def test_box_and_click_selections_become_marks() -> None:
    box_event = {"box": [{"x": [100, 140], "y": [200, 230]}], "points": []}
    m = marks.apply_selection(
        marks.Marks(), A, box_event, marks.MarkMode.BOX, diameter_mm=20, spacing_mm=0.7, linked=True
    )
    assert m.complete and m.boxes[U] == LesionBox(215, 120, 30, 40)
    click = {"points": [{"x": 50, "y": 60}], "box": []}
    m2 = marks.apply_selection(
        m, D, click, marks.MarkMode.CLICK, diameter_mm=14, spacing_mm=0.7, linked=False
    )
    assert m2.boxes[D] == LesionBox(60, 50, 20, 20) and m2.boxes[A] == m.boxes[A]
    m3 = marks.apply_selection(
        m2, A, click, marks.MarkMode.LIVER, diameter_mm=14, spacing_mm=0.7, linked=True
    )
    assert m3.liver == dict.fromkeys(PHASES, (60.0, 50.0))
    stray = {"box": [{"x": [10, 11], "y": [10, 11]}]}
    assert (
        marks.apply_selection(m3, A, stray, marks.MarkMode.BOX, diameter_mm=1, spacing_mm=1, linked=True)
        is m3
    )


def test_zoom_stays_inside_the_image() -> None:
    assert figures.zoom_ranges((512, 512), 1.0, None) == ((-0.5, 511.5), (-0.5, 511.5))
    (r0, r1), (c0, c1) = figures.zoom_ranges((512, 512), 4.0, (10.0, 300.0))
    assert (r0, r1) == (-0.5, 127.5) and (c0 + c1) / 2 == 300.0


def test_zoomed_field_keeps_the_roi_marks_whole() -> None:
    lesion = (162.0, 158.0, 186.0, 182.0)  # a 24-pixel box around (174, 170)
    aorta = (288.0, 256.0, 308.0, 276.0)  # a circle around (298, 266)
    (r0, r1), (c0, c1) = figures.zoom_ranges((512, 512), 2.0, (174.0, 170.0), keep=[lesion, aorta])
    assert r1 - r0 == 256 and c1 - c0 == 256  # the zoom asked for
    for top, left, bottom, right in (lesion, aorta):
        assert r0 <= top and bottom <= r1 and c0 <= left and right <= c1
    assert figures.zoom_ranges((512, 512), 2.0, (174.0, 170.0))[0][1] < aorta[2]  # without keep: cut
    far = (400.0, 400.0, 420.0, 420.0)  # cannot share a 4x field with the lesion: the lesion wins
    assert figures.zoom_ranges((512, 512), 4.0, (174.0, 170.0), keep=[lesion, far]) == (
        (110.0, 238.0),
        (106.0, 234.0),
    )


def test_viewer_field_holds_the_marks_whole_and_reports_its_mode() -> None:
    from livercore.app import viewer

    uri = figures.png_data_uri(np.zeros((512, 512), np.uint8))
    box = LesionBox(174, 170, 24, 24)
    data = viewer.viewer_data(
        uri,
        (512, 512),
        title="arterial",
        box=box,
        liver=(190.0, 260.0),
        aorta=(298.0, 266.0),
        roi_radius_px=7,
        zoom=2.0,
        centre=(174.0, 170.0),
    )
    (r0, r1), (c0, c1) = data["field"]
    assert r1 - r0 == 256 and c1 - c0 == 256  # the zoom asked for
    marks = [(174 - 12, 170 - 12, 174 + 12, 170 + 12)] + [
        (r - 7, c - 7, r + 7, c + 7) for r, c in (data["liver"], data["aorta"])
    ]
    for top, left, bottom, right in marks:
        assert r0 <= top and bottom <= r1 and c0 <= left and right <= c1
    assert data["box"] == [174, 170, 24, 24] and data["mode"] == "box" and data["src"] == uri
    clickable = viewer.viewer_data(uri, (512, 512), title="x", clickable=True)
    assert clickable["mode"] == "click" and clickable["box"] is None
    assert clickable["field"] == [[-0.5, 511.5], [-0.5, 511.5]]  # the whole image, pixel edges
    json.dumps(data)  # the component's data travels as JSON


def _svg_points(markup: str) -> dict[str, list[tuple[float, str]]]:
    """Per series of the attenuation SVG: (the circle's y, its tooltip) for each drawn point."""
    from html.parser import HTMLParser

    series: dict[str, list[tuple[float, str]]] = {}
    where: list[str] = []

    class Points(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "g" and a.get("data-series"):
                where.append(a["data-series"] or "")
                series[where[-1]] = []
            elif tag == "circle" and where:
                series[where[-1]].append((float(a["cy"] or 0), ""))

        def handle_endtag(self, tag: str) -> None:
            if tag == "g" and where:
                where.pop()

        def handle_data(self, data: str) -> None:
            if where and series[where[-1]] and data.strip():
                y, _ = series[where[-1]][-1]
                series[where[-1]][-1] = (y, data.strip())

    Points().feed(markup)
    return series


def test_attenuation_curve_draws_each_measured_point_with_its_value() -> None:
    s = measure.RoiStats
    lesion: dict[Phase, measure.RoiStats | None] = dict(
        zip(PHASES, [s(40, 8, 9), s(120, 15, 9), s(70, 10, 9)], strict=True)
    )
    liver: dict[Phase, measure.RoiStats | None] = {**dict.fromkeys(PHASES, s(60, 5, 9)), Phase.DELAYED: None}
    markup = figures.attenuation_svg(measure.Measurements(lesion, liver, dict.fromkeys(PHASES), {}))
    points = _svg_points(markup)
    assert list(points) == ["Lesion", "Liver"]  # no aorta measured: no aorta curve
    assert [t for _, t in points["Lesion"]] == [
        "Lesion, unenhanced: 40 ± 8 HU",
        "Lesion, arterial: 120 ± 15 HU",
        "Lesion, delayed: 70 ± 10 HU",
    ]
    assert len(points["Liver"]) == 2  # the delayed liver was not measurable: no point drawn
    ys = [y for y, _ in points["Lesion"]]
    assert ys[1] < ys[2] < ys[0]  # SVG y grows downwards: 120 HU highest, 40 HU lowest
    assert "<script" not in markup and 'role="img"' in markup


def _bar_rows(markup: str, attribute: str) -> list[tuple[str, str, str]]:
    """(data attribute, the bar's style, the number's text) of each row of HTML bars."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if attribute in a:
                rows.append([a[attribute] or "", "", ""])
            elif (
                rows and "background:" in (a.get("style") or "") and "rgba(128" not in (a.get("style") or "")
            ):
                rows[-1][1] = a["style"] or ""

        def handle_data(self, data: str) -> None:
            if rows and data.strip():
                rows[-1][2] = data.strip()

    Rows().feed(markup)
    return [(r[0], r[1], r[2]) for r in rows]


def test_probability_bars_show_the_known_categories_in_order_at_their_probability() -> None:
    rows = _bar_rows(
        figures.probability_bars_html(np.array([0.004, 0.2, 0.3, 0.25, 0.246]), categories=CATEGORIES[:2]),
        "data-category",
    )
    assert [r[0] for r in rows] == ["A", "B"]  # only the categories the model knows, A first
    assert "width:0.4%" in rows[0][1] and rows[0][2] == "<1 %"  # never a misleading "0 %"
    assert "width:20.0%" in rows[1][1] and rows[1][2] == "20 %"
    assert Category.B.info.colour in rows[1][1]


def test_probability_table_gives_each_models_probabilities_shaded_by_value() -> None:
    from html.parser import HTMLParser

    cells: list[tuple[str, str, str]] = []  # (model, category, text)
    shade: dict[tuple[str, str], str] = {}
    where: dict[str, str] = {}

    class Cells(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "tr" and a.get("data-model"):
                where["model"] = a["data-model"] or ""
            elif tag == "td":
                where["category"] = a.get("data-category") or ""
                shade[(where["model"], where["category"])] = a.get("style") or ""

        def handle_data(self, data: str) -> None:
            if "category" in where and data.strip():
                cells.append((where["model"], where.pop("category"), data.strip()))

    markup = figures.probability_table_html(
        {"triphasic": np.array([0.9, 0.05, 0.03, 0.018, 0.002]), "arterial": np.full(5, 0.2)}
    )
    Cells().feed(markup)
    assert [c[:2] for c in cells[:5]] == [("triphasic", c.value) for c in CATEGORIES]
    assert [c[2] for c in cells] == ["90 %", "5 %", "3 %", "2 %", "<1 %"] + ["20 %"] * 5
    assert "color:white" in shade[("triphasic", "A")]  # dark cell, light ink
    assert "rgb(247, 251, 255)" in shade[("triphasic", "E")]  # 0 %: white
    assert "<script" not in markup


def test_contribution_bars_grow_from_the_centre_for_and_against() -> None:
    contribution = PhaseContribution(
        Category.A, {Phase.UNENHANCED: 0.01, Phase.ARTERIAL: 0.4, Phase.DELAYED: -0.1}, 0.7, 0.4
    )
    markup = figures.contribution_bars_html(contribution)
    rows = _bar_rows(markup, "data-phase")
    assert [r[0] for r in rows] == ["unenhanced", "arterial", "delayed"]
    assert [r[2] for r in rows] == ["+1 point", "+40 points", "-10 points"]
    # the largest bar fills most of its half (40 points on a +-46 scale), rightwards from 50 %
    assert "left:50%;width:43.5%" in rows[1][1]
    assert "left:39.1%;width:10.9%" in rows[2][1]  # against: leftwards, ending at the centre
    assert 'aria-label="Points of P(A) each phase carries"' in markup


def test_sniff_reads_content_not_names() -> None:
    assert file_kind.sniff(b"\0" * 128 + b"DICM....") == "dicom"
    assert file_kind.sniff(b"\x89PNG\r\n\x1a\n....") == "png"
    assert file_kind.sniff(b"PK\x03\x04...") == "zip"
    assert file_kind.sniff(b"") == "empty"
    assert file_kind.sniff(b"GIF89a") == "unknown"


def test_capture_decompression_bomb_and_non_images_are_refused() -> None:
    bomb = io.BytesIO()
    Image.new("L", (5000, 5000)).save(bomb, format="PNG")  # 25 Mpx in a few kB
    with pytest.raises(InputError, match="larger than a screen capture"):
        captures.read_capture(bomb.getvalue())
    with pytest.raises(InputError, match="not a PNG or JPEG"):
        captures.read_capture(b"GIF89a" + b"\0" * 100)
    with pytest.raises(InputError, match="could not be opened"):
        captures.read_capture(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(
        noise, format="PNG"
    )
    with pytest.raises(InputError, match="damaged or truncated"):
        captures.read_capture(noise.getvalue()[: len(noise.getvalue()) // 2])
    rgb = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 100, 0)).save(rgb, format="JPEG")
    grey = captures.read_capture(rgb.getvalue())
    assert grey.shape == (48, 64) and grey.dtype == np.uint8


def test_phases_of_different_sizes_are_flagged() -> None:
    images = {
        U: np.zeros((512, 512), np.float32),
        A: np.zeros((512, 512), np.float32),
        D: np.zeros((256, 256), np.float32),
    }
    case = review_case.make_case(
        source="dicom", title="t", images=images, spacing_mm={U: 0.7, A: 0.7, D: 0.9}, is_hu=True
    )
    joined = " ".join(case.warnings)
    assert "differ in image size" in joined and "differ in pixel spacing" in joined


def test_agreement_names_the_papers_arterial_confusion() -> None:
    from livercore.analysis import Analysis, ModelResult

    def result(name: str, top: Category) -> ModelResult:
        p = np.full(5, 0.1, np.float32)
        p[top.output_index] = 0.6
        return ModelResult(name, p, None, None)

    tops = {
        "triphasic": Category.A,
        "art_del": Category.A,
        "unenhanced": Category.A,
        "arterial": Category.C,
        "delayed": Category.A,
    }
    analysis = Analysis(np.zeros((3, 70, 70), np.uint8), {n: result(n, c) for n, c in tops.items()}, 0.0)
    verdict = compare.agreement(analysis)
    assert not verdict.unanimous
    assert "Arterial → C" in verdict.sentences[0]
    assert any("needs the delayed phase (washout)" in s for s in verdict.sentences)
    table = compare.comparison_table(analysis)
    assert table.loc[3, "paper sensitivity for its top category"] == "0.69 [24/35]"


def test_report_is_deidentified(models_dir: Path, phantom_dicom) -> None:
    from livercore.analysis import analyse_crops, load_models
    from livercore.dicom_io import read_ct_slice

    slices = {p: read_ct_slice(phantom_dicom[p], label=f"Doe^John_{p}.dcm") for p in PHASES}
    case = inputs.case_from_slices(slices, source="dicom", title="Uploaded DICOM slices")
    m = pool_marks((214, 200), 70)
    models = load_models(models_dir)
    analysis = analyse_crops(inputs.crops_for(case, m.boxes), models)
    meas = measure.measure_case(case.images, case.spacing_mm, m.boxes, m.liver, m.aorta)
    blob = report.report_json(case, m, analysis, models, meas)
    data = json.loads(blob)
    text = blob.decode()
    import pydicom

    header = pydicom.dcmread(io.BytesIO(phantom_dicom[A]))
    identifying = (
        str(header.PatientID),
        str(header.PatientName),
        str(header.StudyDate),
        str(header.StudyInstanceUID),
        str(header.SeriesInstanceUID),
        str(header.SeriesDescription),
        "Doe",
        "John",
    )
    for value in identifying:
        assert value not in text, value
    assert data["disclaimer"] == DISCLAIMER
    assert set(data["models"]) == set(MODEL_NAMES)
    assert len(data["models"]["triphasic"]["cam_70x70"]) == 70
    assert len(data["network_input"]["crops_uint8"]["arterial"]) == 70
    png = report.report_png(case, analysis)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and not image.info.get("text") and "exif" not in image.info


def test_report_png_labels_fit_and_it_shows_the_hu_table_and_the_lesion_box(
    models_dir: Path, phantom_dicom
) -> None:
    from livercore.analysis import analyse_crops, load_models
    from livercore.dicom_io import read_ct_slice

    slices = {p: read_ct_slice(phantom_dicom[p], label=f"x_{p}.dcm") for p in PHASES}
    case = inputs.case_from_slices(slices, source="dicom", title="Uploaded DICOM slices")
    m = pool_marks((214, 200), 70)
    analysis = analyse_crops(inputs.crops_for(case, m.boxes), load_models(models_dir))
    meas = measure.measure_case(case.images, case.spacing_mm, m.boxes, m.liver, m.aorta)
    sheet = report.render_report(case, analysis, marks=m, measurements=meas)
    width, height = sheet.image.size
    for line in sheet.texts:  # nothing cut at the sheet's edges or running out of its column
        x0, y0, x1, y1 = line.box
        assert x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height, line
        assert line.column[0] <= x0 and x1 <= line.column[1], line
    labels = [t for t in sheet.texts if t.column[1] <= report.LABEL_W]  # the row labels, left of the images
    label_column = " ".join(t.text for t in labels)
    for r in analysis.results.values():
        assert f"top: {r.predicted.value} {r.predicted.info.name}" in label_column  # whole, maybe wrapped
    shown = [t.text for t in sheet.texts]
    for row in meas.rows():  # the HU table: every ROI and every mean ± SD
        assert all(str(v) in shown for v in row.values()), row
    assert "ROI" not in [t.text for t in report.render_report(case, analysis, marks=m).texts]
    yellow = tuple(int(figures.MARK_COLOURS["lesion"][i : i + 2], 16) for i in (1, 3, 5))
    spacing = case.spacing_mm[A]
    assert spacing is not None
    side = report.CONTEXT_FACTOR * 64 / spacing  # the phase image's field (pixels)
    for p in PHASES:
        x0, y0, x1, y1 = sheet.lesion_boxes[p]
        assert sheet.image.getpixel(((x0 + x1) // 2, y0)) == yellow
        assert sheet.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) != yellow  # an outline
        assert x1 - x0 == pytest.approx(70 * report.PHASE_TILE / side, abs=2)
    png = report.report_png(case, analysis, marks=m, measurements=meas)
    assert Image.open(io.BytesIO(png)).size == (width, height)


def test_report_phase_images_of_screen_captures_keep_to_the_network_field() -> None:
    images = {p: np.full((400, 400), 100, np.uint8) for p in PHASES}
    for image in images.values():
        image[:40, :40] = 255  # a corner with burned-in text, 150 pixels from the lesion
    box = LesionBox(200, 200, 40, 40)  # network field: 2.5 x 40 = 100 pixels
    capture = inputs.case_from_captures(images, pixel_mm=None)
    view, (x0, _, x1, _) = report.phase_view(capture, A, box)
    assert view.max() == 100  # the corner stays out of the report
    assert x1 - x0 == pytest.approx(report.PHASE_TILE * 40 / 100, abs=2)
    ct = review_case.make_case(
        source="dicom",
        title="t",
        images={p: np.where(images[p] == 255, 400.0, 60.0).astype(np.float32) for p in PHASES},
        spacing_mm=dict.fromkeys(PHASES, 0.16),  # the 64 mm network field is 400 pixels
        is_hu=True,
    )
    assert report.phase_view(ct, A, box)[0].max() == 255  # CT: the lesion in its surroundings


def test_stored_examples_get_their_findings_from_the_one_generator() -> None:
    """The stored example cases are phantom cases too: their findings are the library's words."""
    from livercore.phantom import generate_case

    for entry in catalogue.example_cases()[:3]:
        case = generate_case(entry.cohort, entry.seed, entry.index, entry.size)
        assert case.case_id == entry.case_id
        assert entry.findings == findings.phantom_findings(case)
        assert entry.findings.startswith("Unenhanced:")


def test_example_library_is_complete_and_small() -> None:
    entries = catalogue.example_cases()
    assert len(entries) == 10
    assert sorted(e.category for e in entries) == sorted(list(CATEGORIES) * 2)
    assert all(e.diameter_mm >= 15 and e.findings for e in entries)
    size = sum(f.stat().st_size for f in catalogue.cases_dir().rglob("*") if f.is_file())
    assert size < 10 * 2**20
    case = catalogue.open_case(entries[0].case_id)
    assert case.lesion_boxes.keys() == set(PHASES) and case.reference is not None
    with pytest.raises(InputError, match="no example case"):
        catalogue.open_case("../../etc/passwd")


def test_a_model_file_of_the_old_format_is_refused_with_its_reason(tmp_path: Path) -> None:
    import torch

    folder = write_untrained_models(tmp_path / "models")
    blob = torch.load(folder / "delayed.pt", weights_only=True)
    blob["format"] = "livercore-model/1"  # as saved before the contract was recorded
    torch.save(blob, folder / "delayed.pt")
    before = os.environ.get("LIVERCORE_MODELS")
    os.environ["LIVERCORE_MODELS"] = str(folder)
    try:
        at = app_at("pages/review.py", {"case": EXAMPLE})
        assert not at.exception
        refusals = [w.value for w in at.warning if "Model not loaded" in w.value]
        assert len(refusals) == 1 and "delayed.pt is a livercore-model/1 file" in refusals[0]
        assert at.selectbox(key="review_model").options == [
            PHASE_MODELS[n].label for n in MODEL_NAMES if n != "delayed"
        ]
    finally:
        if before is None:
            os.environ.pop("LIVERCORE_MODELS", None)
        else:
            os.environ["LIVERCORE_MODELS"] = before
