"""The one entry point for analysing a case: preprocess, five phase-models, CAMs.

Used by the app's pages, the CLI and the tests. Thread-safe: Streamlit serves every browser
session as a thread of one process and shares the cached models, so inference and CAMs run
under one lock (`MODEL_LOCK`); results are bit-identical to a sequential run.

Each model's probabilities are calibrated by the temperature stored with it
(livercore.calibration; the network's own are kept as `raw_probabilities`), and each model says
whether the case is unlike its training data (livercore.ood: the feature distance from the same
forward pass, and, from the HU images, `analyse_case`'s image checks).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from livercore.calibration import TemperatureScaling
from livercore.contribution import PhaseContribution, phase_contributions
from livercore.errors import InputError
from livercore.measure import Measurements, Point
from livercore.model import (
    LiverNet,
    ModelContract,
    ModelFileError,
    TemperatureScaled,
    load_model,
    select_channels,
)
from livercore.ood import ImageFinding, OODResult, OODStatistics, assess, check_images
from livercore.paths import default_models_dir
from livercore.preprocess import CROP_SIZE, LesionBox, preprocess_case
from livercore.vocab import (
    CAM_METHODS,
    CATEGORIES,
    MODEL_NAMES,
    PHASE_MODELS,
    PHASES,
    Category,
    Phase,
    PhaseModel,
)

MODEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    name: str
    net: LiverNet
    phase_model: PhaseModel
    card: dict[str, Any]
    contract: ModelContract  # what it was trained on (load_model checked it against preprocess)
    calibration: TemperatureScaling = field(default_factory=TemperatureScaling)  # identity: none stored
    ood: OODStatistics | None = None  # None: a file without OOD statistics (no feature check)
    notes: tuple[str, ...] = ()  # what its file lacks, in sentences (SavedModel.notes)

    @property
    def categories(self) -> tuple[Category, ...]:
        """The categories the model knows (its contract's; fewer than five when its training
        cohort lacked some): the others always get probability 0."""
        return self.net.known_categories


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
        out[name] = LoadedModel(
            name,
            saved.net,
            saved.phase_model,
            saved.card,
            saved.contract,
            saved.calibration,
            saved.ood,
            saved.notes,
        )
    if not out:
        raise FileNotFoundError(f"no trained models in {root}")
    return out


@dataclass
class ModelResult:
    name: str
    probabilities: np.ndarray  # (5,) A..E, calibrated (softmax(logits / temperature)): what to show
    cam: np.ndarray | None  # (70, 70) float32 in [0, 1], on the crops the model saw
    cam_target: Category | None  # None for EigenCAM, which has no target, and without a CAM
    # How much each phase drives P(the CAM's category, else the top one), calibrated as
    # `probabilities`: models with 2+ phases.
    contribution: PhaseContribution | None = None
    raw_probabilities: np.ndarray | None = None  # (5,) the network's own softmax(logits)
    temperature: float = 1.0  # the model's stored temperature (1: uncalibrated)
    ood: OODResult | None = None  # whether the case is unlike this model's training data
    categories: tuple[Category, ...] = CATEGORIES  # the ones the model knows (the others get 0)

    @property
    def predicted(self) -> Category:
        return CATEGORIES[int(np.argmax(self.probabilities))]

    @property
    def unlike_training(self) -> bool:
        return self.ood is not None and self.ood.unlike_training


@dataclass
class Analysis:
    crops: np.ndarray  # (3, 70, 70) uint8, phases in vocab.PHASES order
    results: dict[str, ModelResult]
    seconds: float
    cam_method: str | None = None
    notes: list[str] = field(default_factory=list)
    findings: list[ImageFinding] = field(default_factory=list)  # image checks that fired (analyse_case)

    def probability_table(self) -> dict[str, dict[str, float]]:
        """Model -> category -> calibrated probability."""
        return {
            n: {c.value: float(r.probabilities[i]) for i, c in enumerate(CATEGORIES) if c in r.categories}
            for n, r in self.results.items()
        }

    def raw_probability_table(self) -> dict[str, dict[str, float]]:
        """Model -> category -> the network's own (uncalibrated) probability."""
        return {
            n: {
                c.value: float(
                    (r.raw_probabilities if r.raw_probabilities is not None else r.probabilities)[i]
                )
                for i, c in enumerate(CATEGORIES)
            }
            for n, r in self.results.items()
        }

    @property
    def unlike_training(self) -> list[str]:
        """The models for which this case is unlike the training data, in the paper's order."""
        return [n for n, r in self.results.items() if r.unlike_training]

    def ood_table(self) -> dict[str, dict[str, Any]]:
        """Model -> its OODResult as JSON (the report's scores), plus each model's temperature."""
        return {
            n: {**(r.ood.to_dict() if r.ood else {}), "temperature": r.temperature}
            for n, r in self.results.items()
        }

    def with_findings(self, findings: Sequence[ImageFinding]) -> Analysis:
        """This analysis with image findings (ood.check_images on the case's HU images) added to
        the OOD result of every model that sees their phase; nothing is recomputed."""
        results = {
            n: replace(r, ood=r.ood.with_findings(findings, PHASE_MODELS[n].phases)) if r.ood else r
            for n, r in self.results.items()
        }
        seen = [*self.findings, *(f for f in findings if f not in self.findings)]
        return replace(self, results=results, findings=seen)


def analyse_crops(
    crops: np.ndarray,
    models: Mapping[str, LoadedModel],
    *,
    cam_method: str | None = "GradCAM",
    cam_target: Category | str | None = None,
    contributions: bool = True,
    explain: Collection[str] | None = None,
) -> Analysis:
    """Run every model on (3, 70, 70) uint8 crops; CAMs for the predicted category, or for
    `cam_target` when given; no CAMs when cam_method is None. With `contributions`, each
    model of two or more phases also says how much each phase drives P(that category)
    (livercore.contribution). `explain` names the models that get the CAM and the
    contributions (None: all); the others give their probabilities and OOD check only, from
    one forward pass (a page that shows one model's CAM need not pay for five).
    Probabilities are calibrated by each model's temperature (the
    network's own in `raw_probabilities`); each result carries the model's OOD check on its
    features, from the same forward pass (image checks need the HU images: analyse_case, or
    Analysis.with_findings)."""
    if crops.shape != (len(PHASES), CROP_SIZE, CROP_SIZE) or crops.dtype != np.uint8:
        raise InputError("The lesion crops must be three 70 x 70 8-bit images.")
    from livercore.explain import engine_for  # grad-cam costs seconds to import: only when used

    target = Category(cam_target) if cam_target else None
    start = time.perf_counter()
    results = {}
    with MODEL_LOCK, torch.inference_mode(False):
        for name, m in models.items():
            x = select_channels(crops, m.phase_model)
            known = target if target in m.categories else None  # a CAM for a category it knows

            def choose(logits: np.ndarray, m: LoadedModel = m, known: Category | None = known) -> int:
                """The CAM's category: the one asked for, else the top calibrated probability."""
                return known.output_index if known else int(np.argmax(_calibrated(m, logits)))

            explained = explain is None or name in explain
            run = engine_for(m.net).run(x, cam_method if explained else None, choose)
            raw = _softmax(run.logits)
            proba = _calibrated(m, run.logits)
            want = CATEGORIES[run.target]
            has_target = cam_method is not None and getattr(CAM_METHODS.get(cam_method), "has_target", True)
            phases = m.phase_model.phases
            contribution = (
                phase_contributions(_calibrated_net(m), x, phases, want)
                if contributions and explained and len(phases) > 1
                else None
            )
            results[name] = ModelResult(
                name,
                proba,
                run.cam,
                want if has_target and explained else None,
                contribution,
                raw_probabilities=raw,
                temperature=m.calibration.temperature,
                ood=assess(name, m.ood, run.features, phases=phases),
                categories=m.categories,
            )
    return Analysis(crops, results, time.perf_counter() - start, cam_method)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """(5,) float32 logits -> probabilities (5,) float32, as model.probabilities computes them."""
    return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits, np.float32)), dim=0).numpy()


def _calibrated(m: LoadedModel, logits: np.ndarray) -> np.ndarray:
    """(5,) logits -> the model's calibrated probabilities (its own when it has no temperature)."""
    return _softmax(logits) if not m.calibration.fitted else _softmax(logits / m.calibration.temperature)


def _calibrated_net(m: LoadedModel) -> LiverNet:
    """The model's network with its temperature applied, for the phase contributions, so their
    probabilities are the ones shown. phase_contributions only calls the network and reads its
    parameters' device, which the wrapper shares."""
    if not m.calibration.fitted:
        return m.net
    return cast(LiverNet, TemperatureScaled(m.net, m.calibration.temperature))


def analyse_case(
    hu: Mapping[Phase, np.ndarray],
    boxes: Mapping[Phase, LesionBox],
    spacing_mm: Mapping[Phase, float | None] | float | None,
    models: Mapping[str, LoadedModel],
    *,
    measurements: Measurements | None = None,
    aorta: Mapping[Phase, Point] | Point | None = None,
    **kwargs: Any,
) -> Analysis:
    """Preprocess three phases (H, W) in HU around their lesion boxes, analyse them (see
    analyse_crops) and run the image checks (livercore.ood.check_images) on them: from the page's
    `measurements` (measure.measure_case, the ROIs the user placed) when given, else the liver
    ring around the lesion and the aorta at `aorta` or found by ood.find_aorta."""
    analysis = analyse_crops(preprocess_case(hu, boxes, spacing_mm), models, **kwargs)
    return analysis.with_findings(check_images(hu, boxes, spacing_mm, measurements=measurements, aorta=aorta))
