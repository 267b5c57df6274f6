"""The teaching platform in a real browser (Debian's chromium driven by Playwright): two app
servers on two ports share one store (PostgreSQL under .ci/run, else one SQLite file), learners
identified by a trusted proxy header (LIVERCORE_TRUSTED_USER_HEADER, as behind oauth2-proxy).

A resident answers ten questions on one server (findings, confidence, and one case phase by
phase), closes the browser, comes back on the other server and finds their history and their
due queue; a second resident finds none of it; the educator sees the group view, a resident
does not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_harness import (
    free_port,
    launch,
    start_server,
    stop_server,
    wait_healthy,
    wait_settled,
    write_untrained_models,
)
from tests.test_store import POSTGRES_VARIABLE, _postgres_url

pytestmark = pytest.mark.browser
HEADER = "X-Forwarded-User"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL schema when .ci/run provides PostgreSQL, else an SQLite file."""
    if os.environ.get(POSTGRES_VARIABLE):
        yield from _postgres_url()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'livercore.sqlite'}"


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, database: str, playwright_api: Any
) -> Iterator[list[str]]:
    """Two `streamlit run` processes on two ports, one database."""
    models = write_untrained_models(tmp_path_factory.mktemp("models"))
    env = dict(
        os.environ,
        LIVERCORE_DATABASE_URL=database,
        LIVERCORE_TRUSTED_USER_HEADER=HEADER,
        LIVERCORE_EDUCATORS="teacher",
    )
    ports = [free_port(), free_port()]
    running = [start_server(models, p, env=env) for p in ports]
    try:
        for p in ports:
            wait_healthy(p)
        yield [f"http://127.0.0.1:{p}" for p in ports]
    finally:
        for s in running:
            stop_server(s)


def as_user(playwright_api: Any, user: str) -> tuple[Any, Any]:
    """A fresh browser whose every request carries the proxy's user header."""
    browser = launch(playwright_api)
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, extra_http_headers={HEADER: user})
    return browser, context.new_page()


def radio(page: Any, text: str) -> None:
    page.locator("[data-testid=stRadio]").get_by_text(text, exact=True).click()
    wait_settled(page)


def answer_with_findings(page: Any) -> None:
    page.wait_for_selector("text=What do you see?", timeout=60_000)
    page.locator("[data-testid=stCheckbox]").first.click()
    radio(page, "A classic HCC")
    radio(page, "sure")
    page.get_by_role("button", name="Check my answer").click()
    page.wait_for_selector("text=This case comes back", timeout=60_000)
    assert page.get_by_text("Your findings").count() == 1
    wait_settled(page)


def next_question(page: Any) -> None:
    page.get_by_role("button", name="Next case").click()
    page.wait_for_selector("text=Check my answer", timeout=60_000)
    wait_settled(page)


def metric(page: Any, label: str) -> str:
    box = page.locator("[data-testid=stMetric]", has_text=label).first
    return box.locator("[data-testid=stMetricValue]").inner_text().strip()


def test_a_residents_record_lasts_across_browsers_and_servers(
    playwright_api: Any, servers: list[str]
) -> None:
    first, second = servers
    browser, page = as_user(playwright_api, "resident1")
    page.goto(f"{first}/quiz")
    page.wait_for_selector("text=resident1", timeout=60_000)
    wait_settled(page)
    assert page.get_by_text("identified by the hospital's proxy").count() == 1
    for n in range(9):
        answer_with_findings(page)
        next_question(page)
        assert metric(page, "Answers kept") == str(n + 1)
    radio(page, "Step through the phases")  # the tenth: unenhanced, then arterial, then delayed
    page.wait_for_selector("text=After the unenhanced phase, the likely category", timeout=60_000)
    for then in ("arterial", "delayed"):
        radio(page, "C indeterminate or rare benign")
        page.get_by_role("button", name="Show the next phase").click()
        page.wait_for_selector(f"text=After the {then} phase, the likely category", timeout=60_000)
        wait_settled(page)
    radio(page, "A classic HCC")
    page.get_by_role("button", name="Check my answer").click()
    page.wait_for_selector("text=Phase by phase", timeout=60_000)
    browser.close()

    browser, page = as_user(playwright_api, "resident1")  # back, on the other server
    page.goto(f"{second}/progress")
    page.wait_for_selector("text=When each case comes back", timeout=60_000)
    wait_settled(page)
    assert metric(page, "Answers") == "10"
    assert page.get_by_role("tab", name="Group (educators)").count() == 0  # a resident has no group view
    assert int(metric(page, "Due for review now")) >= 0  # the due queue, and the cards' table below it
    page.get_by_role("button", name="Your attempts (CSV)").wait_for(timeout=60_000)
    page.goto(f"{second}/quiz")
    page.wait_for_selector("text=Due for review now", timeout=60_000)
    wait_settled(page)
    assert metric(page, "Answers kept") == "10"
    browser.close()

    browser, page = as_user(playwright_api, "resident2")
    page.goto(f"{second}/progress")
    page.wait_for_selector("text=No answers yet", timeout=60_000)
    browser.close()

    browser, page = as_user(playwright_api, "teacher")
    page.goto(f"{first}/progress")
    page.wait_for_selector("text=educator", timeout=60_000)
    wait_settled(page)
    page.get_by_role("tab", name="Group (educators)").click()
    page.wait_for_selector("text=Weakest categories first", timeout=60_000)
    assert page.get_by_text("1 learners, 10 answers").count() == 1
    browser.close()
