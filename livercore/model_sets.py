"""The model folders the app offers: the bundled phantom models and those a site configures.

A model set is a folder of phase-models (`<name>.pt`, with `<name>.json` cards) as
`livercore study ship` writes it, with the study that produced them in `study/` when it was
shipped. The bundled set is `models/` (or $LIVERCORE_MODELS). A site adds its own by
configuration, never by a path typed into a page:

    LIVERCORE_MODEL_SETS="Site 2025=/srv/livercore/models/site-2025;/srv/livercore/models/research"

entries separated by ";" (or new lines), each `label=folder` or a bare folder (labelled by its
name). No heavy imports: the home page reads this before torch is loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from livercore.paths import default_models_dir
from livercore.vocab import MODEL_NAMES

ENV = "LIVERCORE_MODEL_SETS"
BUNDLED_KEY = "bundled"
BUNDLED_LABEL = "Bundled models (synthetic phantom CT)"


@dataclass(frozen=True)
class ModelSet:
    key: str  # stable short name: "bundled", or the label as a slug
    label: str  # what the app calls it
    folder: Path

    @property
    def study_dir(self) -> Path:
        """Where the study that produced these models is, when it was shipped with them."""
        return self.folder / "study"

    @property
    def has_study(self) -> bool:
        return (self.study_dir / "predictions_test.csv").is_file()

    @property
    def model_files(self) -> list[str]:
        """The phase-models this folder holds, in the paper's order."""
        return [n for n in MODEL_NAMES if (self.folder / f"{n}.pt").is_file()]


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "models"


def configured_sets(environ: Mapping[str, str] | None = None) -> tuple[list[ModelSet], list[str]]:
    """(the model sets, in order: the bundled one first, then the configured ones; a sentence
    for each configured entry that cannot be offered: its folder is missing or holds no
    phase-model)."""
    env = os.environ if environ is None else environ
    sets = [ModelSet(BUNDLED_KEY, BUNDLED_LABEL, default_models_dir())]
    problems: list[str] = []
    for entry in re.split(r"[;\n]", env.get(ENV, "")):
        entry = entry.strip()
        if not entry:
            continue
        label, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
        folder = Path(path.strip()).expanduser()
        label = label.strip() or folder.name
        key = _slug(label)
        if any(s.key == key for s in sets):
            problems.append(f"{ENV}: the model set {label!r} is named twice; the second is left out.")
            continue
        candidate = ModelSet(key, label, folder)
        if not folder.is_dir():
            problems.append(f"{ENV}: the folder of the model set {label!r} does not exist on this server.")
        elif not candidate.model_files:
            problems.append(
                f"{ENV}: the folder of the model set {label!r} holds no phase-model "
                f"({', '.join(f'{n}.pt' for n in MODEL_NAMES)})."
            )
        else:
            sets.append(candidate)
    return sets, problems


def find_set(key: str | None, environ: Mapping[str, str] | None = None) -> ModelSet:
    """The configured set of that key, else the bundled one."""
    sets, _ = configured_sets(environ)
    return next((s for s in sets if s.key == key), sets[0])
