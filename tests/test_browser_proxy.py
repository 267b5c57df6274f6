"""Two app processes behind Debian's nginx with sticky sessions (docs/deploy.md, section 5).

Browsers (separate contexts: separate cookies, one address) open the review page through the
proxy until each process holds two sessions (the route of a new browser is random: 16 at most,
so a miss has odds of 1 in 10,000); their sessions spread over both processes, every request of a session reaches the
process that holds it (the WebSocket and the upload of the same browser), and a browser that
uploads a case through the proxy gets its prediction. .ci/run installs nginx; elsewhere the test
skips when nginx is missing.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests import proxy_harness
from tests.browser_harness import (
    CHROMIUM,
    free_port,
    launch,
    phantom_dicom,
    start_server,
    stop_server,
    upload_dicom,
    wait_healthy,
    wait_settled,
    write_untrained_models,
)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")

MAX_BROWSERS = 16


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory):
    if not proxy_harness.available():
        if os.environ.get("LIVERCORE_CI"):
            pytest.fail("nginx is missing: .ci/run installs it")
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("proxy")
    models = write_untrained_models(tmp / "models")
    ports = [free_port(), free_port()]
    servers = [start_server(models, p) for p in ports]
    try:
        for p in ports:
            wait_healthy(p)
        port = free_port()
        nginx = proxy_harness.start_nginx(tmp / "nginx", port, ports)
        try:
            yield f"http://127.0.0.1:{port}", tmp / "nginx", ports, tmp
        finally:
            proxy_harness.stop_nginx(nginx)
    finally:
        for s in servers:
            stop_server(s)


def test_sessions_spread_over_both_processes_and_stay_with_theirs(proxied) -> None:
    from playwright.sync_api import sync_playwright

    url, prefix, ports, tmp = proxied
    files, _ = phantom_dicom(tmp / "case")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            contexts, cookies = [], []
            while len(contexts) < MAX_BROWSERS:
                context = browser.new_context(viewport={"width": 1500, "height": 1100})
                page = context.new_page()
                page.goto(f"{url}/review", timeout=60_000)
                page.wait_for_selector("text=Review a lesion", timeout=90_000)
                wait_settled(page)
                contexts.append(context)
                cookies.append(
                    next(c["value"] for c in context.cookies() if c["name"] == proxy_harness.ROUTE_COOKIE)
                )
                streams = proxy_harness.routes_by_process(prefix)
                per_process = Counter(next(iter(streams[k])) for k in cookies if k in streams)
                if len(per_process) == 2 and min(per_process.values()) >= 2:
                    break
            upload_dicom(contexts[0].pages[0], files)  # an HTTP upload, then the rerun over the WebSocket
        finally:
            browser.close()
    streams = proxy_harness.routes_by_process(prefix)
    uploads = proxy_harness.routes_by_process(prefix, "/_stcore/upload_file")
    assert len(set(cookies)) == len(cookies)  # one route per browser
    assert set(cookies) <= set(streams)  # every browser's WebSocket went through the proxy
    for key in cookies:
        assert len(streams[key]) == 1, streams[key]  # sticky: one process per session
    used = Counter(next(iter(streams[key])) for key in cookies)
    assert set(used) == {f"127.0.0.1:{p}" for p in ports}, used  # spread over both processes
    assert uploads[cookies[0]] == streams[cookies[0]]  # the upload reached the session's process
