"""Browser timings of the app: `python benchmarks/bench_app.py [--repeats 7]`.

1. Time to first page: from `streamlit run` to the home page fully drawn in chromium
   (target <= 3 s, issue 16): in a browser that has never seen the app, and in one that has
   (a returning user: Streamlit's static files in its HTTP cache, from an earlier server).
   Beside it, in the same run and interleaved with it, Streamlit's own floor: the same times for
   a bare Streamlit page (a title and two headings, no livercore code); and the next user's
   first page: a new browser opening the home page of the server that is already running.
2. Lesion selection to prediction: from releasing the mouse after drawing a lesion box on the
   arterial viewer to the new crops, the five models' probabilities (the triphasic model's
   bars, the five-model agreement line) and the triphasic model's CAM all on screen (target:
   median <= 0.5 s, issue 16; every selection runs all five models, and the CAM and phase
   contributions of the model shown).
3. Click to prediction: the same in click mode ("Lesion: click its centre"), one click on the
   arterial viewer.
4. The compare page: from clicking its link to all five models' CAMs on screen.

Beside each latency: the server's own script-run time for it (LIVERCORE_RUN_TIMES), so that
what is left is the browser's. With --profile, where the time goes: the top functions of the
server's script runs during the selections (cProfile, LIVERCORE_PROFILE_DIR) and the browser's
main-thread time during the last selections by script (Chrome's sampling profiler).

Uses the models in $LIVERCORE_MODELS or models/ when there are any, else untrained ones (same
network, same cost). Writes benchmarks/results/app.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe, write_result  # noqa: E402  (benchmarks/machine.py, beside this script)

from tests.browser_harness import (  # noqa: E402  (the repository root must be on the path first)
    _CLICKABLE,
    CHROMIUM,
    COMPARE_IMAGES,
    LAUNCH_ARGS,
    NEW_PREDICTION,
    PREDICTION_IMAGES,
    click_point,
    crop_sources,
    draw_box,
    free_port,
    launch,
    start_server,
    stop_server,
    upload_dicom,
    wait_healthy,
    wait_settled,
)

TARGET_FIRST_PAGE_S = 3.0
VIEWPORT = {"width": 1500, "height": 1100}
TARGET_SELECTION_S = 0.5


def models_folder(tmp: Path) -> tuple[Path, str]:
    for candidate in (os.environ.get("LIVERCORE_MODELS"), str(ROOT / "models")):
        if candidate and any(Path(candidate).glob("*.pt")):
            return Path(candidate), f"installed models ({candidate})"
    from tests.browser_harness import write_untrained_models

    return write_untrained_models(tmp / "models"), "untrained models (same network and cost as trained ones)"


def _median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def server_runs(log: Path, starts: list[tuple[float, float]]) -> list[float]:
    """The wall ms of the review page's script runs that began within each (start, seconds)."""
    runs = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    out = []
    for t0, seconds in starts:
        mine = [
            float(ms)
            for page, start, ms in runs
            if page == "review" and t0 - 0.05 <= float(start) <= t0 + seconds
        ]
        out.append(sum(mine))
    return out


def server_profile_top(folder: Path, windows: list[tuple[int, float]], n: int = 15) -> list[dict[str, Any]]:
    """The n functions with the most cumulative time over the review page's profiled runs that
    began in one of the `windows` ((perf_counter_ns at the start, seconds): the selections).
    The files are named <page>-<perf_counter_ns>-<ms>.prof; the clock is the machine's
    monotonic one, the same in this process and the server."""
    import pstats

    def inside(f: Path) -> bool:
        start = int(f.name.split("-")[1])
        return any(t0 - 50_000_000 <= start <= t0 + seconds * 1e9 for t0, seconds in windows)

    files = sorted(str(f) for f in folder.glob("review-*.prof") if inside(f))
    if not files:
        return []
    stats = pstats.Stats(*files)
    rows = []
    for (file, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((cumulative, f"{Path(file).name}:{line}({name})"))
    rows.sort(reverse=True)
    return [
        {"function": where, "cumulative_ms_per_run": round(cum * 1000 / len(files), 1)}
        for cum, where in rows[:n]
    ]


def browser_buckets(profiles: list[dict[str, Any]]) -> dict[str, float]:
    """Chrome CPU profiles -> ms per selection by script (plotly's bundle, react-dom, ...),
    a sample counted under plotly whenever plotly's bundle is on its stack."""
    from collections import Counter

    total: Counter[str] = Counter()
    for prof in profiles:
        nodes = {n["id"]: n for n in prof["nodes"]}
        parent = {c: n["id"] for n in prof["nodes"] for c in n.get("children", [])}
        for sample, delta in zip(prof["samples"], prof["timeDeltas"], strict=True):
            scripts, node = [], sample
            while node is not None:
                url = nodes[node]["callFrame"]["url"].rsplit("/", 1)[-1].split(".")[0]
                if url:
                    scripts.append(url)
                node = parent.get(node)
            name = nodes[sample]["callFrame"]["functionName"]
            key = "plotly" if "PlotlyChart" in scripts else (scripts[0] if scripts else name)
            total[key] += delta / 1000
    return {k: round(v / len(profiles), 1) for k, v in total.most_common(10) if k != "(idle)"}


# Streamlit's floor: a page with the two headings open_home waits for and no livercore code.
BARE_PAGE = """import streamlit as st

st.set_page_config(page_title="livercore", layout="wide")
st.title("livercore")
st.subheader("Where to start")
st.subheader("Example cases")
"""


def open_home(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("text=Where to start", timeout=60_000)
    page.wait_for_selector("text=Example cases", timeout=60_000)
    wait_settled(page)


def first_page(page: Any, models: Path, port: int, script: str, cores: str | None) -> tuple[float, Any]:
    """(seconds from `streamlit run <script>` to its home page drawn in `page`, the server, still
    running: the caller stops it)."""
    start = time.perf_counter()
    server = start_server(models, port, script=script, cores=cores)
    try:
        wait_healthy(port, timeout_s=60, poll_s=0.05)  # the browser's retries would interrupt each other
        open_home(page, f"http://127.0.0.1:{port}")
    except BaseException:
        stop_server(server)
        raise
    return time.perf_counter() - start, server


def wait_idle(pid: int, *, quiet_s: float = 1.0, timeout_s: float = 60.0) -> None:
    """Wait until process `pid` has used less than 2 % of a CPU for `quiet_s` (the app's warm-up
    done: models loaded)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    deadline = time.perf_counter() + timeout_s
    last = cpu_s()
    while time.perf_counter() < deadline:
        time.sleep(quiet_s)
        now = cpu_s()
        if now - last < 0.02 * quiet_s:
            return
        last = now


def new_and_next_user(p: Any, models: Path, script: str, cores: str | None) -> tuple[float, float]:
    """(from `streamlit run <script>` to its home page drawn in a new browser; then, once that
    server is idle, from a second new browser opening its address to the home page drawn)."""
    first, second = launch(p), launch(p)
    try:
        port = free_port()
        seconds, server = first_page(first.new_page(viewport=VIEWPORT), models, port, script, cores)
        try:
            wait_idle(server.pid)
            t0 = time.perf_counter()
            open_home(second.new_page(viewport=VIEWPORT), f"http://127.0.0.1:{port}")
            return seconds, time.perf_counter() - t0
        finally:
            stop_server(server)
    finally:
        first.close()
        second.close()


def first_pages(
    p: Any, models: Path, scripts: dict[str, str], *, n: int, cores: str | None, tmp: Path
) -> dict[str, Any]:
    """Per script (label -> path), n times, interleaved so that both share the machine's moments:
    - "new_browser": from `streamlit run` to the home page drawn in a browser never used before;
    - "next_user": then, on that running server once it is idle (its models loaded), a second new
      browser from opening the address to the home page drawn (everyone after the first);
    - "returning_browser": from `streamlit run` to the home page drawn in a browser profile that
      opened the app before (from an earlier server): Streamlit's static files in its cache.
    Each list holds seconds; the browsers are started before the clock starts."""
    out: dict[str, dict[str, list[float]]] = {
        label: {"new_browser": [], "next_user": [], "returning_browser": []} for label in scripts
    }
    ports = {label: free_port() for label in scripts}  # a browser's cache keeps files per address
    with ExitStack() as stack:
        returning = {}  # a browser profile per script, open throughout
        for i, (label, script) in enumerate(scripts.items()):
            context = p.chromium.launch_persistent_context(
                str(tmp / f"profile-{i}"), executable_path=str(CHROMIUM), args=LAUNCH_ARGS, viewport=VIEWPORT
            )
            stack.callback(context.close)
            returning[label] = context.pages[0]
            _, server = first_page(returning[label], models, ports[label], script, cores)  # untimed
            stop_server(server)
            returning[label].goto("about:blank")
        for _ in range(n):
            for label, script in scripts.items():
                new, next_user = new_and_next_user(p, models, script, cores)
                out[label]["new_browser"].append(new)
                out[label]["next_user"].append(next_user)
                seconds, server = first_page(returning[label], models, ports[label], script, cores)
                stop_server(server)
                returning[label].goto("about:blank")
                out[label]["returning_browser"].append(seconds)
    return {
        label: {
            kind: {"median": round(statistics.median(values), 2), "all": [round(v, 2) for v in values]}
            for kind, values in kinds.items()
        }
        for label, kinds in out.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the app in chromium.")
    parser.add_argument("--repeats", type=int, default=7, help="lesion selections to time (default 7)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app.json"))
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on CPU 0, chromium (and this script) on CPU 1 (taskset): the server's own figures",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the server's runs and the browser (slower)"
    )
    parser.add_argument("--clicks", type=int, default=5, help="clicks to time in click mode (default 5)")
    parser.add_argument(
        "--first-pages", type=int, default=5, help="first pages to time of each kind (default 5)"
    )
    args = parser.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    if args.pin:
        os.sched_setaffinity(0, {1})  # chromium, started below, inherits it

    from playwright.sync_api import sync_playwright

    from livercore.phantom.cohort import generate_case
    from livercore.phantom.export import write_case
    from livercore.vocab import Phase

    tmp = Path(tempfile.mkdtemp(prefix="livercore-bench-"))
    models, models_note = models_folder(tmp)
    case = generate_case("test-2016", 0, 3)
    row = write_case(case, tmp / "case")
    files = sorted(tmp / "case" / str(row[p.value]) for p in Phase)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LIVERCORE_RUN_TIMES=str(tmp / "runs.log"))
    if args.profile:
        env["LIVERCORE_PROFILE_DIR"] = str(tmp / "profiles")
    profiles: list[dict[str, Any]] = []
    windows: list[tuple[int, float]] = []  # the box selections' (perf_counter_ns, seconds)

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        server = start_server(models, port, cores="0" if args.pin else None, env=env)
        try:
            wait_healthy(port, timeout_s=60, poll_s=0.05)
            page.goto(f"{url}/review")
            page.wait_for_selector("text=Review a lesion", timeout=60_000)
            upload_dicom(page, files)
            row_c, col_c = case.lesion_center[Phase.ARTERIAL]
            half = case.lesion_diameter_mm / case.spacing_mm / 2 * 1.1
            cdp = page.context.new_cdp_session(page)
            cdp.send("Profiler.enable")

            def timed(act: Any, profile: bool) -> tuple[float, float]:
                old = crop_sources(page) or [""]
                if profile:
                    cdp.send("Profiler.start")
                wall, t0, ns = time.time(), time.perf_counter(), time.perf_counter_ns()
                act()
                page.wait_for_function(
                    NEW_PREDICTION, arg=[old[0], PREDICTION_IMAGES], timeout=60_000, polling=10
                )
                seconds = time.perf_counter() - t0
                if profile:
                    profiles.append(cdp.send("Profiler.stop")["profile"])
                windows.append((ns, seconds))
                return wall, seconds

            timings, starts = [], []
            for i in range(args.repeats + 1):
                shift = (i % 4) * 2 - 3  # a slightly different box each time: new crops, no cache hit
                draw_box(page, 1, row_c + shift, col_c - shift, half + i % 3, release=False)
                wall, seconds = timed(page.mouse.up, args.profile and i > args.repeats - 3)
                timings.append(seconds)
                starts.append((wall, seconds))
            first_selection_s, selections = timings[0], timings[1:]
            selection_server_ms = server_runs(tmp / "runs.log", starts[1:])
            selection_windows = windows[1:]

            page.get_by_text("Lesion: click its centre").click()
            page.wait_for_function(_CLICKABLE, timeout=30_000)
            wait_settled(page)
            clicks, click_starts = [], []
            for i in range(args.clicks):
                shift = ((i % 4) * 2 - 3) * 6  # another centre each time: new crops, no cache hit
                wall, seconds = timed(partial(click_point, page, 1, row_c + shift, col_c - shift), False)
                clicks.append(seconds)
                click_starts.append((wall, seconds))
            click_server_ms = server_runs(tmp / "runs.log", click_starts)

            t0 = time.perf_counter()
            page.get_by_role("link", name="Compare all five phase-models on this lesion").click()
            page.wait_for_selector("text=Where each model looks", timeout=60_000)
            wait_settled(page, COMPARE_IMAGES)
            compare_s = time.perf_counter() - t0
        finally:
            stop_server(server)
            browser.close()
        bare = tmp / "bare_page.py"
        bare.write_text(BARE_PAGE)
        pages = first_pages(
            p,
            models,
            {"livercore": "streamlit_app.py", "bare_streamlit_page": str(bare)},
            n=args.first_pages,
            cores="0" if args.pin else None,
            tmp=tmp,
        )
    first_page_s = pages["livercore"]["new_browser"]["median"]

    result = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(load_average_before=load_before),
        "pinned": "server on CPU 0, chromium and this script on CPU 1" if args.pin else None,
        "browser": "Debian chromium, headless, --disable-gpu",
        "models": models_note,
        "time_to_first_page_s": first_page_s,
        "time_to_first_page_returning_browser_s": pages["livercore"]["returning_browser"]["median"],
        "time_to_first_page_target_s": TARGET_FIRST_PAGE_S,
        "first_pages_s": pages,
        "first_pages_note": "from `streamlit run` to the home page drawn (new_browser, returning_browser), "
        "or from opening the address of the running server in a new browser (next_user); medians of "
        f"{args.first_pages}, the two scripts interleaved; bare_streamlit_page: Streamlit's own floor "
        "on this machine (a title and two headings, no livercore code)",
        "selection_to_prediction_s": {
            "median": round(statistics.median(selections), 3),
            "max": round(max(selections), 3),
            "all": [round(t, 3) for t in selections],
            "first_after_upload": round(first_selection_s, 3),
            "server_run_ms_median": _median_ms(selection_server_ms),
        },
        "click_to_prediction_s": {
            "median": round(statistics.median(clicks), 3) if clicks else None,
            "all": [round(t, 3) for t in clicks],
            "server_run_ms_median": _median_ms(click_server_ms),
        },
        "selection_to_prediction_target_s": TARGET_SELECTION_S,
        "compare_page_s": round(compare_s, 2),
        **(
            {
                "profile": {
                    "server_top_cumulative_during_selections": server_profile_top(
                        tmp / "profiles", selection_windows
                    ),
                    "browser_main_thread_ms_per_selection": browser_buckets(profiles),
                    "note": "under the profilers (both slow their side down); the latencies above are "
                    "measured with them on only when --profile is given",
                }
            }
            if args.profile
            else {}
        ),
        "meets_targets": first_page_s <= TARGET_FIRST_PAGE_S
        and statistics.median(selections) <= TARGET_SELECTION_S,
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
