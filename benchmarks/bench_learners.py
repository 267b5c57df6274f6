"""Twenty learners answering at once, against SQLite and against PostgreSQL.

Two processes (two app servers) of ten threads each (ten browser sessions each, as Streamlit
serves them), every learner answering ANSWERS quiz questions back to back with no thinking
time (far harder than residents): each answer is one livercore.teaching.record.record call, an
attempt and its FSRS card in one transaction. Measured per write: wall latency; at the end,
attempts stored against attempts sent (none may be lost) and one card per learner and case.

    python benchmarks/bench_learners.py [POSTGRES_URL]   ->  benchmarks/results/learners_load.json

Without POSTGRES_URL, $LIVERCORE_TEST_POSTGRES_URL is used (.ci/run sets it); PostgreSQL is
left out when neither is given.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from livercore import identity, store
from livercore.store.schema import Attempt, ReviewCard
from livercore.teaching import record
from livercore.vocab import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
PROCESSES, THREADS, ANSWERS, CASES = 2, 10, 30, 12


def _learner(url: str, name: str, seed: int) -> list[float]:
    engine = store.get_engine(url)
    who = identity.resolve(demo_name=name, environ={})
    assert who is not None
    lid = record.learner_id(engine, who)
    rng = np.random.default_rng(seed)
    latencies = []
    for i in range(ANSWERS):
        truth = CATEGORIES[int(rng.integers(5))]
        answer = truth if rng.random() < 0.7 else CATEGORIES[int(rng.integers(5))]
        attempt = record.AttemptInput(
            case_id=f"library-0-{int(rng.integers(CASES)):04d}",
            mode="features",
            phase_set="triphasic",
            answer=answer,
            truth=truth,
            confidence=int(rng.integers(1, 4)),
            features_marked={"aphe"} if rng.random() < 0.5 else set(),
            features_truth={"aphe", "washout"},
            features_asked={"aphe", "washout", "capsule", "rim"},
            client_key=f"{name}-{i}-{uuid.uuid4().hex[:8]}",
        )
        t = time.perf_counter()
        record.record(engine, lid, attempt)
        latencies.append(time.perf_counter() - t)
    return latencies


def _server(args: tuple[str, int]) -> list[float]:
    """One app process: THREADS learners at once."""
    url, process = args
    results: list[list[float]] = [[] for _ in range(THREADS)]

    def run(k: int) -> None:
        results[k] = _learner(url, f"learner {process}-{k}", 1000 * process + k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for r in results for x in r]


def measure(url: str) -> dict[str, Any]:
    store.upgrade(store.create(url))  # the schema, once, before the servers start
    t0 = time.perf_counter()
    with ProcessPoolExecutor(PROCESSES) as pool:
        latencies = [x for part in pool.map(_server, [(url, p) for p in range(PROCESSES)]) for x in part]
    wall = time.perf_counter() - t0
    engine = store.create(url)
    with store.session(engine) as s:
        stored = int(s.scalar(select(func.count(Attempt.id))) or 0)
        cards = int(s.scalar(select(func.count(ReviewCard.id))) or 0)
        pairs = s.execute(select(Attempt.learner_id, Attempt.case_id).distinct()).all()
    engine.dispose()
    ms = np.array(latencies) * 1000
    sent = PROCESSES * THREADS * ANSWERS
    return {
        "learners": PROCESSES * THREADS,
        "answers_sent": sent,
        "answers_stored": stored,
        "lost": sent - stored,
        "cards": cards,
        "cards_expected": len(pairs),
        "write_latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1),
            "max": round(float(ms.max()), 1),
        },
        "answers_per_second": round(sent / wall, 1),
        "wall_s": round(wall, 1),
    }


def _fresh_postgres(base: str) -> tuple[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def main(postgres: str | None = None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "setup": f"{PROCESSES} processes x {THREADS} threads, {ANSWERS} answers each, no thinking time",
    }
    with tempfile.TemporaryDirectory() as folder:
        report["sqlite"] = measure(f"sqlite:///{folder}/livercore.sqlite")
    base = postgres or os.environ.get("LIVERCORE_TEST_POSTGRES_URL")
    if base:
        url, drop = _fresh_postgres(base)
        try:
            report["postgresql"] = measure(url)
        finally:
            drop()
    report["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    (ROOT / "benchmarks" / "results" / "learners_load.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(*sys.argv[1:])
