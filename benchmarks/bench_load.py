"""Load benchmark: many radiologists on one server. `python benchmarks/bench_load.py [--sessions 10]`.

One `streamlit run` server, one headless chromium, one browser context per simulated user
(10 by default, each its own Streamlit session). Every user, for a few rounds:

1. opens the review page in a new tab ("page open -> first render": until the page title is on
   screen and the script run is over),
2. uploads the three phases of its own phantom case as DICOM files (a different case per user:
   no user profits from another's cache),
3. draws a lesion box on the arterial viewer, several times (a slightly different box each
   time, so every selection runs the five models and the shown Grad-CAM afresh: "selection ->
   predictions on screen": from releasing the mouse to the new crops, the probabilities and
   the CAMs all drawn).

All users start together (staggered by --stagger-s), so up to N analyses queue on the
server's inference lock at once. While they run, the resident memory (RSS) of the streamlit
process and its children is sampled from /proc. The figures (p50/p95 of both latencies, peak
RSS, the machine's load) go to benchmarks/results/load.json and stdout.

The browser runs on the same machine as the server: on a small machine chromium's rendering
competes with the server for the CPUs, so the latencies are an upper bound for the server.
On this 2-core machine one chromium core saturates before the server's does: for what one
server core carries, see benchmarks/bench_capacity.py (residents without browsers).
Runtime is bounded: no new round starts after --budget-s, every wait has a timeout, and the
sessions still running at --budget-s + 60 s are cancelled (reported as errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402  (benchmarks/machine.py, beside this script)

from tests.browser_harness import (  # noqa: E402  (the repository root must be on the path first)
    _DATA_TO_PAGE,
    _SETTLED,
    _VIEWERS,
    CHROMIUM,
    LAUNCH_ARGS,
    NEW_PREDICTION,
    PREDICTION_IMAGES,
    VIEWERS_READY,
    free_port,
    start_server,
    stop_server,
    wait_healthy,
)

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

VIEWPORT: ViewportSize = {"width": 1500, "height": 1100}
POLL_MS = 25  # the wait predicates run every 25 ms: latencies are quantised to about that
WAIT_MS = 120_000  # any single wait (page, upload, prediction)
ARTERIAL_CHART = 1  # the review page's viewers: unenhanced, arterial, delayed


# --- server memory -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/<pid>/task/*/children (empty when unreadable)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        p = todo.pop()
        if p not in out:
            out.append(p)
            todo += _children(p)
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of `pid` and all its descendants, in bytes (0 when gone)."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError):
            continue
    return total


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def machine_busy_s() -> float:
    """CPU seconds all CPUs of the machine have spent busy since boot (/proc/stat)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples the summed tree_rss_bytes of `pids` every `interval_s` in a daemon thread; keeps the peak."""

    def __init__(self, pids: list[int], interval_s: float = 0.2) -> None:
        self.pids, self.interval_s = pids, interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.samples) < 100_000:
            self.samples.append((time.monotonic() - self._t0, sum(tree_rss_bytes(p) for p in self.pids)))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


# --- one simulated user ----------------------------------------------------------------------------


@dataclass
class Phantom:
    files: list[Path]  # unenhanced, arterial, delayed
    row: float  # lesion centre on the arterial slice (pixels)
    col: float
    half: float  # half the side of the box to draw (pixels)


@dataclass
class SessionLog:
    open_s: list[float] = field(default_factory=list)
    upload_s: list[float] = field(default_factory=list)
    selection_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _draw_box(page: Any, chart: int, row: float, col: float, half: float) -> None:
    """Drag a box selection around (row, col) on the chart-th viewer; the mouse stays down."""
    await page.wait_for_function(VIEWERS_READY, timeout=WAIT_MS)
    await page.evaluate(f"(i) => {_VIEWERS}[i].scrollIntoView({{block: 'center'}})", chart)
    x0, y0 = await page.evaluate(_DATA_TO_PAGE, [chart, col - half, row - half])
    x1, y1 = await page.evaluate(_DATA_TO_PAGE, [chart, col + half, row + half])
    await page.mouse.move(x0, y0)
    await page.mouse.down()
    await page.mouse.move(x1, y1, steps=8)


async def _first_image_src(page: Any) -> str:
    srcs = await page.eval_on_selector_all("[data-testid=stImage] img", "imgs => imgs.map(i => i.src)")
    return str(srcs[0]) if srcs else ""


async def run_user(
    log: SessionLog,
    user: int,
    browser: Any,
    url: str,
    case: Phantom,
    *,
    rounds: int,
    selections: int,
    start_delay_s: float,
    deadline: float,
) -> None:
    await asyncio.sleep(start_delay_s)
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        for r in range(rounds):
            if time.monotonic() > deadline:
                break
            page = await context.new_page()
            try:
                t0 = time.perf_counter()
                await page.goto(f"{url}/review", timeout=WAIT_MS)
                await page.wait_for_selector("text=Review a lesion", timeout=WAIT_MS)
                await page.wait_for_function(_SETTLED, arg=0, timeout=WAIT_MS, polling=POLL_MS)
                log.open_s.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                await page.get_by_text("Three DICOM slices").click()
                await page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
                    [str(f) for f in case.files]
                )
                await page.wait_for_selector("text=Uploaded DICOM slices", timeout=WAIT_MS)
                await page.wait_for_function(VIEWERS_READY, timeout=WAIT_MS, polling=POLL_MS)
                await page.wait_for_function(_SETTLED, arg=0, timeout=WAIT_MS, polling=POLL_MS)
                log.upload_s.append(time.perf_counter() - t0)

                for s in range(selections):
                    # A different box every time (and per round): the analysis cache never hits.
                    k = r * selections + s
                    d_row, d_col = k % 5 - 2, (k // 5) % 5 - 2
                    old = await _first_image_src(page)
                    await _draw_box(
                        page, ARTERIAL_CHART, case.row + d_row, case.col + d_col, case.half + k % 3
                    )
                    t0 = time.perf_counter()
                    await page.mouse.up()
                    await page.wait_for_function(
                        NEW_PREDICTION, arg=[old, PREDICTION_IMAGES], timeout=WAIT_MS, polling=POLL_MS
                    )
                    log.selection_s.append(time.perf_counter() - t0)
            except Exception as err:  # one user's failure is reported, not fatal to the others
                log.errors.append(f"user {user} round {r}: {type(err).__name__}: {str(err)[:200]}")
            finally:
                await page.close()
    finally:
        await context.close()


# --- the run ---------------------------------------------------------------------------------------


def phantom_cases(out: Path, n: int) -> list[Phantom]:
    """n phantom cases whose arterial lesion lies in the viewer's initial 2x field (the centre
    half of the image), at least 12 mm across; exported as DICOM by the package's exporter."""
    from livercore.phantom.export import export_cohort

    manifest = export_cohort("bench-load", out, seed=7, size=max(3 * n, 12), workers=1)
    cases = []
    for _, m in manifest.iterrows():
        half = float(m.lesion_diameter_mm) / float(m.pixel_spacing_mm) / 2 * 1.1
        row, col = float(m.lesion_row_arterial), float(m.lesion_col_arterial)
        lo, hi = 128 + 12, 384 - 12  # 512 x 512 slices at zoom 2: rows/cols 128-384 on screen
        if (
            m.lesion_diameter_mm >= 12
            and lo < row - half
            and row + half < hi
            and lo < col - half < col + half < hi
        ):
            files = [out / str(m[p]) for p in ("unenhanced", "arterial", "delayed")]
            cases.append(Phantom(files, row, col, half))
    if not cases:
        raise RuntimeError("no phantom case with its lesion in the viewer's centre")
    return [cases[i % len(cases)] for i in range(n)]


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {
        "n": len(values),
        "p50": round(q[49], 3),
        "p95": round(q[94], 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def models_folder(tmp: Path) -> tuple[Path, str]:
    for candidate in (os.environ.get("LIVERCORE_MODELS"), str(ROOT / "models")):
        if candidate and any(Path(candidate).glob("*.pt")):
            return Path(candidate), f"installed models ({candidate})"
    from tests.browser_harness import write_untrained_models

    return write_untrained_models(tmp / "models"), "untrained models (same network and cost as trained ones)"


async def load_test(
    args: argparse.Namespace,
    url: str,
    cases: list[Phantom],
    server_pids: list[int],
    memo: dict[str, float],
    warm_urls: list[str],
) -> list[SessionLog]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            # Warm-up, untimed: the models loaded and grad-cam imported (an example case's link).
            for warm_url in warm_urls:  # each process directly, not through the proxy
                page = await browser.new_page(viewport=VIEWPORT)
                await page.goto(f"{warm_url}/review?case=teaching-0-0026", timeout=WAIT_MS)
                await page.wait_for_selector("text=Triphasic model:", timeout=WAIT_MS)
                await page.close()
            memo["warm_cpu_s"] = sum(tree_cpu_s(pid) for pid in server_pids)  # the load's CPU from here
            memo["warm_busy_s"] = machine_busy_s()
            memo["warm_t"] = time.monotonic()
            memo["warm_epoch"] = time.time()
            memo["warm_rss"] = sum(tree_rss_bytes(pid) for pid in server_pids)
            deadline = time.monotonic() + args.budget_s
            logs = [SessionLog() for _ in range(args.sessions)]
            users = [
                asyncio.ensure_future(
                    run_user(
                        logs[i],
                        i,
                        browser,
                        url,
                        cases[i],
                        rounds=args.rounds,
                        selections=args.selections,
                        start_delay_s=i * args.stagger_s,
                        deadline=deadline,
                    )
                )
                for i in range(args.sessions)
            ]
            _, late = await asyncio.wait(users, timeout=args.budget_s + 60)
            for task in late:  # past the hard limit: keep what was measured, report the rest
                task.cancel()
                logs[users.index(task)].errors.append(
                    f"user {users.index(task)}: cancelled at the time limit"
                )
            await asyncio.gather(*late, return_exceptions=True)
            return logs
        finally:
            await browser.close()


def run_level(args: argparse.Namespace, sessions: int, processes: int, tmp: Path) -> dict[str, Any]:
    """One load level: `sessions` users against `processes` app processes (behind nginx when
    more than one), pinned as --pin says; the figures of that run."""
    from tests import proxy_harness

    models, models_note = models_folder(tmp)
    cases = phantom_cases(tmp / f"cases-{sessions}", sessions)
    level_args = argparse.Namespace(**{**vars(args), "sessions": sessions})
    server_cores = "0" if args.pin else None
    ports = [free_port() for _ in range(processes)]
    load_before = uptime()
    env = dict(os.environ)
    run_times = tmp / f"run-times-{sessions}-{processes}.log"
    env["LIVERCORE_RUN_TIMES"] = str(run_times)  # the server's own share of every script run
    if (
        args.pin
    ):  # one core: one thread per math library, as docs/deploy.md says (processes x threads <= cores)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    servers = [start_server(models, port, cores=server_cores, env=env) for port in ports]
    nginx = None
    try:
        for port in ports:
            wait_healthy(port)
        url = f"http://127.0.0.1:{ports[0]}"
        if processes > 1:
            proxy_port = free_port()
            nginx = proxy_harness.start_nginx(
                tmp / f"nginx-{sessions}", proxy_port, ports, cores=server_cores
            )
            url = f"http://127.0.0.1:{proxy_port}"
        pids = [s.pid for s in servers]
        idle_rss = sum(tree_rss_bytes(pid) for pid in pids)
        memo: dict[str, float] = {}
        with RssSampler(pids) as sampler:
            warm_urls = [f"http://127.0.0.1:{port}" for port in ports]
            logs = asyncio.run(load_test(level_args, url, cases, pids, memo, warm_urls))
            load_wall_s = time.monotonic() - memo["warm_t"]  # after the warm-up: the users' load alone
            server_cpu_s = sum(tree_cpu_s(pid) for pid in pids) - memo["warm_cpu_s"]
            busy_s = machine_busy_s() - memo["warm_busy_s"]
            load_during = uptime()
        routes = proxy_harness.routes_by_process(tmp / f"nginx-{sessions}") if nginx else {}
    finally:
        if nginx is not None:
            proxy_harness.stop_nginx(nginx)
        for server in servers:
            stop_server(server)
    opens = [t for log in logs for t in log.open_s]
    uploads = [t for log in logs for t in log.upload_s]
    selections = [t for log in logs for t in log.selection_s]
    errors = [e for log in logs for e in log.errors]
    warm = memo.get("warm_rss", 0)
    server_runs = []  # wall time of every review-page script run after the warm-up, on the server
    for line in run_times.read_text().splitlines() if run_times.exists() else []:
        page, start, wall_ms = line.split()
        if page == "review" and float(start) >= memo.get("warm_epoch", 0):
            server_runs.append(float(wall_ms) / 1000)
    result: dict[str, Any] = {
        "sessions": sessions,
        "processes": processes,
        "models": models_note,
        "uptime_before": load_before,
        "uptime_at_end_of_load": load_during,
        "page_open_to_first_render_s": percentiles(opens),
        "upload_to_viewers_s": percentiles(uploads),
        "selection_to_predictions_s": percentiles(selections),
        "server_review_script_runs_s": percentiles(server_runs),
        "server_cpu_s_per_analysed_lesion": round(server_cpu_s / len(selections), 3) if selections else None,
        "server_rss_mib": {
            "idle_after_start": round(idle_rss / 2**20, 1),
            "after_warm_up": round(warm / 2**20, 1),
            "peak": round(sampler.peak / 2**20, 1),
            "per_session": round((sampler.peak - warm) / 2**20 / sessions, 1),
        },
        "cpu_during_load": {
            "server_cpu_s": round(server_cpu_s, 1),
            "server_cores_used": round(server_cpu_s / load_wall_s, 2),
            "machine_busy_cpu_s": round(busy_s, 1),
            "machine_cores_busy": round(busy_s / load_wall_s, 2),
        },
        "load_phase_wall_s": round(load_wall_s, 1),
        "errors": errors,
    }
    if nginx is not None:
        per_process: dict[str, int] = {}
        for served in routes.values():
            for upstream in served:
                per_process[upstream] = per_process.get(upstream, 0) + 1
        result["sessions_per_process"] = per_process  # WebSocket sessions per app process (nginx log)
        result["routes_served_by_two_processes"] = sum(len(v) > 1 for v in routes.values())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Many browser sessions against the app's server(s).")
    parser.add_argument(
        "--sessions", default="10", help="concurrent users, or a list of levels run in turn (e.g. 5,10,20)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="page opens per user (default 2)")
    parser.add_argument("--selections", type=int, default=2, help="lesion selections per page (default 2)")
    parser.add_argument("--stagger-s", type=float, default=0.2, help="delay between users' starts")
    parser.add_argument("--budget-s", type=float, default=150.0, help="no new round after this (default 150)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server(s) (and nginx) on CPU 0, chromium and this script on CPU 1 (taskset)",
    )
    parser.add_argument(
        "--processes",
        default="1",
        help="app processes per level, or a list run in turn (e.g. 1,2); more than one: behind nginx",
    )
    parser.add_argument("--p95-limit-s", type=float, default=2.0, help="the latency a level must keep (p95)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.json"))
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: nothing measured", file=sys.stderr)
        return 2
    if args.pin:
        os.sched_setaffinity(0, {1})  # chromium, launched from here, inherits it

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="livercore-load-"))
    levels = []
    try:
        for processes in (int(v) for v in str(args.processes).split(",")):
            for sessions in (int(v) for v in str(args.sessions).split(",")):
                level = run_level(args, sessions, processes, tmp)
                levels.append(level)
                print(json.dumps(level), flush=True)
    finally:
        if not os.environ.get("LIVERCORE_KEEP_LOAD_FILES"):
            shutil.rmtree(tmp, ignore_errors=True)

    def carried(processes: int) -> int | None:
        ok = [
            lv["sessions"]
            for lv in levels
            if lv["processes"] == processes
            and lv["selection_to_predictions_s"].get("p95", 1e9) <= args.p95_limit_s
            and lv["page_open_to_first_render_s"].get("p95", 1e9) <= args.p95_limit_s
            and not lv["errors"]
        ]
        return max(ok) if ok else None

    result = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "setup": {
            "server": "`streamlit run streamlit_app.py` (committed .streamlit/config.toml); with 2+ processes, "
            "Debian's nginx in front with sticky sessions (tests/proxy_harness.py, docs/deploy.md)",
            "pinning": "server(s) and nginx on CPU 0, chromium on CPU 1 (taskset)"
            if args.pin
            else "none: server and chromium share the CPUs",
            "browser": "one Debian chromium, headless, --disable-gpu; one context per user",
            "rounds": args.rounds,
            "selections_per_round": args.selections,
            "stagger_s": args.stagger_s,
            "poll_ms": POLL_MS,
            "each_selection": "five phase-models + the shown model's Grad-CAM on new crops (no cache hit)",
            "cpu_s_per_lesion": "all the server's CPU time during the load (page opens and uploads included) "
            "over the selections analysed",
        },
        "levels": levels,
        "table": [
            {
                "processes": lv["processes"],
                "sessions": lv["sessions"],
                "open_p50_p95_s": [lv["page_open_to_first_render_s"].get(k) for k in ("p50", "p95")],
                "upload_p50_p95_s": [lv["upload_to_viewers_s"].get(k) for k in ("p50", "p95")],
                "selection_p50_p95_s": [lv["selection_to_predictions_s"].get(k) for k in ("p50", "p95")],
                "server_run_p50_p95_s": [lv["server_review_script_runs_s"].get(k) for k in ("p50", "p95")],
                "server_cores_used": lv["cpu_during_load"]["server_cores_used"],
                "machine_cores_busy": lv["cpu_during_load"]["machine_cores_busy"],
                "cpu_s_per_lesion": lv["server_cpu_s_per_analysed_lesion"],
                "rss_mib_per_session": lv["server_rss_mib"]["per_session"],
                "errors": len(lv["errors"]),
            }
            for lv in levels
        ],
        f"sessions_carried_at_p95_le_{args.p95_limit_s:g}_s": {
            f"{n} process(es)": carried(n) for n in sorted({lv["processes"] for lv in levels})
        },
        "total_wall_s": round(time.monotonic() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["table"], indent=1))
    print(json.dumps(result[f"sessions_carried_at_p95_le_{args.p95_limit_s:g}_s"]))
    return 1 if any(lv["errors"] for lv in levels) else 0


if __name__ == "__main__":
    raise SystemExit(main())
