"""Does each model look at the lesion, and which phase carries its decision? On phantom cases.

On the phantom the lesion is known exactly, and every crop is centred on it, so the lesion is
a disk at the centre of the 70 x 70 crop whose radius follows from the lesion diameter and the
crop's field of view. For each case and model we compute the CAM for the predicted category
and the share of its energy inside that disk (Wang et al., Score-CAM, CVPR-W 2020). The
lesion's share of the crop area is the chance level: a model that ignores the lesion scores
about that.

The phase contribution (livercore.contribution) asks the paper's own question per case: for a
model of two or more phases, the Shapley value of each phase for P(the reference category).
Summarised per category, it says whether the arterial phase carries classic HCC and
hypervascular category-C nodules, as the paper's story of the single-phase models suggests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from livercore.analysis import LoadedModel, analyse_crops
from livercore.contribution import phase_contributions
from livercore.dataset import Dataset
from livercore.explain import lesion_energy_fraction
from livercore.model import predict_proba, select_channels
from livercore.preprocess import CROP_SIZE, field_mm
from livercore.vocab import CATEGORIES, PHASES, Category


def lesion_disk(diameter_mm: float, spacing_mm: float, size: int = CROP_SIZE) -> np.ndarray:
    """(size, size) bool: the lesion in a crop made by `preprocess` around a centred lesion."""
    radius = diameter_mm / 2 / field_mm(diameter_mm) * size
    yy, xx = np.mgrid[:size, :size] + 0.5 - size / 2
    del spacing_mm  # the field is set in mm, so the pixel spacing cancels out
    return (yy**2 + xx**2) <= radius**2


def pointing_game(
    data: Dataset, diameters_mm: np.ndarray, models: dict[str, LoadedModel], *, cam_method: str = "GradCAM"
) -> pd.DataFrame:
    """One row per case and model: energy inside the lesion, the chance level, correctness."""
    rows = []
    for i in range(len(data)):
        mask = lesion_disk(float(diameters_mm[i]), 1.0)
        result = analyse_crops(data.x[i], models, cam_method=cam_method)
        for name, r in result.results.items():
            assert r.cam is not None
            rows.append(
                {
                    "case_id": data.meta.case_id[i],
                    "category": data.meta.category[i],
                    "subtype": data.meta.subtype[i],
                    "model": name,
                    "predicted": r.predicted.value,
                    "energy_in_lesion": lesion_energy_fraction(r.cam, mask),
                    "lesion_area_share": float(mask.mean()),
                }
            )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Median energy in the lesion and the chance level per model and category."""
    return (
        table.groupby(["model", "category"], sort=False)
        .agg(
            energy_in_lesion=("energy_in_lesion", "median"),
            chance=("lesion_area_share", "median"),
            cases=("case_id", "count"),
        )
        .reset_index()
    )


def phase_contribution_table(data: Dataset, models: dict[str, LoadedModel]) -> pd.DataFrame:
    """One row per case and model of two or more phases: the Shapley value of each phase
    (columns ``shapley_<phase>``, NaN for a phase the model does not see) for P(reference
    category), with that probability, the flat-image baseline and the prediction."""
    rows = []
    for name, m in models.items():
        phases = m.phase_model.phases
        if len(phases) < 2:
            continue
        x_all = select_channels(data.x, m.phase_model)
        predicted = predict_proba(m.net, x_all).argmax(1)  # one batched pass for the whole cohort
        for i in range(len(data)):
            c = phase_contributions(m.net, x_all[i], phases, Category(data.meta.category[i]))
            row = {
                "case_id": data.meta.case_id[i],
                "category": data.meta.category[i],
                "subtype": data.meta.subtype[i],
                "model": name,
                "predicted": CATEGORIES[int(predicted[i])].value,
                "p_reference": c.probability,
                "p_flat": c.baseline,
            }
            row |= {f"shapley_{p.value}": c.points.get(p, np.nan) for p in PHASES}
            rows.append(row)
    return pd.DataFrame(rows)
