"""Is this case like the training images? Out-of-distribution checks beside every prediction.

A network answers with five probabilities whatever it is shown: a real patient, a portal-venous
series labelled arterial, a box on the lung. Two kinds of check say when the answer rests on
images unlike those the model learnt from, each with its reason in words:

- **feature distances** (`OODStatistics`, per phase-model): class-conditional Mahalanobis
  distances (Lee et al., NeurIPS 2018: one Gaussian per category with a covariance shared by
  all, here Ledoit-Wolf shrunk; a case's distance is to the nearest category's mean) in two of
  the network's feature spaces (`FEATURE_SPACES`), both from the one forward pass that predicts:
  the penultimate layer (what the network has made of the lesion just before it decides) and
  the channel means and SDs of its three convolutional blocks (the brightness, contrast and
  texture it responds to). Both are needed: on the shipped models the penultimate distance alone
  passes uniform noise, flat images and real CT as in-distribution (the network maps them close
  to a category), which the convolutional statistics flag (benchmarks/ship_statistics.py).
  Fitted at ship time on the training cohort; thresholded on the validation cohort (valid-2014,
  never test-2016) so that a stated share of its cases (IN_DISTRIBUTION_RATE, 99 %) passes both;
  stored in the model file.
- **image checks** (`check_images`, per phase): the liver and aorta attenuation and the noise
  beside the lesion against the ranges of the training images (`TRAINING_RANGES`, the
  phantom's, ../shared/docs/phantom.md section 2), and a lesion field that is mostly air.

`assess` combines them into one `OODResult` per model: a model is flagged when its feature
distance exceeds its threshold or an image check fires on a phase it sees. The prediction is
still shown, labelled as made on images unlike the training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from livercore import measure
from livercore.measure import Measurements, Point
from livercore.preprocess import LesionBox, crop_square, field_side_px
from livercore.vocab import PHASES, Phase

# --- the feature distances ------------------------------------------------------------------

IN_DISTRIBUTION_RATE = 0.99  # the share of validation cases the thresholds let through, jointly
# The feature spaces of livercore.model.LiverNet.forward_with_features, with what each distance
# means, in words for the reasons.
FEATURE_SPACES: dict[str, str] = {
    "penultimate": "summary of the lesion just before it decides (its penultimate layer)",
    "convolutional": "reading of the image's brightness, contrast and texture (its convolutional layers)",
}


@dataclass(frozen=True, eq=False)
class FeatureDistance:
    """Class-conditional Mahalanobis distance in one feature space (Lee et al. 2018): per-category
    means and one shared, shrunk precision matrix, and the threshold chosen on validation."""

    space: str  # a key of FEATURE_SPACES
    class_means: np.ndarray  # (K, D) float64: mean feature of each category's training crops
    precision: np.ndarray  # (D, D) float64: inverse of the shared, shrunk covariance
    shrinkage: float  # Ledoit-Wolf's weight of the scaled identity, 0..1
    threshold: float | None = None  # distances above it are flagged; None: not yet chosen

    @classmethod
    def fit(cls, space: str, features: np.ndarray, labels: np.ndarray, *, n_classes: int) -> FeatureDistance:
        """Fit on training features (N, D) with labels (N,) in 0..n_classes-1: each category's
        mean and the Ledoit-Wolf covariance of the features less their category's mean."""
        from sklearn.covariance import LedoitWolf

        f = np.asarray(features, np.float64)
        y = np.asarray(labels)
        present = sorted(set(y.tolist()))
        if len(present) < 2 or not set(present) <= set(range(n_classes)):
            raise ValueError(
                f"training features of two or more of classes 0..{n_classes - 1} needed, got {present}"
            )
        # A category the training cohort lacks has no mean: the model does not know it
        # (livercore.model.LiverNet.know_only), and distances go to the categories it knows.
        means = np.stack([f[y == k].mean(axis=0) for k in present])
        centred = f - means[np.searchsorted(present, y)]
        estimator = LedoitWolf(assume_centered=True).fit(centred)
        return cls(space, means, np.asarray(estimator.precision_, np.float64), float(estimator.shrinkage_))

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) distance to the nearest category's mean, in units of the shared
        covariance's SD (higher: less like the training images)."""
        f = np.asarray(features, np.float64)
        diff = f[:, None, :] - self.class_means[None]  # (N, K, D)
        squared = np.einsum("nkd,nkd->nk", diff @ self.precision, diff)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))


@dataclass(frozen=True, eq=False)
class OODStatistics:
    """A model's feature distances (one per FEATURE_SPACES entry) and how they were fitted and
    thresholded. Stored in the model file (livercore.model.save_model, add_statistics)."""

    distances: dict[str, FeatureDistance]
    fitted_on: str  # the training cohort, in words
    n_fit: int
    in_distribution_rate: float | None = None  # the stated validation share let through
    threshold_on: str | None = None  # the validation cohort, in words
    n_threshold: int = 0
    validation_share: float | None = None  # the share of it measured within every threshold

    @classmethod
    def fit(
        cls, features: Mapping[str, np.ndarray], labels: np.ndarray, *, fitted_on: str, n_classes: int
    ) -> OODStatistics:
        """Fit a FeatureDistance per space of training features {space: (N, D)}, labels (N,)."""
        distances = {k: FeatureDistance.fit(k, v, labels, n_classes=n_classes) for k, v in features.items()}
        return cls(distances, fitted_on, len(labels))

    def scores(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{space: (N, D)} features -> {space: (N,) distance}."""
        return {k: d.score(features[k]) for k, d in self.distances.items()}

    def within(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N,) bool: within every threshold (in distribution)."""
        out = np.ones(len(next(iter(features.values()))), bool)
        for k, d in self.distances.items():
            if d.threshold is None:
                raise ValueError("no thresholds chosen")
            out &= d.score(features[k]) <= d.threshold
        return out

    def with_thresholds(
        self, features: Mapping[str, np.ndarray], *, threshold_on: str, rate: float = IN_DISTRIBUTION_RATE
    ) -> OODStatistics:
        """Thresholds from validation features {space: (N, D)}: every space at the same quantile
        q of its validation distances, the smallest q (from `rate` up) at which at least `rate`
        of the validation cases pass every threshold."""
        scores = self.scores(features)
        n = len(next(iter(scores.values())))
        for q in np.linspace(rate, 1.0, 201):
            thresholds = {k: float(np.quantile(v, q)) for k, v in scores.items()}
            share = float(np.mean(np.all([scores[k] <= t for k, t in thresholds.items()], axis=0)))
            if share >= rate:
                break
        distances = {k: replace(d, threshold=thresholds[k]) for k, d in self.distances.items()}
        return replace(
            self,
            distances=distances,
            in_distribution_rate=float(rate),
            threshold_on=threshold_on,
            n_threshold=n,
            validation_share=share,
        )

    @property
    def thresholded(self) -> bool:
        return all(d.threshold is not None for d in self.distances.values())

    def to_state(self) -> dict[str, Any]:
        """Arrays and JSON-able dicts, as livercore.model stores them."""
        meta = {k: v for k, v in asdict(self).items() if k != "distances"}
        return {
            "meta": meta,
            "distances": {
                k: {
                    "class_means": d.class_means,
                    "precision": d.precision,
                    "meta": {"shrinkage": d.shrinkage, "threshold": d.threshold},
                }
                for k, d in self.distances.items()
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OODStatistics:
        distances = {
            k: FeatureDistance(
                k,
                np.asarray(v["class_means"], np.float64),
                np.asarray(v["precision"], np.float64),
                float(v["meta"]["shrinkage"]),
                v["meta"]["threshold"],
            )
            for k, v in state["distances"].items()
        }
        meta = state["meta"]
        return cls(
            distances, **{k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "distances"}
        )

    def summary(self) -> dict[str, Any]:
        """What a model card records of it."""
        return {
            "method": "class-conditional Mahalanobis distances, shared Ledoit-Wolf covariance (Lee et al. 2018)",
            "spaces": {
                k: {
                    "what": FEATURE_SPACES.get(k, k),
                    "dimensions": int(d.class_means.shape[1]),
                    "shrinkage": round(d.shrinkage, 4),
                    "threshold": None if d.threshold is None else round(d.threshold, 3),
                }
                for k, d in self.distances.items()
            },
            "fitted_on": self.fitted_on,
            "n_fit": self.n_fit,
            "in_distribution_rate": self.in_distribution_rate,
            "threshold_on": self.threshold_on,
            "n_threshold": self.n_threshold,
            "validation_share": self.validation_share,
        }


# --- the image checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class HuRange:
    """A range of attenuation (HU) or of noise SD (HU)."""

    low: float
    high: float

    def text(self) -> str:
        return f"{self.low:.0f}-{self.high:.0f} HU"


@dataclass(frozen=True)
class PhaseRanges:
    """What the training images show in one phase (ROI means and SD, HU)."""

    liver_hu: HuRange  # liver parenchyma, normal and cirrhotic
    aorta_hu: HuRange
    noise_sd_hu: HuRange  # noise_sd: local SD beside the lesion


# The phantom's ranges (phantom.md section 2; livercore.phantom.spec: the unenhanced value plus the
# phase's increment times the patient's contrast factor 0.8-1.2, normal and cirrhotic livers),
# rounded outwards; the noise (noise_sd) as measured on valid-2014, whose 200 cases all fall
# inside (benchmarks/ship_statistics.py). Every shipped model was trained on such images.
TRAINING_RANGES: dict[Phase, PhaseRanges] = {
    Phase.UNENHANCED: PhaseRanges(HuRange(40, 65), HuRange(35, 45), HuRange(7, 16)),
    Phase.ARTERIAL: PhaseRanges(HuRange(60, 100), HuRange(240, 425), HuRange(9, 20)),
    Phase.DELAYED: PhaseRanges(HuRange(80, 130), HuRange(100, 185), HuRange(9, 20)),
}
HU_TOLERANCE = 25.0  # HU beyond a range before a check fires: ROI placement, partial volume
NOISE_TOLERANCE = 1.5  # a noise SD more than 1.5 x the range's top (or under its bottom / 1.5)
AIR_HU = measure.BODY_MIN_HU  # below this a pixel is air or lung, not the patient's tissue
MAX_AIR_FRACTION = 0.5  # a lesion field more than half air is mostly outside the body


@dataclass(frozen=True)
class ImageFinding:
    """One image check that fired on one phase, with its sentence."""

    phase: Phase
    check: str  # "liver_hu", "aorta_hu", "noise", "air"
    value: float  # what was measured (HU, HU SD, or the air fraction 0..1)
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "check": self.check,
            "value": round(self.value, 3),
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class PhaseStatistics:
    """The measurements the image checks judge, for one phase (None: not measurable)."""

    liver_hu: float | None
    noise_sd_hu: float | None  # noise_sd beside the lesion
    aorta_hu: float | None
    air_fraction: float | None  # of the lesion's field of view (the crop the network sees)


def image_statistics(
    hu: Mapping[Phase, np.ndarray],
    boxes: Mapping[Phase, LesionBox],
    spacing_mm: Mapping[Phase, float | None] | float | None,
    *,
    measurements: Measurements | None = None,
    aorta: Mapping[Phase, Point] | Point | None = None,
) -> dict[Phase, PhaseStatistics]:
    """Per phase of (H, W) HU images: liver mean (HU), noise (noise_sd), aorta mean (HU) and the
    air share of the lesion's field. Liver and aorta from `measurements` when given (the page's,
    measure.measure_case, with the ROIs the user placed); otherwise the liver ring around the
    lesion box and a 1 cm aorta ROI at `aorta` (one centre for every phase, or one per phase) or
    at find_aorta's centre. An aorta ROI that is not blood (below AORTA_MIN_HU: air or fat, a
    missed aorta) is not judged."""
    spacing = {p: spacing_mm.get(p) if isinstance(spacing_mm, Mapping) else spacing_mm for p in hu}
    if measurements is None:
        if aorta is None:
            found = find_aorta(hu, next(iter(spacing.values()), None))
            centres: Mapping[Phase, Point] = dict.fromkeys(hu, found) if found else {}
        elif isinstance(aorta, Mapping):
            centres = aorta
        else:
            centres = dict.fromkeys(hu, aorta)
        measurements = measure.measure_case(hu, spacing, boxes, {}, centres)
    out = {}
    for p, image in hu.items():
        liver, aorta_stats = measurements.liver.get(p), measurements.aorta.get(p)
        box = boxes.get(p)
        air = noise = None
        if box is not None:
            side = field_side_px(box, spacing[p])
            crop = crop_square(np.asarray(image, np.float32), box.row, box.col, side, fill=-1000)
            air = float((crop < AIR_HU).mean())
            noise = noise_sd(image, box, spacing[p])
        out[p] = PhaseStatistics(
            liver.mean_hu if liver else None,
            noise,
            aorta_stats.mean_hu if aorta_stats and aorta_stats.mean_hu >= AORTA_MIN_HU else None,
            air,
        )
    return out


AORTA_MIN_HU = -50.0  # an aorta ROI below this holds fat or air: the aorta was not found there
NOISE_WINDOW_MM = 3.5  # local SD over windows this wide: noise, hardly any anatomy
NOISE_MIN_PIXELS = 50
AORTA_SEARCH_ORDER = (Phase.ARTERIAL, Phase.DELAYED, Phase.UNENHANCED)  # best opacified first


def noise_sd(hu: np.ndarray, box: LesionBox, spacing_mm: float | None) -> float | None:
    """Image noise (HU) beside a lesion: the median, over the soft-tissue pixels of the liver ring
    around its box (measure.ring_mask, measure.LIVER_RING_HU), of the SD in a NOISE_WINDOW_MM
    window around each; a vessel or an edge moves few windows, so the median is the noise.
    None when the ring holds under NOISE_MIN_PIXELS soft-tissue pixels."""
    from scipy import ndimage

    sp = spacing_mm or 1.0
    k = max(3, round(NOISE_WINDOW_MM / sp) | 1)
    # Only the ring's neighbourhood, k pixels beyond its outer edge, is read (not the whole image).
    reach = max(box.height, box.width) / 2 + (measure.RING_GAP_MM + measure.RING_WIDTH_MM) / sp + k + 1
    r0, r1 = max(int(box.row - reach), 0), min(int(box.row + reach) + 1, hu.shape[0])
    c0, c1 = max(int(box.col - reach), 0), min(int(box.col + reach) + 1, hu.shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    ring = measure.ring_mask((r1 - r0, c1 - c0), replace(box, row=box.row - r0, col=box.col - c0), spacing_mm)
    image = np.asarray(hu[r0:r1, c0:c1], np.float64)
    tissue = ring & (image >= measure.LIVER_RING_HU[0]) & (image <= measure.LIVER_RING_HU[1])
    if tissue.sum() < NOISE_MIN_PIXELS:
        return None
    mean = ndimage.uniform_filter(image, k)
    variance = np.maximum(ndimage.uniform_filter(image * image, k) - mean * mean, 0.0) * (k * k / (k * k - 1))
    return float(np.median(np.sqrt(variance[tissue])))


def find_aorta(hu: Mapping[Phase, np.ndarray], spacing_mm: float | None) -> Point | None:
    """The aorta's centre (row, col) for every phase of (H, W) HU images of one table position:
    where measure.aorta_in_slice finds it in one image (the arterial first, the one it shows
    best, then the delayed and the unenhanced), else measure.locate_aorta (by its enhancement
    between the phases). In-slice first: on valid-2014 the enhancement search takes another blob
    for the aorta in 7 of 200 cases, and the check must not then call a true arterial phase
    unenhanced."""
    for p in AORTA_SEARCH_ORDER:
        if p in hu:
            hit = measure.aorta_in_slice(np.asarray(hu[p], np.float32), spacing_mm)
            if hit is not None:
                return hit[0]
    return measure.locate_aorta(hu, spacing_mm)


def judge_statistics(statistics: Mapping[Phase, PhaseStatistics]) -> list[ImageFinding]:
    """The image checks that fire on per-phase statistics, each with its sentence."""
    out = []
    for p, s in statistics.items():
        ranges = TRAINING_RANGES[p]
        for check, what, value, expected in (
            ("aorta_hu", "aorta", s.aorta_hu, ranges.aorta_hu),
            ("liver_hu", "liver", s.liver_hu, ranges.liver_hu),
        ):
            if value is None:
                continue
            if value < expected.low - HU_TOLERANCE or value > expected.high + HU_TOLERANCE:
                side = "below" if value < expected.low else "above"
                sentence = (
                    f"the {p.value} {what} measures {value:.0f} HU, far {side} the {expected.text()} of the "
                    f"training images"
                )
                hint = _phase_hint(p, check, value)
                out.append(ImageFinding(p, check, value, f"{sentence}{': ' + hint if hint else ''}."))
        noise = ranges.noise_sd_hu
        if s.noise_sd_hu is not None and not (
            noise.low / NOISE_TOLERANCE <= s.noise_sd_hu <= noise.high * NOISE_TOLERANCE
        ):
            side = "more" if s.noise_sd_hu > noise.high else "less"
            out.append(
                ImageFinding(
                    p,
                    "noise",
                    s.noise_sd_hu,
                    f"the {p.value} image noise beside the lesion is {s.noise_sd_hu:.0f} HU (SD), {side} than "
                    f"the {noise.text()} of the training images: another dose, slice thickness, kernel or "
                    "reconstruction.",
                )
            )
        if s.air_fraction is not None and s.air_fraction > MAX_AIR_FRACTION:
            out.append(
                ImageFinding(
                    p,
                    "air",
                    s.air_fraction,
                    f"{s.air_fraction * 100:.0f} % of the {p.value} lesion field is air (below "
                    f"{AIR_HU:.0f} HU): the box lies mostly outside the body or on the lung, not on the liver.",
                )
            )
    return out


def _phase_hint(phase: Phase, check: str, value: float) -> str:
    """What an aorta out of its phase's range suggests about the phase."""
    if check != "aorta_hu":
        return ""
    if phase is Phase.ARTERIAL and value < TRAINING_RANGES[Phase.ARTERIAL].aorta_hu.low:
        if value <= TRAINING_RANGES[Phase.UNENHANCED].aorta_hu.high + HU_TOLERANCE:
            return "this looks like an unenhanced image, not an arterial phase"
        return "this may not be an arterial phase (a portal-venous or delayed one?)"
    if phase is Phase.UNENHANCED and value > TRAINING_RANGES[Phase.UNENHANCED].aorta_hu.high:
        return "contrast has been given, so this is not an unenhanced image"
    if phase is Phase.DELAYED and value > TRAINING_RANGES[Phase.DELAYED].aorta_hu.high:
        return "this may be an earlier (arterial or portal-venous) phase, not the 3-minute delayed one"
    if phase is Phase.DELAYED and value < TRAINING_RANGES[Phase.DELAYED].aorta_hu.low:
        return "this looks like an unenhanced image, not a delayed phase"
    return ""


def check_images(
    hu: Mapping[Phase, np.ndarray],
    boxes: Mapping[Phase, LesionBox],
    spacing_mm: Mapping[Phase, float | None] | float | None,
    *,
    measurements: Measurements | None = None,
    aorta: Mapping[Phase, Point] | Point | None = None,
) -> list[ImageFinding]:
    """The image checks that fire on a case's (H, W) HU images (image_statistics, then
    judge_statistics), each with its sentence; [] when the images look like the training ones."""
    return judge_statistics(image_statistics(hu, boxes, spacing_mm, measurements=measurements, aorta=aorta))


# --- one result per model ---------------------------------------------------------------------


@dataclass(frozen=True)
class OODResult:
    """One phase-model's out-of-distribution check on one case (JSON: `to_dict`).

    `score` is the largest feature distance relative to its threshold (distance / threshold), so
    `threshold` is 1: above it the case is unlike the training data; `distances` has each space's
    own distance and threshold."""

    model: str
    score: float | None  # max over spaces of distance / threshold; None: no statistics in the file
    threshold: float | None  # 1.0 (relative); None without statistics
    in_distribution_rate: float | None  # the validation share the thresholds let through
    unlike_training: bool  # a feature distance is above its threshold, or an image check fired
    reasons: list[str] = field(default_factory=list)  # plain sentences, one per check that fired
    findings: list[ImageFinding] = field(default_factory=list)  # the image checks that fired
    distances: dict[str, dict[str, float]] = field(default_factory=dict)  # space -> distance, threshold
    feature_check: bool = True  # False for a model file without statistics (no distance computed)

    @property
    def headline(self) -> str:
        """One sentence for a notice: what was found, or what was checked."""
        if self.unlike_training:
            return "Unlike the training data: " + " ".join(_capitalise(r) for r in self.reasons)
        if not self.feature_check:
            return "This model file carries no out-of-distribution statistics: its features were not checked."
        return "Like the training data: its features and the image checks are within their ranges."

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": None if self.score is None else round(self.score, 4),
            "threshold": self.threshold,
            "in_distribution_rate": self.in_distribution_rate,
            "unlike_training": self.unlike_training,
            "reasons": list(self.reasons),
            "findings": [f.to_dict() for f in self.findings],
            "distances": {k: {m: round(v, 3) for m, v in d.items()} for k, d in self.distances.items()},
            "feature_check": self.feature_check,
        }

    def with_findings(self, findings: Sequence[ImageFinding], phases: Sequence[Phase]) -> OODResult:
        """This result with the image findings on `phases` (the model's) added to its reasons."""
        mine = [f for f in findings if f.phase in phases and f not in self.findings]
        if not mine:
            return self
        return replace(
            self,
            unlike_training=True,
            reasons=[*self.reasons, *(f.sentence for f in mine)],
            findings=[*self.findings, *mine],
        )


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def assess(
    model: str,
    statistics: OODStatistics | None,
    features: Mapping[str, np.ndarray] | None,
    *,
    phases: Sequence[Phase] = PHASES,
    findings: Sequence[ImageFinding] = (),
) -> OODResult:
    """One model's OODResult for one case from its statistics (None: a file without them) and
    its features {space: (1, D)} (LiverNet.forward_with_features), with the image findings of
    the case (those on `phases`, the model's, count)."""
    if statistics is None or not statistics.thresholded or features is None:
        return OODResult(model, None, None, None, False, feature_check=False).with_findings(findings, phases)
    reasons, distances, relative = [], {}, []
    rate = statistics.in_distribution_rate or IN_DISTRIBUTION_RATE
    for space, d in statistics.distances.items():
        assert d.threshold is not None  # thresholded
        value = float(d.score(features[space])[0])
        distances[space] = {"distance": value, "threshold": d.threshold}
        relative.append(value / d.threshold)
        if value > d.threshold:
            reasons.append(
                f"the network's {FEATURE_SPACES.get(space, space)} is {value:.0f} units from the nearest "
                f"category of its training images, beyond the {d.threshold:.0f} within which "
                f"{rate * 100:.0f} % of the validation images stay."
            )
    result = OODResult(
        model=model,
        score=max(relative),
        threshold=1.0,
        in_distribution_rate=rate,
        unlike_training=bool(reasons),
        reasons=reasons,
        distances=distances,
    )
    return result.with_findings(findings, phases)
