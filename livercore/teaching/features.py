"""The imaging features a learner marks before naming the category, per phase, and their ground
truth on a teaching case.

Readers disagree most on the features (arterial hyperenhancement, washout, capsule), less on the
final label (LI-RADS training studies); the quiz asks for them first and grades each one. The
truth of a phantom or stored case comes from its ground-truth finding flags (the phantom's
`livercore.phantom.lesions.FLAGS`, stored in cases/catalogue.csv), never from a measurement.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from livercore.teaching.catalogue import CATALOGUE, TeachingCase, cases_dir, read_catalogue
from livercore.vocab import Category, Phase


@dataclass(frozen=True)
class Feature:
    key: str
    phase: Phase  # the phase it is read on
    label: str
    hint: str  # what it looks like, for the reveal


FEATURES: tuple[Feature, ...] = (
    Feature("fat", Phase.UNENHANCED, "intralesional fat", "areas below -10 HU inside the lesion"),
    Feature(
        "aphe",
        Phase.ARTERIAL,
        "arterial phase hyperenhancement (non-rim)",
        "the lesion, or most of it, brighter than the liver in the arterial phase",
    ),
    Feature(
        "rim",
        Phase.ARTERIAL,
        "rim enhancement",
        "a ring of enhancement at the lesion's edge, its centre darker",
    ),
    Feature(
        "peripheral_nodular",
        Phase.ARTERIAL,
        "peripheral nodular enhancement",
        "discontinuous nodules at the edge, as bright as the aorta",
    ),
    Feature(
        "no_enhancement",
        Phase.ARTERIAL,
        "no enhancement",
        "the lesion keeps its unenhanced attenuation in every phase (water: a cyst)",
    ),
    Feature(
        "washout", Phase.DELAYED, "washout", "darker than the liver in the delayed phase after enhancing"
    ),
    Feature(
        "capsule",
        Phase.DELAYED,
        "enhancing capsule",
        "a thin smooth bright rim around the lesion in the delayed phase",
    ),
    Feature(
        "fill_in",
        Phase.DELAYED,
        "centripetal fill-in",
        "the peripheral nodules spread inwards, filling the lesion over time",
    ),
)
BY_KEY: dict[str, Feature] = {f.key: f for f in FEATURES}
FLAG_COLUMNS = ("aphe", "rim_enhancement", "peripheral_nodular", "fill_in", "washout", "capsule", "fat")


def features_of(phases: Collection[Phase]) -> list[Feature]:
    """The features read on the phases shown, in FEATURES order."""
    return [f for f in FEATURES if f.phase in phases]


def truth_from_flags(flags: Mapping[str, object], category: Category) -> frozenset[str]:
    """The features a case has, from its ground-truth finding flags."""

    def on(name: str) -> bool:
        value = flags.get(name)
        return bool(value) and value == value  # NaN is not a finding

    out = set()
    if on("fat"):
        out.add("fat")
    if on("rim_enhancement"):
        out.add("rim")
    elif on("aphe") and not on("peripheral_nodular"):
        out.add("aphe")
    if on("peripheral_nodular"):
        out.add("peripheral_nodular")
    if on("fill_in"):
        out.add("fill_in")
    if on("washout"):
        out.add("washout")
    if on("capsule"):
        out.add("capsule")
    if category is Category.E:
        out.add("no_enhancement")
    return frozenset(out)


@lru_cache(maxsize=512)
def _phantom_flags(cohort: str, seed: int, index: int, size: int | None) -> tuple[tuple[str, bool], ...]:
    from livercore.phantom import generate_case

    return tuple(generate_case(cohort, seed, index, size).flags.items())


@lru_cache(maxsize=4)
def _catalogue_flags(path: str, stamp: float) -> dict[str, dict[str, object]]:
    """case_id -> flags of the catalogue rows whose flags are all filled in (read once per
    version of the file)."""
    del stamp  # part of the cache key
    table = read_catalogue(Path(path).parent)
    if "case_id" not in table.columns or not all(c in table.columns for c in FLAG_COLUMNS):
        return {}
    filled = table[table[list(FLAG_COLUMNS)].notna().all(axis=1)]
    return {str(r["case_id"]): r.to_dict() for _, r in filled.iterrows()}


def case_truth(entry: TeachingCase) -> frozenset[str]:
    """The features of a teaching case: a stored example's flags from the catalogue, a phantom
    case's from regenerating it (cached); a site case without flags has none known."""
    path = cases_dir() / CATALOGUE
    stored = _catalogue_flags(str(path), path.stat().st_mtime if path.exists() else 0.0)
    if entry.case_id in stored:
        return truth_from_flags(stored[entry.case_id], entry.category)
    if entry.source == "phantom" or entry.cohort:
        return truth_from_flags(
            dict(_phantom_flags(entry.cohort, entry.seed, entry.index, entry.size)), entry.category
        )
    return frozenset()


@dataclass(frozen=True)
class FeatureMark:
    feature: Feature
    marked: bool
    present: bool

    @property
    def right(self) -> bool:
        return self.marked == self.present

    @property
    def verdict(self) -> str:
        if self.present and self.marked:
            return "seen"
        if self.present:
            return "missed"
        return "wrongly marked" if self.marked else "rightly left out"


def grade(asked: Iterable[Feature], marked: Collection[str], truth: Collection[str]) -> list[FeatureMark]:
    """Each feature offered, marked or not, against the truth."""
    return [FeatureMark(f, f.key in marked, f.key in truth) for f in asked]


def score(marks: Iterable[FeatureMark]) -> tuple[int, int]:
    """(right decisions, features offered)."""
    marks = list(marks)
    return sum(m.right for m in marks), len(marks)
