"""The pointing game of the shipped models on test-2016 (livercore.rationale).

Regenerates test-2016 from the phantom, runs every shipped model with Grad-CAM on each case
and writes the share of each map's energy inside the lesion, with the chance level, to
models/study/pointing_game.csv (the Study results page reads it). About a minute on the CPU.

    python benchmarks/pointing_game.py [MODELS_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from livercore.analysis import default_models_dir, load_models
from livercore.dataset import from_phantom
from livercore.phantom import generate_case
from livercore.rationale import pointing_game, summarise


def main(models_dir: Path) -> None:
    data = from_phantom("test-2016")
    diameters = np.array([generate_case("test-2016", 0, i).lesion_diameter_mm for i in range(len(data))])
    table = pointing_game(data, diameters, load_models(models_dir))
    table.to_csv(models_dir / "study" / "pointing_game.csv", index=False)
    print(summarise(table).to_string(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_models_dir())
