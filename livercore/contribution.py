"""Which phase carries the decision: exact Shapley values of each phase for one category.

A Grad-CAM of a multi-phase model is one spatial map (its last convolutional layer has already
mixed the phases), so it cannot say which phase the decision rests on: the paper's question.
Here each phase of the model's input is a player: a phase that is "absent" is replaced by a
flat image of its own mean brightness (its pattern, the lesion against the liver, is removed;
its overall brightness, which the network has always seen, is kept). The Shapley value of a
phase is its average effect on P(category) over every order in which the phases could be
revealed; the values add up to P(category | all phases) - P(category | no phase), so each
phase's positive part is a share of the evidence (Lundberg & Lee, NeurIPS 2017).

With two or three phases the exact values need 2^n forward passes, made in one batch: 4 or 8
images, about 14 ms for the triphasic model on the 2-core CPU. captum's ShapleyValues computes
the same numbers (tests/test_contribution.py holds it as the reference) but evaluates the
orders one by one: 183 ms against 14 ms in one run (benchmarks/bench_inference.py,
benchmarks/results/inference_cpu.json), too slow for the review page.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from livercore.vocab import Category, Phase

if TYPE_CHECKING:  # torch is imported where the values are computed: the pages that only show
    import torch  # a PhaseContribution (and its sentence) must not wait for it

    from livercore.model import LiverNet


def points_text(value: float) -> str:
    """A Shapley value (probability) in signed percentage points: "+65", "-3", "0"."""
    points = round(value * 100)
    return f"{points:+d}" if points else "0"


@dataclass(frozen=True)
class PhaseContribution:
    """How much each phase of one model's input moves P(target), in probability (-1..1)."""

    target: Category
    points: dict[Phase, float]  # Shapley value of each phase; they sum to probability - baseline
    probability: float  # P(target) with every phase shown
    baseline: float  # P(target) with every phase flat

    def shares(self) -> dict[Phase, float]:
        """Each phase's share (0..1) of the evidence for the target: its positive Shapley value
        over the sum of the positive values; all zero when no phase speaks for the target."""
        positive = {p: max(v, 0.0) for p, v in self.points.items()}
        total = sum(positive.values())
        return {p: (v / total if total > 0 else 0.0) for p, v in positive.items()}

    @property
    def leading(self) -> Phase:
        """The phase with the largest Shapley value (the one the decision rests on most)."""
        return max(self.points, key=lambda p: self.points[p])

    def sentence(self) -> str:
        """One plain sentence for the page, e.g. 'The arterial phase carries 70 % of the evidence
        for A (delayed 25 %, unenhanced 5 %).'"""
        name = f"{self.target.value} ({self.target.info.name})"
        shares = self.shares()
        if not any(shares.values()):
            return (
                f"No phase raises the probability of {name} above what flat images give "
                f"({self.baseline * 100:.0f} %): the evidence lies in no single phase."
            )
        lead = max(shares, key=lambda p: shares[p])
        rest = [f"{p.value} {shares[p] * 100:.0f} %" for p in sorted(shares, key=lambda p: -shares[p])[1:]]
        text = f"The {lead.value} phase carries {shares[lead] * 100:.0f} % of the evidence for {name}"
        text += f" ({', '.join(rest)})." if rest else "."
        for p, v in self.points.items():
            if v <= -0.005:  # half a percentage point: below that, the bars show nothing either
                text += f" The {p.value} phase speaks against it ({points_text(v)} points)."
        return text


def flat_baseline(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> each channel replaced by its own mean: the phase's pattern removed."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()


def coalition_inputs(x: torch.Tensor, baseline: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """Every subset of the C channels shown (the rest at the baseline): (2^C, C, H, W) and the
    subsets, in the order of the batch. x and baseline: (1, C, H, W)."""
    import torch

    n = x.shape[1]
    subsets = [s for k in range(n + 1) for s in itertools.combinations(range(n), k)]
    shown = torch.zeros(len(subsets), n, 1, 1, dtype=x.dtype, device=x.device)
    for row, subset in enumerate(subsets):
        shown[row, list(subset)] = 1
    return shown * x + (1 - shown) * baseline, subsets


def shapley_values(values: dict[tuple[int, ...], float], n: int) -> np.ndarray:
    """(n,) exact Shapley values from the value of every subset of n players (sorted tuples)."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            weight = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for subset in itertools.combinations(others, k):
                with_i = tuple(sorted((*subset, i)))
                phi[i] += weight * (values[with_i] - values[subset])
    return phi


def phase_contributions(
    net: LiverNet, x_uint8: np.ndarray, phases: tuple[Phase, ...], target: Category
) -> PhaseContribution:
    """Exact Shapley value of each phase for P(target), from one input (C, 70, 70) uint8 whose
    channels are `phases` (the phase-model's order). Callers sharing `net` between threads hold
    `analysis.MODEL_LOCK`."""
    import torch

    from livercore.model import as_input, probabilities

    if x_uint8.shape[0] != len(phases):
        raise ValueError(f"{x_uint8.shape[0]} channels for {len(phases)} phases")
    x = as_input(x_uint8, next(net.parameters()).device)
    batch, subsets = coalition_inputs(x, flat_baseline(x))
    with torch.no_grad():
        proba = probabilities(net(batch))[:, target.output_index].cpu().numpy()
    values = {s: float(v) for s, v in zip(subsets, proba, strict=True)}
    phi = shapley_values(values, len(phases))
    return PhaseContribution(
        target=target,
        points={p: float(v) for p, v in zip(phases, phi, strict=True)},
        probability=values[tuple(range(len(phases)))],
        baseline=values[()],
    )
