"""Phase contributions: exact Shapley values, checked by hand and against captum's ShapleyValues."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livercore.contribution import PhaseContribution, flat_baseline, phase_contributions, shapley_values
from livercore.model import LiverNet
from livercore.vocab import PHASES, Category, Phase

U, A, D = PHASES


def test_shapley_values_of_a_hand_computed_game() -> None:
    # v(S) for players 0, 1, 2: additive 0.1 / 0.2 / 0.3, plus 0.2 when 1 and 2 play together.
    values = {
        (): 0.0,
        (0,): 0.1,
        (1,): 0.2,
        (2,): 0.3,
        (0, 1): 0.3,
        (0, 2): 0.4,
        (1, 2): 0.7,
        (0, 1, 2): 0.8,
    }
    np.testing.assert_allclose(shapley_values(values, 3), [0.1, 0.3, 0.4])  # the 0.2 split evenly


def test_shares_sentence_and_leading_phase() -> None:
    c = PhaseContribution(Category.A, {U: 0.05, A: 0.50, D: 0.20}, probability=0.85, baseline=0.10)
    assert c.leading is A
    assert pytest.approx(sum(c.shares().values())) == 1.0
    assert c.sentence().startswith("The arterial phase carries 67 % of the evidence for A (classic HCC)")
    against = PhaseContribution(Category.D, {U: -0.10, A: 0.40, D: 0.30}, probability=0.8, baseline=0.2)
    assert against.shares()[U] == 0.0
    assert "The unenhanced phase speaks against it (-10 points)" in against.sentence()
    none = PhaseContribution(Category.E, {U: -0.01, A: -0.02, D: 0.0}, probability=0.1, baseline=0.13)
    assert "the evidence lies in no single phase" in none.sentence()


@pytest.mark.parametrize("phases", [(U, A, D), (A, D)])
def test_phase_contributions_equal_captum_and_add_up(phases: tuple[Phase, ...]) -> None:
    from captum.attr import ShapleyValues

    torch.manual_seed(0)
    net = LiverNet(len(phases)).eval()
    x = np.random.default_rng(1).integers(0, 256, (len(phases), 70, 70), dtype=np.uint8)
    ours = phase_contributions(net, x, phases, Category.B)

    xt = torch.from_numpy(x[None]).float() / 255
    mask = torch.arange(len(phases)).view(1, -1, 1, 1).expand_as(xt).contiguous()
    reference = ShapleyValues(lambda t: torch.softmax(net(t), 1)).attribute(
        xt, baselines=flat_baseline(xt), target=Category.B.output_index, feature_mask=mask
    )
    np.testing.assert_allclose(
        [ours.points[p] for p in phases], reference[0, :, 0, 0].detach().numpy(), atol=1e-6
    )
    with torch.no_grad():
        full = torch.softmax(net(xt), 1)[0, 1].item()
        flat = torch.softmax(net(flat_baseline(xt)), 1)[0, 1].item()
    assert ours.probability == pytest.approx(full, abs=1e-6)
    assert ours.baseline == pytest.approx(flat, abs=1e-6)
    assert sum(ours.points.values()) == pytest.approx(full - flat, abs=1e-6)


def test_a_phase_the_network_ignores_contributes_nothing() -> None:
    torch.manual_seed(0)
    net = LiverNet(3).eval()
    with torch.no_grad():
        net.features[0].weight[:, 0] = 0  # the first convolution no longer reads the unenhanced phase
    x = np.random.default_rng(2).integers(0, 256, (3, 70, 70), dtype=np.uint8)
    assert phase_contributions(net, x, (U, A, D), Category.A).points[U] == pytest.approx(0.0, abs=1e-7)


def test_the_study_table_has_a_row_per_case_and_multiphase_model_and_its_values_add_up() -> None:
    from livercore.analysis import load_models
    from livercore.dataset import from_phantom
    from livercore.rationale import phase_contribution_table

    data = from_phantom("test-2016", size=3)
    table = phase_contribution_table(data, load_models())
    assert sorted(set(table.model)) == ["art_del", "triphasic"] and len(table) == 2 * len(data)
    points = table[[f"shapley_{p.value}" for p in PHASES]].fillna(0).sum(axis=1)
    np.testing.assert_allclose(points, table.p_reference - table.p_flat, atol=1e-5)
    assert table.loc[table.model == "art_del", "shapley_unenhanced"].isna().all()  # a phase it never sees
