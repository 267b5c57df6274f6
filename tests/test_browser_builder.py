"""The cohort builder page in Debian's chromium: three phantom studies (folders named like
patients, identifying headers) become a cohort, with a reload half-way, an export and a
training run of `livercore study run` on what was exported."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from livercore import store
from livercore.cohort import check_cohort, read_manifest
from livercore.vocab import Category, Phase
from tests.browser_harness import (
    ROOT,
    click_point,
    draw_box,
    free_port,
    full_page_screenshot,
    start_server,
    stop_server,
    wait_healthy,
    wait_settled,
)
from tests.test_cohort_builder import IDENTIFIERS, synthetic_series, write_phantom_study, write_study

pytestmark = pytest.mark.browser

SCREENSHOTS = "LIVERCORE_SCREENSHOTS"  # a folder for the page's screenshots (else the test's own)
PATIENT_FOLDERS = ("DOE_JANE_MRN4417", "ROE_RICHARD_MRN0777", "SMITH_JOHN_MRN0021")  # sorted: Study 1, 2, 3


@dataclass(frozen=True)
class Truth:
    """Where a test study's lesion is in its arterial series, and what it is."""

    section: int  # 0-based
    row: float
    col: float
    diameter_mm: float
    category: Category
    pixel_mm: float


def write_studies(root: Path) -> list[Truth]:
    """Three studies: phantom volume cases with known truth when livercore.phantom.volume is
    there, else small synthetic series."""
    truths = []
    try:
        from livercore.phantom.volume import generate_volume_case
    except ImportError:
        generate_volume_case = None
    for n, (name, index) in enumerate(zip(PATIENT_FOLDERS, (3, 8, 12), strict=True)):
        ids = dict(
            IDENTIFIERS, StudyInstanceUID=f"{IDENTIFIERS['StudyInstanceUID']}.{n}", PatientID=f"MRN{n}4417"
        )
        if generate_volume_case is not None:
            case = generate_volume_case("test-2016", 0, index)
            write_phantom_study(case, root / name, ids)
            k, r, c = case.lesion_center_voxel[Phase.ARTERIAL]
            truths.append(Truth(round(k), r, c, round(case.diameter_mm), case.category, case.spacing_mm))
        else:
            centre = (10.0 - 8 * n, -6.0 + 5 * n, 2.5)
            write_study(root / name, synthetic_series(centre), pixel_mm=1.0, identifiers=ids)
            truths.append(Truth(7, centre[1] + 47.5, centre[0] + 47.5, 16, Category("ACE"[n]), 1.0))
    return truths


@pytest.fixture(scope="module")
def builder_app(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[dict[str, Any]]:
    """`streamlit run streamlit_app.py` with a studies folder of three studies, a cohorts folder
    and a fresh SQLite store."""
    base = tmp_path_factory.mktemp("builder")
    truths = write_studies(base / "studies")
    url = f"sqlite:///{base / 'store.sqlite'}"
    env = dict(
        os.environ,
        LIVERCORE_STUDIES=str(base / "studies"),
        LIVERCORE_COHORTS=str(base / "cohorts"),
        LIVERCORE_DATABASE_URL=url,
        LIVERCORE_MODELS=str(base / "no-models"),  # the builder needs none: no torch in the server
    )
    env.pop("LIVERCORE_SECRET", None)
    port = free_port()
    server = start_server(None, port, env=env, log=base / "server.log")
    try:
        wait_healthy(port)
        yield {"url": f"http://127.0.0.1:{port}", "base": base, "truths": truths, "database": url}
    finally:
        stop_server(server)
        store.dispose(url)


def settle(page: Any) -> None:
    wait_settled(page, timeout_ms=90_000)


def set_section(page: Any, viewer: int, section: int) -> None:
    """Move the viewer-th phase's section slider (1-based values) to the 0-based `section`."""
    thumb = (
        page.locator("[data-testid=stSlider]")
        .filter(has_text="Section")
        .nth(viewer)
        .locator("input[type=range]")
    )
    for _ in range(40):
        now = int(thumb.input_value())
        if now == section + 1:
            return
        thumb.focus()
        thumb.press("ArrowRight" if now < section + 1 else "ArrowLeft")
        time.sleep(0.2)
        settle(page)
    raise AssertionError("the section slider did not move")


def choose(page: Any, label: str, option: str) -> None:
    """Pick `option` (its visible text) in the selectbox labelled `label`."""
    box = page.get_by_role("combobox", name=label, exact=True)
    if box.input_value() == option:
        return
    box.click()
    page.locator("[role=option]").filter(has_text=option).first.click()
    settle(page)


def marks_of(page: Any, viewer: int) -> str:
    """The shapes (lesion circles) drawn on the viewer-th phase's chart, as JSON."""
    return page.evaluate(
        "(i) => JSON.stringify(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[i]"
        ".layout.shapes || [])",
        viewer,
    )


def click_centre(page: Any, viewer: int, row: float, col: float) -> None:
    """Click (row, col) on a viewer and wait until its circles are drawn anew."""
    before = marks_of(page, viewer)
    click_point(page, viewer, row, col, plotly=True)
    page.wait_for_function(
        "([i, old]) => { const gd = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[i];"
        " return gd && JSON.stringify(gd.layout.shapes || []) !== old; }",
        arg=[viewer, before],
        timeout=90_000,
    )
    settle(page)


def wait_text(page: Any, text: str, timeout_ms: float = 60_000) -> None:
    page.wait_for_function("(t) => document.body.innerText.includes(t)", arg=text, timeout=timeout_ms)
    settle(page)


def mark_lesion(
    page: Any,
    study: int,
    truth: Truth,
    *,
    box: bool = False,
    one_by_one: bool = False,
    shot: Path | None = None,
) -> None:
    """The page's flow for one lesion: the arterial centre (a click, then a second one once the
    view has zoomed on it; or a box around the lesion, which sets the diameter too), accept the
    other phases (one by one, or all at once), category, save, and mark the study done."""
    page.get_by_role("button", name=f"Mark Study {study} done").wait_for(timeout=60_000)
    page.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot >> nth=2", timeout=90_000)
    settle(page)
    set_section(page, 1, truth.section)
    diameter = page.get_by_label("Lesion diameter (mm)")
    if box:
        page.get_by_text("a box around the lesion").click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[1]._fullLayout.dragmode"
            " === 'select'",
            timeout=60_000,
        )
        settle(page)
        before = marks_of(page, 1)
        draw_box(page, 1, truth.row, truth.col, truth.diameter_mm / 2 / truth.pixel_mm, plotly=True)
        page.wait_for_function(
            "([i, old]) => { const gd = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[i];"
            " return gd && JSON.stringify(gd.layout.shapes || []) !== old; }",
            arg=[1, before],
            timeout=90_000,
        )
        settle(page)
        assert float(diameter.input_value()) == pytest.approx(truth.diameter_mm, abs=1.0)
    else:
        diameter.fill(str(truth.diameter_mm))
        diameter.press("Enter")
        settle(page)
        click_centre(page, 1, truth.row, truth.col)  # the whole section: a coarse grid
        click_centre(page, 1, truth.row, truth.col)  # zoomed on it: the fine grid
    if shot is not None:
        full_page_screenshot(page, shot)
    if one_by_one:
        for phase in ("unenhanced", "delayed"):
            button = page.get_by_role("button", name=f"Accept the {phase} centre")
            button.click()
            button.wait_for(state="detached", timeout=60_000)
            settle(page)
    else:
        page.get_by_role("button", name="Accept every proposed centre").click()
        page.get_by_role("button", name="Accept every proposed centre").wait_for(
            state="detached", timeout=60_000
        )
        settle(page)
    choose(page, "Category", f"{truth.category.value} {truth.category.info.name}")
    page.get_by_role("button", name="Save this lesion").click()
    wait_text(page, f"Study {study}: in progress, 1 lesion(s) saved.")
    page.get_by_role("button", name=f"Mark Study {study} done").click()
    wait_text(page, f"{study} of {len(PATIENT_FOLDERS)}")  # the progress counts it
    if study < len(PATIENT_FOLDERS):  # the next study opens
        wait_text(page, f"Study {study + 1}: not started")


def test_three_studies_become_a_cohort_that_trains(builder_app: dict[str, Any], page: Any) -> None:
    started = time.monotonic()
    truths: list[Truth] = builder_app["truths"]
    shots = Path(os.environ.get(SCREENSHOTS) or builder_app["base"])
    page.goto(builder_app["url"] + "/builder")
    page.wait_for_selector("text=Cohort builder", timeout=60_000)
    settle(page)
    assert "For teaching and research only" in page.inner_text("body")
    name = page.get_by_label("Your name (saved with each lesion you mark)")
    name.fill("Dr Ada O'Brien")
    name.press("Enter")
    settle(page)

    mark_lesion(page, 1, truths[0], one_by_one=True, shot=shots / "builder-marking.png")
    mark_lesion(page, 2, truths[1])

    # a reload half-way: the saved work and the progress come back from the store
    page.reload()
    page.wait_for_selector("text=Studies done", timeout=60_000)
    settle(page)
    body = page.inner_text("body")
    assert "2 of 3" in body and "Study 3: not started, 0 lesion(s) saved." in body, body[:2000]
    assert page.get_by_label("Your name (saved with each lesion you mark)").input_value() == "Dr Ada O'Brien"

    # the third study, then the export
    mark_lesion(page, 3, truths[2], box=True)
    assert "3 of 3" in page.inner_text("body")
    page.get_by_label("Cohort name (letters, digits, - and _)").fill("../escape")
    page.get_by_role("button", name="Export the cohort").click()
    wait_text(page, "A cohort name is letters")
    page.get_by_label("Cohort name (letters, digits, - and _)").fill("site-2026")
    page.get_by_role("button", name="Export the cohort").click()
    wait_text(page, "Cohort site-2026 written", timeout_ms=120_000)
    page.get_by_role("button", name="Download site-2026.zip").wait_for(timeout=30_000)
    full_page_screenshot(page, shots / "builder-exported.png")
    text = page.content()
    for folder in PATIENT_FOLDERS:  # never shown
        assert folder not in text
    browser_s = time.monotonic() - started

    cohort = builder_app["base"] / "cohorts" / "site-2026"
    manifest = read_manifest(cohort)
    assert list(manifest["case_id"]) == ["S001-L01", "S002-L01", "S003-L01"]
    assert list(manifest["category"]) == [t.category.value for t in truths]
    for axis in ("row", "col"):  # a click: within the grid's reach (3 screen pixels); a box: a pixel
        error = abs(manifest[f"lesion_{axis}_arterial"].to_numpy() - [getattr(t, axis) for t in truths])
        assert error[:2].max() <= 2.5 and error[2] <= 1.5, error
    assert check_cohort(cohort).ok
    data = b"".join(p.read_bytes() for p in (builder_app["base"]).glob("store.sqlite*"))
    for value in (*IDENTIFIERS.values(), *PATIENT_FOLDERS):
        assert value.encode() not in data, value

    out = builder_app["base"] / "study"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "livercore.cli", "study", "run"),
            *("--train", str(cohort / "manifest.csv"), "--test", str(cohort / "manifest.csv")),
            *("--sessions", "1", "--models", "triphasic", "--variants", "2", "--device", "cpu"),
            *("--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(out.rglob("*.pt")) or any(out.rglob("*.csv"))
    print(f"browser part {browser_s:.0f} s, training {time.monotonic() - started - browser_s:.0f} s")
