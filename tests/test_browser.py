"""The app in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Skipped cleanly when /usr/bin/chromium or the playwright package is missing (conftest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser_harness import (
    _CLICKABLE,
    _CONTRIBUTION_BARS,
    COMPARE_IMAGES,
    PREDICTION_IMAGES,
    click_point,
    crop_sources,
    draw_box,
    full_page_screenshot,
    phantom_dicom,
    upload_dicom,
    wait_settled,
)

# --- fixtures and tests --------------------------------------------------------------------------

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Any]:
    files, case = phantom_dicom(tmp_path_factory.mktemp("phantom"))
    return sorted(files), case


def test_upload_three_dicom_files_mark_the_lesion_and_see_cams(
    app_url: str, page: Any, phantom_files: tuple[list[Path], Any], tmp_path: Path
) -> None:
    from livercore.vocab import Phase

    files, case = phantom_files
    page.goto(f"{app_url}/review")
    page.wait_for_selector("text=Review a lesion", timeout=60_000)
    upload_dicom(page, files)
    assert page.get_by_text("as expected").count() == 1  # the aorta confirms the phases
    row, col = case.lesion_center[Phase.ARTERIAL]
    half = case.lesion_diameter_mm / case.spacing_mm / 2 * 1.1
    draw_box(page, 1, row, col, half)
    page.wait_for_selector("text=Triphasic model:", timeout=60_000)
    wait_settled(page, PREDICTION_IMAGES)
    # network input (3) + the triphasic model's one CAM + colour bar
    assert len(crop_sources(page)) == PREDICTION_IMAGES
    # the phase contributions: one bar per phase and the sentence that reads them
    assert page.get_by_text("Which phase carries the decision").count() == 1
    assert page.get_by_text("of the evidence for").count() == 1
    bars = page.evaluate(_CONTRIBUTION_BARS)
    assert bars == ["unenhanced", "arterial", "delayed"]
    box_text = page.locator("text=/lesion box \\d+ x \\d+ mm/").first.inner_text()
    size_mm = int(box_text.split()[2])
    assert abs(size_mm - 2 * half * case.spacing_mm) <= 3
    full_page_screenshot(page, tmp_path / "review-upload.png")
    assert (tmp_path / "review-upload.png").stat().st_size > 50_000

    # click mode: the centre plus a typed diameter
    page.get_by_text("Lesion: click its centre").click()
    page.wait_for_function(_CLICKABLE, timeout=30_000)
    page.get_by_label("Lesion diameter (mm) for a click").fill("30")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Resize the lesion box to 30 mm", timeout=30_000)
    wait_settled(page, PREDICTION_IMAGES)
    page.wait_for_function(_CLICKABLE, timeout=30_000)
    click_point(page, 1, row, col)
    page.wait_for_selector("text=lesion box 30 x 30 mm", timeout=30_000)
    wait_settled(page)
    assert page.get_by_text("Triphasic model:").count() == 1


def test_shared_link_shows_prediction_without_clicks(app_url: str, page: Any, tmp_path: Path) -> None:
    page.goto(f"{app_url}/review?case=teaching-0-0026")
    page.wait_for_selector("text=Triphasic model:", timeout=90_000)
    wait_settled(page, PREDICTION_IMAGES)
    assert page.get_by_text("For teaching and research only").count() == 1
    assert page.get_by_text("Example case 7").count() >= 1  # cases are numbered in cohort order
    page.get_by_role("link", name="Compare all five phase-models on this lesion").click()
    page.wait_for_selector("text=Where each model looks", timeout=60_000)
    wait_settled(page, COMPARE_IMAGES)
    assert page.get_by_text("This model sees one phase").count() == 3
    assert page.get_by_text("of the evidence for").count() == 2  # triphasic and arterial + delayed
    full_page_screenshot(page, tmp_path / "compare.png")


def test_unknown_case_link_says_so(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/review?case=no-such-case")
    page.wait_for_selector("text=Review a lesion", timeout=60_000)
    wait_settled(page)
    page.wait_for_selector("text=There is no example case or teaching case 'no-such-case'", timeout=30_000)


def choose(page: Any, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label` as a keyboard user would (type
    it, Enter), until the box shows it: a click on a list that a rerun redraws can miss."""
    box = page.get_by_label(label, exact=False).first
    for _ in range(4):
        box.click()
        page.keyboard.type(option)
        page.keyboard.press("Enter")
        wait_settled(page)
        if box.input_value() == option:
            return
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def test_results_page_opens_diagonal_and_off_diagonal_cells(app_url: str, page: Any) -> None:
    """A diagonal cell (classic HCC read as classic HCC) once ended in 'This app has encountered
    an error'; here through the real widgets, the AppTest (test_teaching) covers every cell."""
    page.goto(f"{app_url}/results")
    page.wait_for_selector("text=Study results", timeout=60_000)
    wait_settled(page)
    page.get_by_role("tab", name="Confusion matrices").click()
    page.wait_for_selector("text=The cases behind a cell", timeout=30_000)
    for true, predicted in (
        ("A classic HCC", "A classic HCC"),
        ("E cyst", "E cyst"),
        ("A classic HCC", "C indeterminate or rare benign"),
    ):
        choose(page, "Reference standard", true)
        choose(page, "Predicted", predicted)
        assert page.get_by_text("This app has encountered an error").count() == 0
        shown = (
            page.get_by_text(f"read as {predicted[0]} by the").count()
            + page.get_by_text("was read as").count()
        )
        assert shown >= 1, (true, predicted)
