"""The study under torchrun: sessions fanned out over two gloo ranks on the CPU give the study
folder a single process writes, exactly; a study whose sessions stopped half-way resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from livercore.study import SESSIONS_DIR, finished_sessions
from livercore.study_folder import load_study
from tests.distributed_study import MODELS, SESSIONS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "distributed_study.py"


def _run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", LIVERCORE_CODE_VERSION="test")
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single")
    done = _run([sys.executable, str(SCRIPT), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_gloo_ranks_write_the_single_process_study_exactly(single: Path, tmp_path: Path) -> None:
    out = tmp_path / "two-ranks"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = _run([*command, str(SCRIPT), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    for split in ("test", "train"):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / f"predictions_{split}.csv"), pd.read_csv(single / f"predictions_{split}.csv")
        )
    lines = [line for line in done.stdout.splitlines() if "session" in line and "test accuracy" in line]
    assert sorted(line.split("]")[0] for line in lines) == ["[rank 0/2"] * 2 + ["[rank 1/2"] * 2
    # the merged study is a study: the results page's reader and the report open it
    study = load_study(out)
    assert sorted(study.models) == sorted(MODELS) and study.sessions("arterial") == list(
        range(1, SESSIONS + 1)
    )
    report = _run([sys.executable, "-m", "livercore.cli", "study", "report", str(out)], timeout=120)
    assert report.returncode == 0 and "Triphasic" in report.stdout


def test_a_study_stopped_between_sessions_resumes_to_the_same_folder(single: Path, tmp_path: Path) -> None:
    """What a dead rank leaves: some sessions finished in sessions/, no merged predictions. The
    same command trains only the missing ones and gives the same study."""
    out = tmp_path / "stopped"
    shutil.copytree(single, out)
    for name in ("predictions_test.csv", "predictions_train.csv", "metrics.json"):
        (out / name).unlink()
    for split in ("test", "train"):
        (out / SESSIONS_DIR / f"arterial_s2_{split}.csv").unlink()
    kept = (out / "weights" / "triphasic_s1.pt").stat().st_mtime_ns
    assert ("arterial", 2) not in finished_sessions(out) and ("triphasic", 2) in finished_sessions(out)
    done = _run([sys.executable, str(SCRIPT), str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    trained = [line for line in done.stdout.splitlines() if "test accuracy" in line]
    assert len(trained) == 1 and trained[0].startswith("arterial session 2")  # only the missing one
    assert (out / "weights" / "triphasic_s1.pt").stat().st_mtime_ns == kept
    for split in ("test", "train"):
        pd.testing.assert_frame_equal(
            pd.read_csv(out / f"predictions_{split}.csv"), pd.read_csv(single / f"predictions_{split}.csv")
        )


def test_a_session_trained_data_parallel_over_two_ranks(tmp_path: Path) -> None:
    """DistributedDataParallel over two gloo ranks, global batch 32 (16 a rank): both ranks end
    with the same parameters, and the loss curve follows the single process's on the same
    global batch (the ranks draw other augmentations and dropout masks, hence the tolerance)."""
    import json

    ddp = ROOT / "tests" / "distributed_ddp.py"
    alone = _run([sys.executable, str(ddp), str(tmp_path / "one")])
    assert alone.returncode == 0, alone.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = _run([*command, str(ddp), str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    single = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["parameters"] == ranks[1]["parameters"]
    assert ranks[0]["loss"] == ranks[1]["loss"]  # the pass losses are all-reduced over the ranks
    curve, reference = np.array(ranks[0]["loss"]), np.array(single["loss"])
    assert len(curve) == len(reference) == 12
    assert np.abs(curve - reference).max() < 0.15
    assert curve[-3:].mean() < curve[:3].mean() - 0.3  # it learns


def test_a_study_trained_session_by_session_data_parallel(single: Path, tmp_path: Path) -> None:
    """--parallel ddp: both ranks train every session together, rank 0 writes; the study is
    whole (every session, every case) and each session as accurate as alone, within noise."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = _run([*command, str(SCRIPT), str(out), "ddp"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ddp over 2 ranks" in done.stdout
    ours, theirs = pd.read_csv(out / "predictions_test.csv"), pd.read_csv(single / "predictions_test.csv")
    assert ours[["model", "session", "case_id"]].equals(theirs[["model", "session", "case_id"]])
    for frame in (ours, theirs):
        frame["right"] = frame["predicted"] == frame["category"]
    assert abs(ours["right"].mean() - theirs["right"].mean()) <= 0.15
    assert load_study(out).sessions("triphasic") == list(range(1, SESSIONS + 1))
