"""Calibration: temperature scaling, expected calibration error and the reliability diagram.

A network trained to a low loss is usually overconfident: of the cases it calls 95 % sure, fewer
than 95 % are right. Temperature scaling (Guo et al., ICML 2017) divides every logit by one
number T fitted on a validation cohort by minimising the negative log-likelihood; the argmax,
hence the accuracy, is unchanged, and T > 1 softens overconfident probabilities. livercore fits
T per phase-model at ship time (`livercore.study.ship`) on the validation cohort valid-2014, never
on test-2016, and stores it in the model file; the app shows the calibrated probabilities.

The expected calibration error (ECE) is Guo et al.'s: the top-label confidence of each case in
N_BINS = 15 equal-width bins of [0, 1] (bin m holds confidences in ((m - 1) / 15, m / 15], the
first also 0), and the mean over cases of |accuracy - confidence| of their bin, weighted by the
bin's share of the cases. 0 is perfectly calibrated; 0.05 means confidence and accuracy differ
by 5 percentage points on average.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special

N_BINS = 15  # Guo et al.'s 15 equal-width bins, the usual choice for ECE
TEMPERATURE_BOUNDS = (0.05, 20.0)  # wide: a real fit lands near 1-3; the bounds only keep it finite
PROBABILITY_FLOOR = 1e-7  # stored probabilities rounded to 0 are lifted to this before their log


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / temperature): (N, K) logits -> (N, K) probabilities, float64."""
    return special.softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """(N, K) probabilities -> log-probabilities, which differ from the network's logits by a
    constant per row and so give the same softmax(. / T): calibrates stored predictions."""
    return np.log(np.clip(np.asarray(probabilities, np.float64), PROBABILITY_FLOOR, 1.0))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log P(true class) of (N, K) logits at a temperature; labels (N,) class indices."""
    log_p = special.log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-log_p[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) on
    (N, K) logits with labels (N,) (Guo et al. 2017); bounded Brent search over log T, which is
    one-dimensional and, as a function of 1 / T, convex."""
    if len(labels) == 0:
        raise ValueError("no cases to fit a temperature on")
    low, high = np.log(TEMPERATURE_BOUNDS)
    result = optimize.minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram: confidences in (lower, upper]."""

    lower: float
    upper: float
    confidence: float | None  # mean top-label confidence of its cases; None when empty
    accuracy: float | None  # share of its cases whose top label is right; None when empty
    count: int


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Reliability-diagram data for one model: N_BINS equal-width bins of top-label confidence
    (draw accuracy against confidence, bars by count) and their expected calibration error."""

    bins: tuple[ReliabilityBin, ...]
    ece: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "n": self.n, "bins": [asdict(b) for b in self.bins]}


def reliability_diagram(
    probabilities: np.ndarray, labels: np.ndarray, *, n_bins: int = N_BINS
) -> ReliabilityDiagram:
    """The reliability diagram of (N, K) probabilities against labels (N,) class indices:
    `n_bins` equal-width bins of the top-label confidence, each with its mean confidence,
    accuracy and count, and the expected calibration error (module docstring)."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    ece = 0.0
    for m in range(n_bins):
        members = index == m
        count = int(members.sum())
        conf: float | None = None
        acc: float | None = None
        if count:
            conf, acc = float(confidence[members].mean()), float(correct[members].mean())
            ece += count / len(y) * abs(acc - conf)
        bins.append(ReliabilityBin(float(edges[m]), float(edges[m + 1]), conf, acc, count))
    return ReliabilityDiagram(tuple(bins), float(ece), len(y))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, *, n_bins: int = N_BINS
) -> float:
    """ECE (0 = calibrated) of (N, K) probabilities against labels (N,): module docstring."""
    return reliability_diagram(probabilities, labels, n_bins=n_bins).ece


@dataclass(frozen=True)
class TemperatureScaling:
    """A model's calibration, stored in its file: the temperature and how it was fitted.

    `temperature` 1 with `fitted_on` None is the identity: a model saved before livercore
    calibrated its models (its probabilities are the network's own).
    """

    temperature: float = 1.0
    fitted_on: str | None = None  # the validation cohort, in words
    n: int = 0  # its cases
    ece_before: float | None = None  # on that cohort, with temperature 1
    ece_after: float | None = None  # ... and with the fitted temperature
    nll_before: float | None = None
    nll_after: float | None = None

    @property
    def fitted(self) -> bool:
        return self.fitted_on is not None

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, *, fitted_on: str) -> TemperatureScaling:
        """Fit the temperature on validation (N, K) logits and labels (N,), with the ECE and
        negative log-likelihood before and after."""
        t = fit_temperature(logits, labels)
        return cls(
            temperature=t,
            fitted_on=fitted_on,
            n=len(labels),
            ece_before=expected_calibration_error(calibrated_probabilities(logits, 1.0), labels),
            ece_after=expected_calibration_error(calibrated_probabilities(logits, t), labels),
            nll_before=negative_log_likelihood(logits, labels),
            nll_after=negative_log_likelihood(logits, labels, t),
        )

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, K) logits -> calibrated probabilities (N, K)."""
        return calibrated_probabilities(logits, self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemperatureScaling:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


STUDY_FILE = "calibration.json"  # in a shipped study folder (models/study), by livercore.study.ship


def study_calibration(study_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A shipped study's calibration report (livercore.study.fit_ship_statistics), or None when
    the study has none: {"validation_cohort", "models": {model: {"temperature", "validation":
    {"ece_before", "ece_after", "n"}, "test": {"accuracy", "ece_before", "ece_after", "n",
    "reliability_before", "reliability_after"}}}}, each reliability a ReliabilityDiagram.to_dict()."""
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        return None
    report: dict[str, Any] = json.loads(path.read_text())
    return report
