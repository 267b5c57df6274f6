"""Honest predictions in a real browser (Debian's chromium driven by Playwright), on the shipped
models with a site's second model set configured beside them (LIVERCORE_MODEL_SETS):

- the 16 real HCC048 portal-venous slices uploaded as the series of all three phases get the
  "unlike the training data" notice with its reasons, and the prediction is still shown,
  labelled as such;
- the configured set's cards are on the home page (its training cohort, its categories), and
  picked in the sidebar its models are the ones the review page uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livercore.paths import DEFAULT_MODELS_DIR
from livercore.vocab import PHASE_MODELS
from tests.browser_harness import (
    draw_box,
    free_port,
    full_page_screenshot,
    start_server,
    stop_server,
    upload_series_as_every_phase,
    wait_healthy,
    wait_settled,
)
from tests.conftest import REAL_CT

REAL_SLICES = sorted(REAL_CT.glob("slice_*.dcm"))
SPACING_MM = 0.703125
LIVER_BOX = (210.0, 170.0)  # a 2 cm box in the right lobe of the middle slice (tests/test_browser_real_ct.py)
SITE_COHORT = "Site 2025 cohort: 212 lesions, no category C"

pytestmark = pytest.mark.browser


def write_site_models(folder: Path) -> Path:
    """Five untrained phase-models that know A, B, D and E only (a cohort without C)."""
    import torch

    from livercore.model import LiverNet, save_model

    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, pm) in enumerate(PHASE_MODELS.items()):
        torch.manual_seed(i)
        net = LiverNet(pm.in_channels).know_only(["A", "B", "D", "E"])
        card = {
            "model": name,
            "phases": [p.value for p in pm.phases],
            "trained_on": SITE_COHORT,
            "categories": ["A", "B", "D", "E"],
            "training_mix": {"A": 80, "B": 40, "D": 52, "E": 40},
            "date": "2026-11-30T09:00:00+00:00",
            "code_version": "site-test",
            "test_accuracy": 0.5,
        }
        save_model(folder / f"{name}.pt", net, phase_model_name=name, card=card)
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[str]:
    """The app on the shipped models, with the site's set configured as a second one."""
    site = write_site_models(tmp_path_factory.mktemp("site-models"))
    import os

    env = dict(os.environ, LIVERCORE_MODEL_SETS=f"Site 2025={site}")
    port = free_port()
    server = start_server(DEFAULT_MODELS_DIR, port, env=env)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


@pytest.mark.skipif(len(REAL_SLICES) != 16, reason="real CT slices not available")
def test_real_hcc048_uploaded_as_triphasic_gets_the_unlike_training_notice(
    app_url: str, page: Any, tmp_path: Path
) -> None:
    page.goto(f"{app_url}/review")
    page.wait_for_selector("text=Review a lesion", timeout=60_000)
    upload_series_as_every_phase(page, REAL_SLICES)
    row, col = LIVER_BOX
    draw_box(page, 1, row, col, 10.0 / SPACING_MM)
    page.wait_for_selector("text=Triphasic model:", timeout=90_000)
    wait_settled(page)
    notice = page.locator("[data-testid=stAlert]", has_text="Unlike the training data.").first
    text = notice.inner_text()
    assert "contrast has been given, so this is not an unenhanced image" in text, text
    assert "training images" in text
    headline = page.get_by_text("Prediction on images unlike the training data").first.inner_text()
    assert "calibrated" in headline  # the prediction is still there, labelled
    full_page_screenshot(page, tmp_path / "review-real-ct-unlike-training.png")


def test_a_configured_model_set_has_its_cards_and_is_used_when_picked(app_url: str, page: Any) -> None:
    page.goto(app_url)
    page.wait_for_selector("text=Site 2025", timeout=60_000)
    wait_settled(page)
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=stMain]').innerText.includes(t)", arg=SITE_COHORT
    )
    body = page.inner_text("[data-testid=stMain]")
    assert "Bundled models (synthetic phantom CT) (in use)" in body
    assert SITE_COHORT in body and "A 80 · B 40 · D 52 · E 40" in body
    assert "A, B, D, E" in body  # the categories the site's models know
    assert "penultimate" in body  # the bundled models' OOD thresholds on their cards

    page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").click()
    page.get_by_role("option", name="Site 2025").click()
    wait_settled(page)
    page.wait_for_selector("text=Site 2025 (in use)", timeout=60_000)
    page.get_by_role("link", name="Case 1", exact=True).click()  # an example case, on the Review page
    page.wait_for_selector("text=Review a lesion", timeout=60_000)
    page.wait_for_selector("text=Triphasic model:", timeout=90_000)
    wait_settled(page)
    assert page.get_by_text("This model knows only categories A, B, D, E").count() >= 1
    assert page.get_by_text("carries no out-of-distribution statistics").count() >= 1  # untrained, no stats
