"""The app in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

Skipped cleanly when /usr/bin/chromium or the playwright package is missing. The helpers here
are shared with benchmarks/bench_app.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
PREDICTION_IMAGES = 5  # review page: 3 network-input crops, the model's one CAM, the CAM colour bar
COMPARE_IMAGES = 6  # compare page: one CAM per model, the colour bar
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Page coordinates (x, y) of a data point (x = column, y = row) of the idx-th plotly chart.
_DATA_TO_PAGE = """([idx, x, y]) => {
  const gd = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[idx];
  const fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return [r.left + fl.xaxis._offset + fl.xaxis.l2p(x), r.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}"""
# True once the viewers carry the clickable grid (click mode).
_CLICKABLE = """() => Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'))
  .slice(0, 3).every(gd => gd.data && gd.data.length === 2 && gd._fullLayout.clickmode === 'event+select')"""
# True once new crops are on the page (the first image's source differs from `old`), at least n
# images have loaded, the triphasic model's headline is there and the script run is over.
NEW_PREDICTION = """([old, n]) => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const imgs = Array.from(document.querySelectorAll('[data-testid=stImage] img'));
  if (imgs.length < n || !imgs.every(i => i.complete && i.naturalWidth > 0)) return false;
  if (!document.body.innerText.includes('Triphasic model:')) return false;
  return imgs[0].src !== old;
}"""
# The phases (y labels) of the bar charts whose x axis reads "points of P(...)": the contributions.
_CONTRIBUTION_BARS = """() => Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'))
  .filter(gd => ((gd._fullLayout.xaxis.title || {}).text || '').startsWith('points of P('))
  .flatMap(gd => gd.data[0].y)"""
# True once the script has finished and at least n images are on the page, all loaded.
_SETTLED = """(n) => {
  const app = document.querySelector('[data-testid=stApp]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const imgs = Array.from(document.querySelectorAll('[data-testid=stImage] img'));
  return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    models_dir: Path | None,
    port: int,
    *,
    script: str = "streamlit_app.py",
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`streamlit run <script>` in `cwd` on `port`, with LIVERCORE_MODELS=models_dir when given;
    its output goes to `log` when given, else nowhere."""
    env = dict(os.environ if env is None else env)
    if models_dir is not None:
        env["LIVERCORE_MODELS"] = str(models_dir)
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    if log is None:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    with log.open("wb") as sink:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Terminate a server started by start_server; kill it if it does not stop in 20 s."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def wait_healthy(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout_s} s")


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)


def wait_settled(page: Any, min_images: int = 0, timeout_ms: float = 60_000) -> None:
    """Wait until the script run is over and at least min_images images have loaded."""
    page.wait_for_function(_SETTLED, arg=min_images, timeout=timeout_ms, polling=25)


def upload_dicom(page: Any, files: list[Path]) -> None:
    """On the review page: choose 'Three DICOM slices' and upload `files`."""
    page.get_by_text("Three DICOM slices").click()
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files([str(f) for f in files])
    page.wait_for_selector("text=Uploaded DICOM slices", timeout=60_000)
    page.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot >> nth=2", timeout=60_000)
    wait_settled(page)


def show_chart(page: Any, chart: int) -> None:
    """Scroll the chart-th plotly chart to the middle of the window (mouse events need it on screen)."""
    page.evaluate(
        "(i) => document.querySelectorAll('[data-testid=stPlotlyChart]')[i].scrollIntoView({block: 'center'})",
        chart,
    )


def draw_box(page: Any, chart: int, row: float, col: float, half: float, *, release: bool = True) -> None:
    """Drag a box selection of side 2 * half pixels around (row, col) on the chart-th viewer."""
    show_chart(page, chart)
    x0, y0 = page.evaluate(_DATA_TO_PAGE, [chart, col - half, row - half])
    x1, y1 = page.evaluate(_DATA_TO_PAGE, [chart, col + half, row + half])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    if release:
        page.mouse.up()


def click_point(page: Any, chart: int, row: float, col: float) -> None:
    show_chart(page, chart)
    x, y = page.evaluate(_DATA_TO_PAGE, [chart, col, row])
    page.mouse.click(x, y)


def crop_sources(page: Any) -> list[str]:
    return page.eval_on_selector_all("[data-testid=stImage] img", "imgs => imgs.map(i => i.src)")


def full_page_screenshot(page: Any, path: Path, width: int = 1500) -> None:
    """Streamlit scrolls inside its main block: grow the viewport to the content, then shoot."""
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(int(height) + 40, 8000)})
    time.sleep(0.8)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1100})


@contextlib.contextmanager
def running_app(models_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """(url, process) of `streamlit run streamlit_app.py` on `models_dir`, stopped afterwards."""
    port = free_port()
    server = start_server(models_dir, port)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}", server
    finally:
        stop_server(server)


def phantom_dicom(out: Path) -> tuple[list[Path], Any]:
    """Case 3 of test-2016 written as three DICOM files in `out`: (paths U, A, D; the case)."""
    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case

    case = generate_case("test-2016", 0, 3)
    row = write_case(case, out)
    return [out / str(row[p]) for p in ("unenhanced", "arterial", "delayed")], case


# --- fixtures and tests --------------------------------------------------------------------------

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[str]:
    from tests.test_app import write_untrained_models

    with running_app(write_untrained_models(tmp_path_factory.mktemp("models"))) as (url, _):
        yield url


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Any]:
    files, case = phantom_dicom(tmp_path_factory.mktemp("phantom"))
    return sorted(files), case


@pytest.fixture()
def page(playwright_api: Any) -> Iterator[Any]:
    browser = launch(playwright_api)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    yield page
    browser.close()


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
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_label(label, exact=False).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_settled(page)


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
