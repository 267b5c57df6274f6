"""The one entry point for analysing a case: preprocess, five phase-models, CAMs.

Used by the app's pages, the CLI and the tests. Thread-safe: Streamlit serves every browser
session as a thread of one process and shares the cached models, so inference and CAMs run
under one lock (`MODEL_LOCK`); results are bit-identical to a sequential run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livercore.contribution import PhaseContribution, phase_contributions
from livercore.errors import InputError
from livercore.model import (
    LiverNet,
    ModelContract,
    ModelFileError,
    load_model,
    predict_proba,
    select_channels,
)
from livercore.paths import default_models_dir
from livercore.preprocess import CROP_SIZE, LesionBox, preprocess_case
from livercore.vocab import CAM_METHODS, CATEGORIES, MODEL_NAMES, PHASES, Category, Phase, PhaseModel

MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    name: str
    net: LiverNet
    phase_model: PhaseModel
    card: dict[str, Any]
    contract: ModelContract  # what it was trained on (load_model checked it against preprocess)


def load_models(
    models_dir: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    refused: list[str] | None = None,
) -> dict[str, LoadedModel]:
    """The shipped phase-models (`<models_dir>/<name>.pt`), in the paper's order, in eval mode.

    A file this code cannot use (model.ModelFileError) raises, or, when a `refused` list is
    given, is skipped and its sentence appended there (the app shows them and goes on).
    """
    root = Path(models_dir) if models_dir else default_models_dir()
    out = {}
    for name in MODEL_NAMES:
        path = root / f"{name}.pt"
        if not path.exists():
            continue
        try:
            saved = load_model(path, map_location=device)
        except ModelFileError as err:
            if refused is None:
                raise
            refused.append(str(err))
            continue
        out[name] = LoadedModel(name, saved.net, saved.phase_model, saved.card, saved.contract)
    if not out:
        raise FileNotFoundError(f"no trained models in {root}")
    return out


@dataclass
class ModelResult:
    name: str
    probabilities: np.ndarray  # (5,) A..E
    cam: np.ndarray | None  # (70, 70) float32 in [0, 1], on the crops the model saw
    cam_target: Category | None  # None for EigenCAM, which has no target, and without a CAM
    # How much each phase drives P(the CAM's category, else the top one): models with 2+ phases.
    contribution: PhaseContribution | None = None

    @property
    def predicted(self) -> Category:
        return CATEGORIES[int(np.argmax(self.probabilities))]


@dataclass
class Analysis:
    crops: np.ndarray  # (3, 70, 70) uint8, phases in vocab.PHASES order
    results: dict[str, ModelResult]
    seconds: float
    cam_method: str | None = None
    notes: list[str] = field(default_factory=list)

    def probability_table(self) -> dict[str, dict[str, float]]:
        return {
            n: {c.value: float(r.probabilities[i]) for i, c in enumerate(CATEGORIES)}
            for n, r in self.results.items()
        }


def analyse_crops(
    crops: np.ndarray,
    models: Mapping[str, LoadedModel],
    *,
    cam_method: str | None = "GradCAM",
    cam_target: Category | str | None = None,
    contributions: bool = True,
) -> Analysis:
    """Run every model on (3, 70, 70) uint8 crops; CAMs for the predicted category, or for
    `cam_target` when given; no CAMs when cam_method is None. With `contributions`, each
    model of two or more phases also says how much each phase drives P(that category)
    (livercore.contribution)."""
    if crops.shape != (len(PHASES), CROP_SIZE, CROP_SIZE) or crops.dtype != np.uint8:
        raise InputError("The lesion crops must be three 70 x 70 8-bit images.")
    from livercore.explain import class_activation_map  # grad-cam costs seconds to import: only when used

    target = Category(cam_target) if cam_target else None
    start = time.perf_counter()
    results = {}
    with MODEL_LOCK, torch.inference_mode(False):
        for name, m in models.items():
            x = select_channels(crops, m.phase_model)
            proba = predict_proba(m.net, x[None])[0]
            want = target or CATEGORIES[int(np.argmax(proba))]
            cam = class_activation_map(m.net, x, want.output_index, cam_method) if cam_method else None
            has_target = cam_method is not None and getattr(CAM_METHODS.get(cam_method), "has_target", True)
            phases = m.phase_model.phases
            contribution = (
                phase_contributions(m.net, x, phases, want) if contributions and len(phases) > 1 else None
            )
            results[name] = ModelResult(name, proba, cam, want if has_target else None, contribution)
    return Analysis(crops, results, time.perf_counter() - start, cam_method)


def analyse_case(
    hu: Mapping[Phase, np.ndarray],
    boxes: Mapping[Phase, LesionBox],
    spacing_mm: Mapping[Phase, float | None] | float | None,
    models: Mapping[str, LoadedModel],
    **kwargs: Any,
) -> Analysis:
    """Preprocess three phases around their lesion boxes and analyse them (see analyse_crops)."""
    return analyse_crops(preprocess_case(hu, boxes, spacing_mm), models, **kwargs)
