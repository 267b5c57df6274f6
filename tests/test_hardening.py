"""Bad input gets a clear sentence, never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livercore.errors import InputError
from livercore.validate import describe_bytes, validate_file

from .corpus import corpus, good_dicom

CORPUS = corpus()


@pytest.mark.parametrize(("name", "data", "expected"), CORPUS, ids=[c[0] for c in CORPUS])
def test_every_corpus_file_is_described_or_refused_with_a_sentence(tmp_path: Path, name, data, expected):
    path = tmp_path / name
    path.write_bytes(data)
    ok, what = validate_file(path)
    if expected == "ok":
        assert ok, what
    else:
        assert not ok
        assert expected.lower() in what.lower(), what
        assert "Traceback" not in what and what.endswith((".", ")"))


def test_validate_cli_prints_one_line_per_file_and_exits_1_on_any_error(tmp_path: Path):
    good, bad = tmp_path / "good.dcm", tmp_path / "bad.dcm"
    good.write_bytes(good_dicom())
    bad.write_bytes(b"\0" * 10)
    run = subprocess.run(
        [sys.executable, "-m", "livercore.cli", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 1
    assert lines[0].startswith(f"OK {good}: CT slice 512 x 512")
    assert lines[1].startswith(f"ERROR {bad}: ")
    assert "Traceback" not in run.stdout + run.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "livercore.cli", "validate", str(good)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0


def _mutate(data: bytes, cuts: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in cuts:
        buf[pos % len(buf)] = value
    return bytes(buf)


@settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    cuts=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=12),
    keep=st.integers(0, 600_000),
)
def test_fuzzed_dicom_headers_only_raise_the_project_error(cuts, keep):
    """Byte flips in the header region and truncation anywhere: only InputError escapes."""
    data = _mutate(good_dicom(), cuts)[:keep]
    tracemalloc.start()
    try:
        describe_bytes(data)
    except InputError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 64 * 2**20  # bounded memory: no giant allocation from a forged length


@settings(max_examples=80, deadline=2000, derandomize=True)
@given(data=st.binary(min_size=0, max_size=4096))
def test_fuzzed_images_and_archives_only_raise_the_project_error(data):
    for prefix in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"PK\x03\x04", b""):
        with contextlib.suppress(InputError):
            describe_bytes(prefix + data)
