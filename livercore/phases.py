"""Which image is which phase: one home for the phase assignment.

Three steps, each a proposal the user confirms (the review page shows them):

1. the DICOM headers: a hint per slice from its series description and contrast agent
   (`phase_hint`), then the best one-to-one assignment by acquisition time, hints and upload
   order (`assign_phases`);
2. the headers' warnings: a slice whose own header names another phase, or phases taken from
   one series (`header_warnings`);
3. the aorta: its attenuation must follow the protocol (arterial well above delayed, delayed
   above unenhanced); when it does not, a relabelling is proposed (`aorta_check`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations

from livercore.dicom_io import CTSlice
from livercore.errors import InputError
from livercore.measure import Point, disc_stats, locate_aorta
from livercore.review_case import ReviewCase
from livercore.vocab import PHASES, Phase

# The protocol's order of aortic attenuation: arterial well above delayed, delayed above unenhanced.
ARTERIAL_OVER_DELAYED_HU = 40.0
DELAYED_OVER_UNENHANCED_HU = 15.0
# Three aortas within the protocol's smallest step of each other cannot be put in any order: the
# three images are one phase (e.g. one series uploaded three times).
SAME_PHASE_SPREAD_HU = DELAYED_OVER_UNENHANCED_HU


# --- the headers -------------------------------------------------------------------------------

# Searched in the series description after lower-casing and turning punctuation into spaces.
_ARTERIAL = re.compile(r"\b(arterial|arteriell|art|ap|lap|hap)\b")
_DELAYED = re.compile(
    r"\b(delayed?|equilibrium|equil|eq|late(?! (hepatic )?art)|venous 180 ?s?|180 ?s|3 ?min)\b"
)
_UNENHANCED = re.compile(
    r"\b(unenhanced|non ?enhanced|non ?contrast|without contrast|w o contrast|wo contrast"
    r"|plain|native|nc|pre|pre ?contrast|ncct)\b"
)
# Words that say contrast was given (in this series or the study's protocol, as in "LIVER 2
# PHASE") without naming one of the three phases.
_CONTRAST_GIVEN = re.compile(
    r"\b(portal|pv|venous|enhanced|with contrast|post ?contrast|cect"
    r"|\d ?phases?|multi ?phas\w*|biphasic|triphasic)\b"
)


def phase_hint(ct_slice: CTSlice) -> Phase | None:
    """Guess the phase of one slice from SeriesDescription and ContrastBolusAgent.

    Rule, in order:

    1. Keywords in the series description (case and punctuation ignored): arterial /
       art / AP / late or hepatic arterial -> ARTERIAL; delayed / equilibrium / late /
       180 s -> DELAYED; unenhanced / non-contrast / plain / native / NC / pre -> UNENHANCED.
       Exactly one phase named gives that phase; more than one (e.g. "NC/ART/DEL" on a
       whole-study description) gives None.
    2. Otherwise, no contrast agent (ContrastBolusAgent absent or blank) and no word saying
       contrast was given (portal, venous, enhanced, C+, "3 phase", ...) -> UNENHANCED.
    3. Otherwise None (e.g. a portal-venous series, not one of the protocol's three phases).

    The agent is weak evidence: de-identification often blanks ContrastBolusAgent, so an
    enhanced series without a telling description is hinted UNENHANCED. It is a hint for
    pre-filling a form the user confirms, never a decision.
    """
    description = ct_slice.series_description.lower()
    words = " " + re.sub(r"[^a-z0-9]+", " ", description).strip() + " "
    named = {
        phase
        for phase, pattern in (
            (Phase.ARTERIAL, _ARTERIAL),
            (Phase.DELAYED, _DELAYED),
            (Phase.UNENHANCED, _UNENHANCED),
        )
        if pattern.search(words)
    }
    if len(named) == 1:
        return named.pop()
    if named:
        return None
    says_contrast = "c+" in description or _CONTRAST_GIVEN.search(words) is not None
    if ct_slice.contrast_agent is None and not says_contrast:
        return Phase.UNENHANCED
    return None


def assign_phases(slices: Sequence[CTSlice]) -> dict[Phase, int]:
    """Assign the protocol's three phases to three slices (indices into ``slices``).

    Every one-to-one assignment is scored and the best kept, comparing scores in order:

    1. Time order: for each pair of phases, +1 when the slice given the earlier phase
       (unenhanced, then arterial, then delayed) has the earlier ``acquisition_time_s``.
       When all three times are present and distinct this alone fixes the assignment: the
       protocol acquires the phases in this order, and a label cannot reorder the clock.
       Missing or equal times score nothing either way.
    2. Hints: +1 for each slice whose :func:`phase_hint` matches its assigned phase.
    3. Upload order: ties go to the assignment closest to the order given (first slice
       unenhanced, second arterial, third delayed).

    The result is a proposal; check it against the hints and let the user correct it.

    Raises
    ------
    InputError
        Not exactly three slices.
    """
    if len(slices) != len(PHASES):
        raise InputError(
            f"Three slices are needed, one per phase (unenhanced, arterial, delayed); "
            f"{len(slices)} were given."
        )
    hints = [phase_hint(s) for s in slices]
    times = [s.acquisition_time_s for s in slices]

    def score(order: tuple[int, ...]) -> tuple[int, int, int]:
        in_time = sum(
            1
            for a in range(len(order))
            for b in range(a + 1, len(order))
            if (ta := times[order[a]]) is not None and (tb := times[order[b]]) is not None and ta < tb
        )
        agreeing = sum(hints[i] is phase for phase, i in zip(PHASES, order, strict=True))
        displaced = sum(i != position for position, i in enumerate(order))
        return in_time, agreeing, -displaced

    best = max(permutations(range(len(slices))), key=score)
    return dict(zip(PHASES, best, strict=True))


def phase_hint_warnings(slices: Mapping[Phase, CTSlice]) -> list[str]:
    """Where a slice's own header (series description, contrast agent) names another phase."""
    out = []
    for phase, s in slices.items():
        hint = phase_hint(s)
        if hint is not None and hint is not phase:
            out.append(
                f"The slice used as {phase.value} looks {hint.value} from its header "
                f"(series description '{s.series_description or '—'}', contrast agent "
                f"{'recorded' if s.contrast_agent else 'not recorded'})."
            )
    return out


def same_series_warnings(slices: Mapping[Phase, CTSlice]) -> list[str]:
    """Phases taken from one series (SeriesInstanceUID): one acquisition cannot be two phases."""
    by_series: dict[str, list[str]] = {}
    for phase, s in slices.items():
        if s.series_uid:
            by_series.setdefault(s.series_uid, []).append(phase.value)
    return [
        f"The {' and '.join(names)} images come from the same series: one acquisition cannot be "
        "two phases of the protocol."
        for names in by_series.values()
        if len(names) > 1
    ]


def header_warnings(slices: Mapping[Phase, CTSlice]) -> list[str]:
    """Everything the headers say against the assignment (phase_hint_warnings, same_series_warnings)."""
    return [*phase_hint_warnings(slices), *same_series_warnings(slices)]


def hint_text(s: CTSlice) -> str | None:
    """The phase a slice's header suggests, in words (for the acquisition table)."""
    hint = phase_hint(s)
    return hint.value if hint else None


# --- the aorta ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseCheck:
    """Whether the aorta's attenuation follows the protocol (arterial >> delayed > unenhanced)."""

    plausible: bool
    message: str
    suggested: dict[Phase, Phase] | None = None  # currently labelled phase -> the phase it looks like


def check_phases_by_aorta(aorta_hu: Mapping[Phase, float]) -> PhaseCheck:
    """Compare the aorta's mean HU per labelled phase with the protocol's order.

    Arterial must exceed delayed by ARTERIAL_OVER_DELAYED_HU and delayed exceed unenhanced by
    DELAYED_OVER_UNENHANCED_HU. When not, ``suggested`` relabels the slices by rank (lowest
    aorta -> unenhanced, highest -> arterial), a proposal for the user to confirm; except when
    all three lie within SAME_PHASE_SPREAD_HU: then they are one phase and no order is proposed.
    """
    values = ", ".join(f"{p.value} {aorta_hu[p]:.0f} HU" for p in PHASES)
    u, a, d = (aorta_hu[p] for p in PHASES)
    if a - d >= ARTERIAL_OVER_DELAYED_HU and d - u >= DELAYED_OVER_UNENHANCED_HU:
        return PhaseCheck(
            True, f"Aorta: {values}, as expected (arterial well above delayed, delayed above unenhanced)."
        )
    if max(u, a, d) - min(u, a, d) < SAME_PHASE_SPREAD_HU:
        return PhaseCheck(
            False,
            f"Aorta: {values}. The three images show the same aortic attenuation (about "
            f"{(u + a + d) / 3:.0f} HU), so they look like one phase, not an unenhanced, arterial "
            "and delayed set.",
        )
    ranked = sorted(PHASES, key=lambda p: aorta_hu[p])
    suggested = dict(zip(ranked, (Phase.UNENHANCED, Phase.DELAYED, Phase.ARTERIAL), strict=True))
    if all(k is v for k, v in suggested.items()):
        return PhaseCheck(
            False,
            f"Aorta: {values}. The order is right but the differences are small: "
            "check that these are the unenhanced, late arterial and 180 s delayed "
            "phases of one examination.",
        )
    swaps = "; ".join(
        f"the slice labelled {k.value} looks {v.value}" for k, v in suggested.items() if k is not v
    )
    return PhaseCheck(False, f"Aorta: {values}. The phases look swapped: {swaps}.", suggested)


def aorta_check(case: ReviewCase) -> tuple[Point | None, PhaseCheck | None]:
    """Find the aorta (or take the example's) and check the phases' labels against its HU."""
    if not case.is_hu:
        return None, None
    centre = case.aorta_centres.get(Phase.ARTERIAL) or locate_aorta(
        case.images, case.spacing_mm.get(Phase.ARTERIAL)
    )
    if centre is None:
        return None, None
    stats = {p: disc_stats(case.images[p], centre, case.spacing_mm[p]) for p in PHASES}
    if any(s is None for s in stats.values()):
        return centre, None
    return centre, check_phases_by_aorta({p: s.mean_hu for p, s in stats.items() if s is not None})


def assignment_from_check(
    assignment: Mapping[Phase, int], suggested: Mapping[Phase, Phase]
) -> dict[Phase, int]:
    """The assignment after relabelling as a PhaseCheck suggests (labelled phase -> new phase)."""
    return {suggested.get(p, p): i for p, i in assignment.items()}
