"""Survival: the discrete-time hazard loss (hand vectors, per-patient guard), Cox's refusal under DP,
C-index and integrated Brier score (hand vectors, lifelines/torchsurv), by_column partitioning."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

from fl_client.data import PartitionError
from fl_client.data.errors import DataWarning
from fl_client.data.partition import partition, partition_by_column
from fl_client.survival.grid import TimeGridError, interval_targets
from fl_client.survival.loss import CoxUnderDPError, check_survival_loss, cox_nll, hazard_nll, per_patient_hazard_nll
from fl_client.survival.metrics import (
    concordance,
    integrated_brier,
    restricted_mean_survival,
    survival_curves,
)
from fl_client.survival.model import LinearHazard

GRID = [100.0, 200.0]


def test_interval_targets_follow_the_documented_rule():
    # arrange: event in interval 1, event on an edge, censored mid-interval, event past the grid, censored on an edge
    time, event = [50, 100, 150, 250, 100], [1, 1, 0, 1, 0]
    # act
    targets = interval_targets(time, event, GRID)
    # assert: (mask, event) per interval
    assert targets[:, 0].tolist() == [[1, 0], [1, 0], [1, 0], [1, 1], [1, 0]]
    assert targets[:, 1].tolist() == [[1, 0], [1, 0], [0, 0], [0, 0], [0, 0]]


def test_interval_targets_refuse_a_bad_grid_or_times():
    with pytest.raises(TimeGridError, match="strictly increasing"):
        interval_targets([1.0], [1], [200, 100])
    with pytest.raises(TimeGridError, match="time_grid"):
        interval_targets([1.0], [1], None)
    with pytest.raises(TimeGridError, match="0 \\(censored\\) or 1"):
        interval_targets([1.0], [2], GRID)
    with pytest.raises(TimeGridError, match=">= 0"):
        interval_targets([-1.0], [1], GRID)


def test_hazard_nll_on_hand_checkable_vectors():
    # arrange: hazard 1/4 in every interval (logit log(1/3))
    logits = torch.full((3, 2), math.log(1 / 3))
    targets = torch.tensor(interval_targets([150, 250, 50], [1, 0, 0], GRID))
    # act
    per_patient = per_patient_hazard_nll(logits, targets)
    # assert: event in interval 2 after surviving interval 1: -log(3/4) - log(1/4) = log(16/3);
    # censored after the grid: -2 log(3/4); censored inside interval 1: no term at all
    assert per_patient.tolist() == pytest.approx([math.log(16 / 3), 2 * math.log(4 / 3), 0.0], abs=1e-6)
    assert float(hazard_nll(logits, targets)) == pytest.approx((math.log(16 / 3) + 2 * math.log(4 / 3)) / 3, abs=1e-6)


def test_hazard_nll_refuses_a_model_whose_outputs_do_not_match_the_grid():
    with pytest.raises(ValueError, match="3 interval logits, the time grid has 2"):
        hazard_nll(torch.zeros(1, 3), torch.tensor(interval_targets([1.0], [1], GRID)))


def _per_sample_grads(model, loss_fn, x, target):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, ti):
        return loss_fn(functional_call(model, p, (xi[None],)), ti[None])

    return vmap(grad(one), in_dims=(None, 0, 0))(params, x, target)


def test_one_patients_gradient_does_not_depend_on_the_other_patients_in_the_batch():
    # arrange: two batches that share patient 0 and differ in every other patient
    torch.manual_seed(0)
    model = LinearHazard(3, 2)
    x_a, x_b = torch.randn(4, 3), torch.randn(4, 3)
    x_b[0] = x_a[0]
    t_a = torch.tensor(interval_targets([150, 30, 250, 90], [1, 1, 0, 0], GRID))
    t_b = torch.tensor(interval_targets([150, 199, 10, 300], [1, 0, 1, 1], GRID))
    # act: per-sample gradients as DP-SGD clips them (Opacus's own grad samples, and torch.func)
    from opacus.grad_sample import GradSampleModule

    grads = []
    for x, t in ((x_a, t_a), (x_b, t_b)):
        gsm = GradSampleModule(LinearHazard(3, 2), batch_first=True, loss_reduction="mean")
        gsm.load_state_dict({f"_module.{k}": v for k, v in model.state_dict().items()})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
            hazard_nll(gsm(x), t).backward()
        grads.append({n: p.grad_sample[0] for n, p in gsm.named_parameters()})
    func_a = _per_sample_grads(model, hazard_nll, x_a, t_a)
    # assert: patient 0's gradient is identical in both batches, and equals its own single-patient gradient
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6)
        assert torch.allclose(grads[0][name], func_a[name.removeprefix("_module.")][0], atol=1e-6)
        assert grads[0][name].abs().sum() > 0


def test_cox_couples_patients_which_is_why_it_is_refused_under_dp():
    # arrange: Cox's loss for a batch where only the OTHER patients' risk scores change
    time, event = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0])
    risk_a = torch.tensor([0.5, 0.0, 0.0], requires_grad=True)
    risk_b = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
    # act
    (g_a,) = torch.autograd.grad(cox_nll(risk_a, time, event), risk_a)
    (g_b,) = torch.autograd.grad(cox_nll(risk_b, time, event), risk_b)
    # assert: patient 0's gradient moved although its own data did not; the refusal names the reason
    assert not torch.isclose(g_a[0], g_b[0])
    with pytest.raises(CoxUnderDPError, match="risk set"):
        check_survival_loss("cox", dp_enabled=True)
    assert check_survival_loss("cox", dp_enabled=False) == "cox"
    assert check_survival_loss("discrete_hazard", dp_enabled=True) == "discrete_hazard"


def test_cox_nll_on_a_hand_checkable_vector():
    # arrange: risks 0 (hazard ratio 1); events at t=1 (3 at risk) and t=2 (2 at risk)
    time, event = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0])
    # act
    value = cox_nll(torch.zeros(3), time, event)
    # assert: (log 3 + log 2) / 2 events; lifelines' CoxPHFitter minimises the same partial likelihood
    assert float(value) == pytest.approx((math.log(3) + math.log(2)) / 2, abs=1e-6)


def test_survival_curves_and_restricted_mean_on_hand_vectors():
    # arrange: hazards 1/2 then 1/4
    logits = torch.tensor([[0.0, math.log(1 / 3)]])
    # act
    curves = survival_curves(logits)
    rmst = restricted_mean_survival(curves, GRID)
    # assert: S = [1/2, 3/8]; RMST = 100 * 1/2 + 100 * 3/8
    assert curves.tolist()[0] == pytest.approx([0.5, 0.375])
    assert rmst.tolist() == pytest.approx([87.5])


def test_concordance_on_a_hand_vector_and_against_torchsurv():
    # arrange: comparable pairs (1,2) (1,3) (1,4) (2,3) (2,4); predicted (2,3) is discordant
    time, event = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 0, 1])
    predicted = np.array([1.0, 3.0, 2.0, 4.0])
    # act
    c = concordance(time, event, predicted)
    # assert
    assert c == pytest.approx(4 / 5)
    from torchsurv.metrics.cindex import ConcordanceIndex

    reference = ConcordanceIndex()(-torch.tensor(predicted), torch.tensor(event).bool(), torch.tensor(time))
    assert c == pytest.approx(float(reference))
    assert concordance(time, np.zeros(4), predicted) is None


def test_integrated_brier_without_censoring_is_the_plain_mean_squared_error():
    # arrange: two events (t=1, t=3), scored at edges 1 and 2
    curves = np.array([[0.4, 0.2], [0.9, 0.6]])
    # act
    ibs = integrated_brier(curves, np.array([1.0, 3.0]), np.array([1, 1]), [1.0, 2.0])
    # assert: BS(1) = (0.4^2 + 0.1^2)/2 = 0.085, BS(2) = (0.2^2 + 0.4^2)/2 = 0.1, trapezoid over [1, 2]
    assert ibs == pytest.approx(0.0925)


def test_integrated_brier_weights_by_the_inverse_censoring_distribution():
    # arrange: patient 2 censored at t=2, so the censoring survival G is 1 before 2 and 1/2 from 2 on
    curves = np.array([[0.2, 0.1], [0.7, 0.6], [0.9, 0.8]])
    # act
    ibs = integrated_brier(curves, np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]), [1.5, 2.5])
    # assert: BS(1.5) = (0.2^2 + 0.3^2 + 0.1^2)/3; BS(2.5) = (0.1^2 * 1 + 0 + 0.2^2 * 2)/3 (patient 3 weighs 1/G = 2)
    assert ibs == pytest.approx((0.14 / 3 + 0.09 / 3) / 2)
    assert integrated_brier(curves, np.array([1.0, 2.0, 3.0]), np.zeros(3), [1.5, 2.5]) is None


def test_by_column_gives_one_hospital_per_center_and_merges_small_ones():
    # arrange: centers 3.0 (4 rows), 1.0 (3 rows), 7.0 and 9.0 (1 row each)
    sites = [3.0, 1.0, 3.0, 7.0, 3.0, 1.0, 9.0, 3.0, 1.0]
    # act
    with pytest.warns(DataWarning, match=r"\['7', '9'\].*inst_small"):
        ids, parts = partition_by_column(sites, min_site_rows=2, prefix="inst")
    # assert: numeric order, every row once
    assert ids == ["inst_1", "inst_3", "inst_small"]
    assert [p.tolist() for p in parts] == [[1, 5, 8], [0, 2, 4, 7], [3, 6]]


def test_by_column_refuses_missing_sites_and_a_too_small_merged_group():
    with pytest.raises(PartitionError, match="no site value"):
        partition_by_column([1.0, float("nan")], min_site_rows=1)
    with pytest.raises(PartitionError, match=r"centers \['2'\].*only 1 together"):
        partition_by_column([1.0, 1.0, 2.0], min_site_rows=2)
    with pytest.raises(PartitionError, match="site column"):
        partition([0, 1], 2, 0, method="by_column")


def test_linear_hazard_starts_at_a_hazard_of_one_over_k_plus_one_in_every_interval():
    # arrange / act: K = 3 intervals, risk weights zeroed to isolate the baselines
    model = LinearHazard(2, 3)
    torch.nn.init.zeros_(model.risk.weight)
    curves = survival_curves(model(torch.zeros(1, 2)).detach())
    # assert: hazard 1/4 per interval, so S = (3/4)^k
    assert curves.tolist()[0] == pytest.approx([0.75, 0.5625, 0.421875])
