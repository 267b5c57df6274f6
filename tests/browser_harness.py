"""The browser harness shared by the browser tests and the app benchmarks: `streamlit run` on a
free port, Debian's chromium through Playwright, the page predicates, untrained model files and
a phantom case written as DICOM. Not a test module: nothing here is collected."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from livercore.vocab import PHASE_MODELS

CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium: the browser tests never download one

ROOT = Path(__file__).resolve().parents[1]
PREDICTION_IMAGES = 5  # review page: 3 network-input crops, the model's one CAM, the CAM colour bar
COMPARE_IMAGES = 6  # compare page: one CAM per model, the colour bar
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The lesion viewers' SVGs (livercore/app/viewer.js) inside their components' shadow roots, in page order.
_VIEWERS = """Array.from(document.querySelectorAll('[data-testid=stBidiComponentIsolated]'))
  .map(h => h.shadowRoot && h.shadowRoot.querySelector('svg.lc-viewer')).filter(Boolean)"""
# Page coordinates (x, y) of a data point (x = column, y = row) of the idx-th viewer.
_DATA_TO_PAGE = f"""([idx, x, y]) => {{
  const m = {_VIEWERS}[idx].getScreenCTM();
  return [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f];
}}"""
# The same for the idx-th plotly chart (the cohort builder's viewer).
_PLOTLY_DATA_TO_PAGE = """([idx, x, y]) => {
  const gd = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[idx];
  const fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return [r.left + fl.xaxis._offset + fl.xaxis.l2p(x), r.top + fl.yaxis._offset + fl.yaxis.l2p(y)];
}"""
# True once the three viewers are drawn, each with its image loaded.
VIEWERS_READY = f"""() => {{
  const svgs = {_VIEWERS};
  return svgs.length >= 3 && svgs.slice(0, 3).every(s => !!s.querySelector('image').getAttribute('href'));
}}"""
# True once the viewers mark a point where they are clicked (click mode).
_CLICKABLE = f"""() => {{ const svgs = {_VIEWERS};
  return svgs.length >= 3 && svgs.slice(0, 3).every(s => s.dataset.mode === 'click'); }}"""
# The marks drawn on the idx-th viewer: its lesion box [x, y, width, height] and ROI circles.
VIEWER_MARKS = f"""(idx) => {{
  const svg = {_VIEWERS}[idx], rect = svg.querySelector('rect.lesion');
  const circle = (k) => {{ const c = svg.querySelector('circle.' + k); return c ? [+c.getAttribute('cx'), +c.getAttribute('cy')] : null; }};
  return {{box: rect ? ['x', 'y', 'width', 'height'].map(a => +rect.getAttribute(a)) : null,
          liver: circle('liver'), aorta: circle('aorta')}};
}}"""
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
# The phases of the contribution bars (figures.contribution_bars_html), in page order.
_CONTRIBUTION_BARS = """() => Array.from(document.querySelectorAll('[role=list][aria-label^="Points of P("] [data-phase]'))
  .map(row => row.dataset.phase)"""
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
    cores: str | None = None,
) -> subprocess.Popen[bytes]:
    """`streamlit run <script>` in `cwd` on `port`, with LIVERCORE_MODELS=models_dir when given;
    its output goes to `log` when given, else nowhere; pinned to `cores` (taskset's list, e.g.
    "0") when given."""
    env = dict(os.environ if env is None else env)
    if models_dir is not None:
        env["LIVERCORE_MODELS"] = str(models_dir)
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true"]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
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


def wait_healthy(port: int, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(poll_s)
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
    page.wait_for_function(VIEWERS_READY, timeout=60_000)
    wait_settled(page)


# True once the k-th file uploader lists the series (its upload went to that widget).
_LISTS_THE_SERIES = """([k, name]) => {
  const u = document.querySelectorAll('[data-testid=stFileUploader]')[k];
  return !!u && u.innerText.includes(name);
}"""


def upload_series_as_every_phase(page: Any, files: list[Path]) -> None:
    """On the review page: choose 'A DICOM series per phase' and upload `files` as the series
    of each phase in turn, each upload listed before the next; then wait for the viewers."""
    page.get_by_text("A DICOM series per phase").click()
    page.wait_for_selector(
        "[data-testid=stFileUploaderDropzoneInput] >> nth=2", state="attached", timeout=60_000
    )
    for k in range(3):
        page.locator("[data-testid=stFileUploaderDropzoneInput]").nth(k).set_input_files(
            [str(f) for f in files]
        )
        page.wait_for_function(_LISTS_THE_SERIES, arg=[k, files[0].name], timeout=60_000)
        wait_settled(page)
    page.wait_for_function(VIEWERS_READY, timeout=90_000)
    wait_settled(page)


def _scroll_to(page: Any, chart: int, plotly: bool) -> None:
    """Scroll the chart-th lesion viewer (or plotly chart) to the middle of the window: mouse
    events need it on screen."""
    if plotly:
        page.evaluate(
            "(i) => document.querySelectorAll('[data-testid=stPlotlyChart]')[i].scrollIntoView({block: 'center'})",
            chart,
        )
        return
    page.wait_for_function(VIEWERS_READY, timeout=60_000)
    page.evaluate(f"(i) => {_VIEWERS}[i].scrollIntoView({{block: 'center'}})", chart)


def draw_box(
    page: Any, chart: int, row: float, col: float, half: float, *, release: bool = True, plotly: bool = False
) -> None:
    """Drag a box of side 2 * half pixels around (row, col) on the chart-th lesion viewer (or,
    with `plotly`, the chart-th plotly chart: the cohort builder's viewer)."""
    _scroll_to(page, chart, plotly)
    to_page = _PLOTLY_DATA_TO_PAGE if plotly else _DATA_TO_PAGE
    x0, y0 = page.evaluate(to_page, [chart, col - half, row - half])
    x1, y1 = page.evaluate(to_page, [chart, col + half, row + half])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    if release:
        page.mouse.up()


def click_point(page: Any, chart: int, row: float, col: float, *, plotly: bool = False) -> None:
    """Click (row, col) on the chart-th lesion viewer (or plotly chart)."""
    _scroll_to(page, chart, plotly)
    x, y = page.evaluate(_PLOTLY_DATA_TO_PAGE if plotly else _DATA_TO_PAGE, [chart, col, row])
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


def write_untrained_models(folder: Path) -> Path:
    """The five phase-models, untrained (seeded), with cards inside and beside the weights, and
    the shipped study linked beside them (the results page shows the study of the models in
    use; here a stand-in, so its pages can be driven)."""
    import torch

    from livercore.model import LiverNet, save_model

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "study").exists():
        (folder / "study").symlink_to(ROOT / "models" / "study", target_is_directory=True)
    for i, (name, pm) in enumerate(PHASE_MODELS.items()):
        torch.manual_seed(i)
        card = {
            "model": name,
            "phases": [p.value for p in pm.phases],
            "trained_on": "nothing (untrained test model)",
            "date": "2026-01-01T00:00:00+00:00",
            "device": "cpu",
            "test_accuracy": 0.2,
            "train_accuracy": 0.2,
            "test_auc_clinical": 0.5,
            "code_version": "test",
        }
        save_model(folder / f"{name}.pt", LiverNet(pm.in_channels), phase_model_name=name, card=card)
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder
