"""A plain-SGD group inside the model's optimizer (SPG's ``threshold_step: sgd``)."""
import pytest
import torch

from espnet_pinch.train.optim import BUDGET_FLAG, FLAG, add_budget_scaled_group, add_plain_sgd_group
from espnet_pinch.train.schedule import BudgetLR


def params():
    torch.manual_seed(0)
    return torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(()))


def test_own_group_gets_plain_sgd_and_the_rest_the_optimizers_rule():
    w, theta = params()
    ref_w = torch.nn.Parameter(w.detach().clone())
    opt = torch.optim.Adam([w, theta], lr=0.1, weight_decay=0.01)
    add_plain_sgd_group(opt, [theta], lr=0.5)
    ref = torch.optim.Adam([ref_w], lr=0.1, weight_decay=0.01)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1] and opt.param_groups[1][FLAG]
    for gw, gt in [(torch.randn(5), 3.0), (torch.randn(5), -0.02)]:
        theta0 = theta.detach().clone()
        w.grad, ref_w.grad, theta.grad = gw.clone(), gw.clone(), torch.tensor(gt)
        opt.step()
        ref.step()
        # the raw gradient times lr: not normalised (Adam would move theta ~lr whatever gt is)
        assert float(theta) == pytest.approx(float(theta0) - 0.5 * gt, abs=1e-6)
        torch.testing.assert_close(w, ref_w, rtol=0, atol=0)  # Adam's rule, untouched
        opt.zero_grad()
        assert theta.grad is None and w.grad is None
    assert theta not in opt.state  # no Adam moments for it


def test_a_skipped_step_leaves_no_gradient_behind_and_the_scheduler_scales_the_group():
    w, theta = params()
    opt = torch.optim.Adam([w, theta], lr=1e-3)
    add_plain_sgd_group(opt, [theta], lr=2.0)
    sched = BudgetLR(opt, warmup_steps=4)
    sched.bind(steps_per_epoch=10, max_epoch=1)
    theta.grad = torch.tensor(float("nan"))
    opt.zero_grad()  # ESPnet skips step() on a non-finite grad norm but still zeroes
    for k in range(1, 4):
        theta0, lr = float(theta), opt.param_groups[1]["lr"]
        assert lr == pytest.approx(2.0 * sched.factor(k))  # the common schedule
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * sched.factor(k))
        theta.grad = torch.tensor(1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        assert float(theta) == pytest.approx(theta0 - lr)


def test_state_dict_round_trip_with_the_same_construction():
    w, theta = params()
    opt = torch.optim.Adam([w, theta], lr=1e-3)
    add_plain_sgd_group(opt, [theta], lr=2.0)
    w.grad, theta.grad = torch.ones(5), torch.tensor(1.0)
    opt.step()
    w2, theta2 = params()
    again = torch.optim.Adam([w2, theta2], lr=1e-3)
    add_plain_sgd_group(again, [theta2], lr=2.0)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[1][FLAG] and again.param_groups[1]["lr"] == 2.0
    with pytest.raises(ValueError, match="> 0"):
        add_plain_sgd_group(torch.optim.Adam([params()[0]]), [params()[1]], lr=0.0)


def test_a_step_is_bounded_by_its_parameters_trust_region():
    w, theta = params()
    other = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([w, theta, other], lr=1e-3)
    add_plain_sgd_group(opt, [theta, other], lr=1.0, max_steps=[0.1, 5.0])
    theta0 = float(theta)
    theta.grad, other.grad = torch.tensor(-3.0), torch.tensor(2.0)
    opt.step()
    assert float(theta) == pytest.approx(theta0 + 0.1)  # the gradient's step was 3.0
    assert float(other) == pytest.approx(-2.0)  # within its region: the gradient's step
    with pytest.raises(ValueError, match="max_steps"):
        add_plain_sgd_group(torch.optim.Adam([w]), [theta], lr=1.0, max_steps=[0.1, 0.2])


def test_budget_scaled_group_keeps_adams_rule_and_only_its_rate_is_scaled():
    """A pruner's parameters in their own group (budget-relative controller): at factor 1 every
    step equals the one-group optimizer's; at factor 0.25 the group's lr is a quarter of the
    model's at every step of the schedule, and the model's parameters do not notice."""
    def run(factor):
        w, theta = params()
        opt = torch.optim.AdamW([w, theta], lr=1e-2, weight_decay=0.01)
        if factor is not None:
            add_budget_scaled_group(opt, [theta])
        sched = BudgetLR(opt, warmup_steps=2)
        sched.bind(steps_per_epoch=6, max_epoch=1)
        if factor is not None:
            sched.scale_groups(BUDGET_FLAG, factor)
            sched.scale_groups(BUDGET_FLAG, factor)  # idempotent: from the group's initial_lr
        ratios = []
        for k in range(6):
            torch.manual_seed(k)
            w.grad, theta.grad = torch.randn(5), torch.randn(())
            ratios.append(opt.param_groups[-1]["lr"] / opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return w.detach().clone(), theta.detach().clone(), ratios, opt, sched

    w0, t0, _, _, _ = run(None)
    w1, t1, r1, opt, _ = run(1.0)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1] and opt.param_groups[1][BUDGET_FLAG]
    torch.testing.assert_close((w1, t1), (w0, t0), rtol=0, atol=0)
    w4, t4, r4, _, sched = run(0.25)
    torch.testing.assert_close(w4, w0, rtol=0, atol=0)
    assert r4 == pytest.approx([0.25] * 6) and r1 == pytest.approx([1.0] * 6)
    assert abs(float(t4 - params()[1])) < abs(float(t0 - params()[1]))  # the group moved less
    # a resumed run's scheduler brings the scaled base rates back with its state
    w, theta = params()
    again = torch.optim.AdamW([w, theta], lr=1e-2, weight_decay=0.01)
    add_budget_scaled_group(again, [theta])
    resumed = BudgetLR(again, warmup_steps=2)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.base_lrs == pytest.approx([1e-2, 0.25e-2])


def test_a_budget_scaled_plain_sgd_group_is_flagged_and_scaled():
    w, theta = params()
    opt = torch.optim.Adam([w, theta], lr=1e-3)
    add_plain_sgd_group(opt, [theta], lr=2.0)
    add_budget_scaled_group(opt, [theta])
    assert len(opt.param_groups) == 2 and opt.param_groups[1][FLAG] and opt.param_groups[1][BUDGET_FLAG]
    sched = BudgetLR(opt, warmup_steps=0)
    sched.bind(steps_per_epoch=4, max_epoch=1)
    sched.scale_groups(BUDGET_FLAG, 0.5)
    f = sched.factor(1)  # the common schedule's factor of the coming step
    assert opt.param_groups[1]["lr"] == pytest.approx(2.0 * 0.5 * f)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * f)
