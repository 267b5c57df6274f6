"""A study directory, read once and validated: the one way the CLI, the reports and the app open it.

A study directory (``livercore study run``; the shipped one is ``models/study``) holds
``predictions_test.csv`` (one row per model, session and test case) and ``metrics.json`` (the
study summary, training accuracy, the shortcut audit), and may hold ``shipped.json``,
``pointing_game.csv`` and ``phase_contribution.csv`` (livercore.rationale). Torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from livercore import evaluate
from livercore.errors import InputError
from livercore.paths import DEFAULT_MODELS_DIR
from livercore.vocab import MODEL_NAMES

DEFAULT_STUDY_DIR = DEFAULT_MODELS_DIR / "study"
REQUIRED_FILES = ("predictions_test.csv", "metrics.json")
OPTIONAL_TABLES = ("pointing_game.csv", "phase_contribution.csv")  # livercore.rationale's tables
MAX_FILE_BYTES = 200 * 2**20  # a study's predictions for 5 models x 5 sessions x 1000 cases are ~25 MB


@dataclass(frozen=True, eq=False)
class Study:
    """One study directory, read."""

    folder: Path
    predictions: pd.DataFrame  # predictions_test.csv
    metrics: dict[str, Any]  # metrics.json
    shipped: dict[str, int] = field(default_factory=dict)  # model -> its shipped (median) session
    pointing: pd.DataFrame | None = None  # pointing_game.csv
    contributions: pd.DataFrame | None = None  # phase_contribution.csv

    @property
    def summary(self) -> dict[str, Any]:
        return self.metrics["summary"]

    @property
    def models(self) -> list[str]:
        """The study's models in the paper's order."""
        present = set(self.predictions["model"].astype(str))
        return [m for m in MODEL_NAMES if m in present]

    @property
    def n_cases(self) -> int:
        """Test cases in the study."""
        return int(self.predictions["case_id"].nunique())

    def sessions(self, model: str) -> list[int]:
        return sorted(
            int(s) for s in self.predictions.loc[self.predictions["model"] == model, "session"].unique()
        )

    @property
    def audit(self) -> dict[str, Any] | None:
        """The shortcut audit of metrics.json, as written by livercore.study; None without one."""
        return self.metrics.get("shortcut_audit") or None

    @property
    def train_accuracy(self) -> dict[str, Any]:
        """Per model: training accuracy median / low / high over sessions (may be empty)."""
        return self.metrics.get("train_accuracy") or {}


def study_stamp(folder: str | os.PathLike[str]) -> tuple[tuple[str, int], ...]:
    """Names and modification times of a study's files: a cache key that changes with them."""
    root = Path(folder)
    names = (*REQUIRED_FILES, *OPTIONAL_TABLES, "shipped.json")
    return tuple((n, (root / n).stat().st_mtime_ns) for n in names if (root / n).is_file())


def validate_study_dir(text: str | os.PathLike[str], *, suggest: bool = False) -> Path:
    """The folder a user named, if it is a study directory on this server; InputError if not.

    Only a directory holding predictions_test.csv and metrics.json (regular files under
    MAX_FILE_BYTES) is accepted; nothing else in it is read. With `suggest` (the command line,
    whose user can list the server's folders anyway), a study in the folder's ``study``
    subfolder is named in the message: ``models`` holds the shipped study in ``models/study``.
    """
    raw = str(text).strip()
    if not raw:
        raise InputError("Enter the folder of a study on this server.")
    # One message whether the folder is missing, unreadable or not a study: the page does not
    # tell a user which folders exist on the server.
    refused = InputError(
        f"'{raw[:80]}' is not a study directory on this server: a study directory is a folder written "
        f"by `livercore study run`, holding {' and '.join(REQUIRED_FILES)}."
    )
    folder = Path(raw).expanduser()
    inner = folder / "study"
    if suggest and all((inner / name).is_file() for name in REQUIRED_FILES):
        refused = InputError(f"{refused} Did you mean {inner}? It holds a study.")
    try:
        if not folder.is_dir() or not all((folder / name).is_file() for name in REQUIRED_FILES):
            raise refused
        too_large = [name for name in REQUIRED_FILES if (folder / name).stat().st_size > MAX_FILE_BYTES]
    except OSError as err:
        raise refused from err
    if too_large:
        raise InputError(f"{too_large[0]} is larger than {MAX_FILE_BYTES // 2**20} MiB.")
    return folder.resolve()


def load_study(folder: str | os.PathLike[str] = DEFAULT_STUDY_DIR, *, suggest: bool = False) -> Study:
    """Read a study directory (validated by validate_study_dir first; InputError, a sentence,
    when it is not one or its files cannot be read)."""
    root = validate_study_dir(folder, suggest=suggest)
    try:
        predictions = pd.read_csv(root / "predictions_test.csv", dtype={"case_id": str, "subtype": str})
        metrics = json.loads((root / "metrics.json").read_text())
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"The study's files could not be read: {err}") from err
    missing = [c for c in evaluate.PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise InputError(f"predictions_test.csv lacks the column(s): {', '.join(missing)}.")
    if not isinstance(metrics, dict):
        raise InputError("metrics.json does not hold a study's metrics.")
    if "summary" not in metrics:
        metrics = {**metrics, "summary": evaluate.study_summary(predictions)}
    shipped: dict[str, int] = {}
    if (root / "shipped.json").is_file():
        try:
            shipped = {str(k): int(v) for k, v in json.loads((root / "shipped.json").read_text()).items()}
        except (OSError, ValueError, AttributeError):
            shipped = {}
    pointing, contributions = (_optional_table(root / name) for name in OPTIONAL_TABLES)
    return Study(root, predictions, metrics, shipped, pointing, contributions)


def _optional_table(path: Path) -> pd.DataFrame | None:
    """An optional table of a study, or None when it is absent, too large or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return None
        return pd.read_csv(path, dtype={"case_id": str, "subtype": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None
