"""Where the bundled models and cases are. No heavy imports: the first page reads this."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository (or the installed tree)
DEFAULT_MODELS_DIR = ROOT / "models"  # the shipped phase-models and models/study
DEFAULT_CASES_DIR = ROOT / "cases"  # the example cases and the teaching library


def default_models_dir() -> Path:
    """Where the shipped models are: $LIVERCORE_MODELS (read at call time), else models/."""
    return Path(os.environ.get("LIVERCORE_MODELS") or DEFAULT_MODELS_DIR)
