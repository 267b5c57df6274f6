"""The quiz in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Runs the router when it has a quiz route, else the quiz page on its own. Skipped cleanly when
/usr/bin/chromium or the playwright package is missing. The screenshot goes to
$LIVERCORE_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_harness import (
    free_port,
    full_page_screenshot,
    launch,
    start_server,
    stop_server,
    wait_healthy,
    wait_settled,
)

ROOT = Path(__file__).resolve().parents[1]
FEEDBACK_IMAGES = 3 + 1 + 1  # the three phases, the model's one CAM, the CAM colour bar

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def quiz_url(playwright_api: Any) -> Iterator[str]:
    routed = "pages/quiz.py" in (ROOT / "streamlit_app.py").read_text()
    script = "streamlit_app.py" if routed else "pages/quiz.py"
    port = free_port()
    server = start_server(None, port, script=script)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}" + ("/quiz" if routed else "/")
    finally:
        stop_server(server)


def test_answer_one_question_and_see_the_feedback(playwright_api: Any, quiz_url: str, tmp_path: Path) -> None:
    browser = launch(playwright_api)
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(quiz_url)
        page.wait_for_selector("text=Check my answer", timeout=90_000)
        wait_settled(page, 3)
        assert page.get_by_text("For teaching and research only").count() == 1
        page.locator("[data-testid=stRadio]").get_by_text("B other malignant").click()
        page.get_by_role("button", name="Check my answer").click()
        page.wait_for_selector("text=What the network said", timeout=90_000)
        wait_settled(page, FEEDBACK_IMAGES)
        correct = page.get_by_text("Correct:").count()
        wrong = page.get_by_text("Not quite: you chose B other malignant").count()
        assert correct + wrong == 1
        assert page.get_by_text("sees the same phases as you").count() == 1
        assert page.get_by_text("Score this session").count() == 1
        assert page.get_by_text("of the evidence for").count() == 1  # the phase contributions
        shots = Path(os.environ.get("LIVERCORE_SCREENSHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        full_page_screenshot(page, shots / "quiz-feedback.png")
        assert (shots / "quiz-feedback.png").stat().st_size > 50_000
        page.get_by_role("button", name="Next case").click()
        page.wait_for_selector("text=Question 2", timeout=60_000)
    finally:
        browser.close()
