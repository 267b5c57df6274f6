"""The pointing game and the phase contributions of the shipped models on test-2016
(livercore.rationale).

Regenerates test-2016 from the phantom, runs every shipped model with Grad-CAM on each case
and writes the share of each map's energy inside the lesion, with the chance level, to
models/study/pointing_game.csv; and, for the models of two or more phases, each phase's
Shapley value for P(reference category) to models/study/phase_contribution.csv (the Study
results page reads both). About a minute on the CPU.

    python benchmarks/pointing_game.py [MODELS_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from livercore.analysis import default_models_dir, load_models
from livercore.app.results import summarise_contributions
from livercore.dataset import from_phantom
from livercore.phantom import generate_case
from livercore.rationale import phase_contribution_table, pointing_game, summarise


def main(models_dir: Path) -> None:
    data = from_phantom("test-2016")
    diameters = np.array([generate_case("test-2016", 0, i).lesion_diameter_mm for i in range(len(data))])
    table = pointing_game(data, diameters, load_models(models_dir))
    table.to_csv(models_dir / "study" / "pointing_game.csv", index=False)
    print(summarise(table).to_string(index=False))
    contributions = phase_contribution_table(data, load_models(models_dir))
    contributions.to_csv(models_dir / "study" / "phase_contribution.csv", index=False, float_format="%.6g")
    print(summarise_contributions(contributions).round(3).to_string(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_models_dir())
