"""What the benchmarks write about the machine they ran on (one place, for every benchmark)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(**extra: Any) -> dict[str, Any]:
    """The machine and the software of an app benchmark, with `extra` (e.g. the load before)."""
    import streamlit
    import torch

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "streamlit": streamlit.__version__,
        "torch": torch.__version__,
        **extra,
    }


def write_result(result: dict[str, Any], out: str | os.PathLike[str]) -> None:
    """Write a benchmark's result as JSON to `out` (its folder made) and print it."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
