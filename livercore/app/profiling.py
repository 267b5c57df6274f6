"""How long a page's script runs take, and where the time goes, on request.

The router runs every page inside `profiled`. With LIVERCORE_PROFILE_DIR set
(benchmarks/bench_app.py; never on a hospital server) it writes one pstats file per script
run, `<page>-<start ns>-<wall ms>.prof`, one run at a time. With LIVERCORE_RUN_TIMES set to a
file (benchmarks/bench_load.py) it appends one line per run, "<page> <start s> <wall ms>", for
every session: the server's own share of a latency, without the browser's. Page names and
timings only, never data. Unset, both cost nothing.
"""

from __future__ import annotations

import cProfile
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "LIVERCORE_PROFILE_DIR"
TIMES_ENV = "LIVERCORE_RUN_TIMES"
_APPEND = threading.Lock()
_ONE_AT_A_TIME = threading.Lock()  # cProfile profiles one thread; sessions are threads
_INSIDE = threading.local()  # script runs are threads: whether this one is inside `profiled`


@contextmanager
def profiled(page: str) -> Iterator[None]:
    """Profile the script run inside (when LIVERCORE_PROFILE_DIR is set) and log its wall
    time (when LIVERCORE_RUN_TIMES is set). Nested (a fragment inside its page's run), only the
    outer one counts; a fragment's own rerun, which the router does not run, counts alone."""
    if getattr(_INSIDE, "active", False):
        yield
        return
    _INSIDE.active = True
    try:
        with _timed(page):
            yield
    finally:
        _INSIDE.active = False


@contextmanager
def _timed(page: str) -> Iterator[None]:
    times = os.environ.get(TIMES_ENV)
    if times:
        start = time.time()
        try:
            with _profiled(page):
                yield
        finally:  # st.stop and st.rerun end a run by raising: those runs count too
            wall_ms = (time.time() - start) * 1000
            with _APPEND, open(times, "a") as log:
                log.write(f"{page} {start:.3f} {wall_ms:.1f}\n")
        return
    with _profiled(page):
        yield


@contextmanager
def _profiled(page: str) -> Iterator[None]:
    folder = os.environ.get(ENV)
    if not folder or not _ONE_AT_A_TIME.acquire(blocking=False):
        yield
        return
    profiler = cProfile.Profile()
    start = time.perf_counter_ns()
    try:
        profiler.enable()
        yield
    finally:  # st.stop and st.rerun end a run by raising: those runs are written too
        profiler.disable()
        wall_ms = (time.perf_counter_ns() - start) // 1_000_000
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(Path(folder) / f"{page}-{start}-{wall_ms}.prof")
        finally:
            _ONE_AT_A_TIME.release()
