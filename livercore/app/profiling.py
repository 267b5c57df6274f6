"""Where a page's script run spends its time: cProfile around each run, on request.

With LIVERCORE_PROFILE_DIR set (benchmarks/bench_app.py sets it; never on a hospital server),
the router runs every page inside `profiled`, which writes one pstats file per script run,
`<page>-<start ns>-<wall ms>.prof`: function names and timings only, never data. Unset, it
costs nothing.
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
_ONE_AT_A_TIME = threading.Lock()  # cProfile profiles one thread; sessions are threads


@contextmanager
def profiled(page: str) -> Iterator[None]:
    """Profile the script run inside (when LIVERCORE_PROFILE_DIR is set)."""
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
