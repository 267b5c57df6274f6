"""What one server core carries, without browsers: `python benchmarks/bench_capacity.py
[--sessions 5,10,20,40] [--think-s 10] [--selections 6]`.

In a department the browsers run on the residents' own computers; the server runs only the
scripts. So here each simulated resident speaks Streamlit's own websocket protocol (the
protobuf messages its browser would send and receive) to one `streamlit run` server pinned
to CPU 0, the residents (one asyncio process) on CPU 1. Each resident

1. opens the review page on a teaching case of its own (the shared link ?case=<id>: the
   lesion preselected, the five models' predictions and the triphasic CAM computed), then
2. marks the lesion again and again on the arterial viewer: a box around it, a little
   different each time (new crops: the five models and the shown CAM run afresh, no cache hit),
   after a think time drawn from an exponential distribution of mean --think-s; the first
   selection of every resident at the same moment (a teacher's "now mark the lesion").

Latency: from sending the selection (the message the browser sends on mouse-up) to the
server's "script finished" message. That is the server's whole share of a selection (the
wait for its core and its inference lock, the script run, serialising and sending the page)
and leaves out only the browser's drawing (benchmarks/bench_app.py measures that). Every
selection is checked: the arterial viewer's caption must give the new box's centre and the
triphasic model's headline must be on the page. Also measured: the server's CPU-seconds per
selection (/proc, during the selections) and its memory per open session.

Writes benchmarks/results/capacity.json: per level p50/p95 of page open, of the first
selection (everyone at once) and of the later ones (each at their own pace), and the most
sessions whose later selections' p95 stays within --p95-limit-s (2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe, write_result  # noqa: E402  (benchmarks/machine.py, beside this script)

from tests.browser_harness import free_port, start_server, stop_server, wait_healthy  # noqa: E402

VIEWER_KEY = re.compile(r"viewer-arterial$")  # pages/review.py: key=f"viewer-{phase}"
WAIT_S = 120.0


@dataclass
class Case:
    case_id: str
    row: float
    col: float
    half_px: float


@dataclass
class Page:
    """What one script run sent: element ids, the texts, and whether it finished."""

    viewer_id: str | None = None
    fragment_id: str = ""  # the fragment that holds the viewers: a selection reruns it alone
    texts: list[str] = field(default_factory=list)
    finished: bool = False
    error: str | None = None


@dataclass
class Resident:
    case: Case
    open_s: float | None = None
    selections_s: list[float] = field(default_factory=list)  # the first: everyone at once
    errors: list[str] = field(default_factory=list)


def teaching_cases() -> list[Case]:
    """The example cases (stored DICOM, read in a moment) with their arterial lesion boxes.
    Residents share them when there are more residents than cases; their boxes differ."""
    from livercore.teaching import catalogue
    from livercore.vocab import Phase

    out = []
    for entry in catalogue.example_cases():
        box = catalogue.open_case(entry.case_id).lesion_boxes.get(Phase.ARTERIAL)
        if box is not None:
            out.append(Case(entry.case_id, box.row, box.col, max(box.height, box.width) / 2))
    return out


def rerun(query: str, triggers: dict[str, Any] | None = None, fragment_id: str = "") -> bytes:
    """The BackMsg a browser sends to run the review page, or only its fragment `fragment_id`,
    with these components' trigger events ({component id: {event: value}})."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.rerun_script.query_string = query
    msg.rerun_script.page_name = "review"
    msg.rerun_script.fragment_id = fragment_id
    for component_id, events in (triggers or {}).items():
        state = msg.rerun_script.widget_states.widgets.add()  # its state, as the browser keeps it
        state.id = component_id
        state.json_value = "{}"
        state = msg.rerun_script.widget_states.widgets.add()
        state.id = trigger_id(component_id)
        state.json_trigger_value = json.dumps([{"event": e, "value": v} for e, v in events.items()])
    return bytes(msg.SerializeToString())


def trigger_id(component_id: str) -> str:
    """The widget id of a component's trigger events (st.components.v2's own rule)."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id

    return _make_trigger_id(component_id, "events")


def box_selection(row: float, col: float, half: float) -> dict[str, Any]:
    """The trigger events the lesion viewer (livercore/app/viewer.js) sends for a box drawn
    around (row, col)."""
    return {"selection": {"box": [{"x": [col - half, col + half], "y": [row - half, row + half]}]}}


async def read_run(ws: Any) -> Page:
    """Read ForwardMsgs until the script run is over."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    page = Page()
    while not page.finished:
        msg = ForwardMsg()
        msg.ParseFromString(await asyncio.wait_for(ws.recv(), WAIT_S))
        kind = msg.WhichOneof("type")
        if kind == "script_finished":
            # a run that ends early for a rerun (a session's first page does, through the
            # router) is followed by the rerun: read on
            page.finished = msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            which = element.WhichOneof("type")
            if which == "bidi_component" and VIEWER_KEY.search(element.bidi_component.id):
                page.viewer_id = element.bidi_component.id
                page.fragment_id = msg.delta.fragment_id
                page.texts.append(json.loads(element.bidi_component.json)["caption"])  # the box in words
            elif which == "markdown":
                page.texts.append(element.markdown.body)
            elif which == "exception":
                page.error = element.exception.message
    return page


async def run_resident(
    port: int, me: Resident, selections: int, think_s: float, seed: int, opened: Any, all_open: asyncio.Event
) -> None:
    """Open the page, report it (`opened()`), wait until every resident has, then select."""
    from websockets.asyncio.client import connect

    rng = random.Random(seed)
    query = f"case={me.case.case_id}"
    async with connect(
        f"ws://127.0.0.1:{port}/_stcore/stream",
        subprotocols=["streamlit"],  # type: ignore[list-item]
        origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        max_size=None,
        ping_interval=None,
    ) as ws:
        t0 = time.perf_counter()
        await ws.send(rerun(query))
        page = await read_run(ws)
        me.open_s = time.perf_counter() - t0
        opened()
        if page.error or page.viewer_id is None:
            me.errors.append(f"open: {page.error or 'no arterial viewer'}")
            return
        await all_open.wait()
        for i in range(selections):
            await asyncio.sleep(rng.expovariate(1 / think_s) if i else rng.uniform(0, 0.5))
            row = me.case.row + rng.uniform(-3, 3)
            col = me.case.col + rng.uniform(-3, 3)
            half = me.case.half_px * rng.uniform(0.95, 1.1)
            t0 = time.perf_counter()
            await ws.send(rerun(query, {page.viewer_id: box_selection(row, col, half)}, page.fragment_id))
            new = await read_run(ws)
            seconds = time.perf_counter() - t0
            centre = f"centre row {row:.0f}, column {col:.0f}"
            if new.error:
                me.errors.append(f"selection {i}: {new.error}")
            elif not any(centre in t for t in new.texts) or not any(
                "Triphasic model:" in t for t in new.texts
            ):
                me.errors.append(f"selection {i}: the new box or the prediction is not on the page")
            else:
                me.selections_s.append(seconds)
            if new.viewer_id:
                page = new


def cpu_s(pid: int) -> float:
    """User + system CPU-seconds of a process and its children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in fields[11:15]) / tick


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


async def level(
    port: int, pid: int, cases: list[Case], n: int, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    residents = [Resident(cases[(seed + k) % len(cases)]) for k in range(n)]
    rss_before = rss_mib(pid)
    all_open = asyncio.Event()
    count = 0

    def opened() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_open.set()

    async def one(k: int, me: Resident) -> None:
        try:
            await run_resident(port, me, args.selections, args.think_s, seed * 1000 + k, opened, all_open)
        except Exception as err:  # a resident that fails is counted, not fatal
            me.errors.append(f"{type(err).__name__}: {err}")
            opened()

    everyone = asyncio.gather(*(one(k, me) for k, me in enumerate(residents)))
    await all_open.wait()  # the selections' share of the server, from here
    rss_open = rss_mib(pid)
    cpu_before, wall_before = cpu_s(pid), time.perf_counter()
    await everyone
    wall = time.perf_counter() - wall_before
    cpu = cpu_s(pid) - cpu_before
    selections = [s for me in residents for s in me.selections_s]
    return {
        "sessions": n,
        "page_open_s": quantiles([me.open_s for me in residents if me.open_s is not None]),
        # everyone marks at once ("now mark the lesion"): the last waits for all the others
        "first_selection_all_at_once_s": quantiles(
            [me.selections_s[0] for me in residents if me.selections_s]
        ),
        # then each at their own pace (think time): the steady state that capacity is read from
        "later_selections_s": quantiles([s for me in residents for s in me.selections_s[1:]]),
        "server_cpu_s_per_selection": round(cpu / max(len(selections), 1), 3),
        "server_cores_busy_during_selections": round(cpu / wall, 2),
        "server_rss_mib_per_open_session": round((rss_open - rss_before) / n, 1),
        "wall_s": round(wall, 1),
        "errors": [e for me in residents for e in me.errors][:10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What one server core carries, without browsers.")
    parser.add_argument("--sessions", default="5,10,20,40", help="levels (default 5,10,20,40)")
    parser.add_argument("--think-s", type=float, default=10.0, help="mean time between selections (s)")
    parser.add_argument("--selections", type=int, default=6, help="selections per resident and level")
    parser.add_argument("--p95-limit-s", type=float, default=2.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "capacity.json"))
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.sessions.split(",")]
    load_before = [round(x, 2) for x in os.getloadavg()]
    os.sched_setaffinity(0, {1})  # the residents on CPU 1, the server on CPU 0

    cases = teaching_cases()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="livercore-capacity-"))
    server = start_server(None, port, cores="0", log=tmp / "server.log")
    results = []
    try:
        wait_healthy(port)
        # warm-up: the models loaded, every case opened once, the script threads started
        warm = argparse.Namespace(**{**vars(args), "selections": 1, "think_s": 1.0})
        warm_up = asyncio.run(level(port, server.pid, cases, len(cases), warm, 0))
        print(json.dumps({"warm_up": warm_up}), flush=True)
        for i, n in enumerate(levels):
            results.append(asyncio.run(level(port, server.pid, cases, n, args, i * 97)))
            print(json.dumps(results[-1]), flush=True)
    finally:
        stop_server(server)

    carried = [
        r["sessions"]
        for r in results
        if r["later_selections_s"]["p95"] is not None
        and r["later_selections_s"]["p95"] <= args.p95_limit_s
        and not r["errors"]
    ]
    report = {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(load_average_before=load_before),
        "setup": {
            "server": "one `streamlit run streamlit_app.py` on the shipped models, pinned to CPU 0 (taskset)",
            "residents": "one asyncio process on CPU 1 speaking Streamlit's websocket protocol; no browser",
            "think_time": f"exponential, mean {args.think_s:g} s",
            "selections_per_resident": args.selections,
        },
        "warm_up": warm_up,
        "levels": results,
        f"sessions_one_core_carries_at_p95_le_{args.p95_limit_s:g}_s": max(carried) if carried else None,
        "read_from": "later_selections_s (each resident at their own pace, think time as above); "
        "first_selection_all_at_once_s is the wait when every resident marks at the same moment",
    }
    write_result(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
