from collections import OrderedDict

import pytest
import torch

from espnet_pinch.pruning.sparse import from_sparse, load_sparse, save_sparse, to_sparse
from espnet_pinch.pruning.spg import SPGGate, SPGPruner
from tests.numerics import assert_same_function


def mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64),
                               torch.nn.GELU(), torch.nn.Linear(64, 4))


def layers_of(model):
    return OrderedDict((f"l{i}", m) for i, m in enumerate(model) if isinstance(m, torch.nn.Linear))


def test_soft_and_hard_masks():
    g = SPGGate(tau=0.1, gain=2.0)
    g.threshold.data.fill_(0.25)  # t = theta * gain * sqrt(scale) = 0.5
    w = torch.tensor([-1.0, -0.5, -0.2, 0.0, 0.3, 0.5, 2.0])
    assert g.hard(w).tolist() == [1, 1, 0, 0, 0, 1, 1]
    expected = torch.sigmoid((w * w - 0.25) / (2 * 0.1 * 1.0))
    torch.testing.assert_close(g.soft(w), expected)
    # The forward value uses the hard mask exactly: pruned weights are exact zeros.
    out = g(w)
    assert torch.equal(out, w * g.hard(w)) and (out[2:5] == 0).all()


def test_fused_estimator_matches_straight_through_reference():
    """The fused autograd function = value of W*H, gradients of W*M (and of sum(M))."""
    torch.manual_seed(0)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = SPGGate(tau=0.2, gain=3.0).double()
    g.threshold.data.fill_(0.2)
    upstream = torch.randn(6, 5, dtype=torch.float64)
    out = g(w)
    ((out * upstream).sum() + 0.7 * g.kept).backward()
    got_w, got_t = w.grad.clone(), g.threshold.grad.clone()
    w.grad, g.threshold.grad = None, None
    soft = g.soft(w)
    ref = w * (g.hard(w) + soft - soft.detach())
    ((ref * upstream).sum() + 0.7 * (g.hard(w).sum() + soft.sum() - soft.sum().detach())).backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(got_w, w.grad)
    torch.testing.assert_close(got_t, g.threshold.grad)


def test_gradients_reach_weights_and_thresholds():
    """The ASR loss alone must reach every threshold (through the soft mask), with the gradient of
    the straight-through surrogate W * (H + M - stopgrad(M)); the sparsity term alone too."""
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0)
    pruner.before_forward()
    x = torch.randn(8, 16)
    model(x).pow(2).mean().backward()  # the ASR-like loss only
    asr_grads = {}
    for name, layer in pruner.layers.items():
        gate = layer.parametrizations.weight[0]
        assert gate.threshold.grad is not None and gate.threshold.grad != 0, name
        assert layer.parametrizations.weight.original.grad.abs().sum() > 0, name
        asr_grads[name] = gate.threshold.grad.clone()
    # the same gradient by plain autograd on the surrogate, layer by layer
    ref = mlp()
    thetas = {}
    for (name, layer), m in zip(pruner.layers.items(), (ref[0], ref[2], ref[4])):
        gate = layer.parametrizations.weight[0]
        w = layer.parametrizations.weight.original.detach()
        theta = gate.threshold.detach().clone().requires_grad_(True)
        t = theta * gate.gain * gate.scale.sqrt()
        soft = torch.sigmoid((w * w - t ** 2) / (2 * gate.tau * gate.scale))
        hard = (w * w >= t.detach() ** 2).to(w.dtype)
        del m.weight  # a plain tensor in its place: the surrogate's value and graph
        m.weight = w * (hard + soft - soft.detach())
        thetas[name] = theta
    ref(x).pow(2).mean().backward()
    for name, theta in thetas.items():
        torch.testing.assert_close(asr_grads[name], theta.grad, rtol=1e-4, atol=1e-8)
    # the sparsity term alone reaches them too
    model.zero_grad()
    for _, gate, w in pruner.gates():
        gate.threshold.grad = None
        gate(w)
    extra, stats = pruner.loss()
    extra.backward()
    for name, gate, _ in pruner.gates():
        assert gate.threshold.grad is not None and gate.threshold.grad != 0, name
    assert set(stats) >= {"loss_sparsity", "sparsity", "target_sparsity", "lambda1"}


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_reaches_target_sparsity_on_tiny_model(target):
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=target, layers=["l*"], warmup_steps=40)
    pruner.train()
    opt = torch.optim.Adam(list(model.parameters()), lr=1e-3)
    torch.manual_seed(1)
    x = torch.randn(256, 16)
    y = torch.randn(256, 4)
    lambdas = []
    for _ in range(120):
        pruner.before_forward()
        loss = torch.nn.functional.mse_loss(model(x), y)
        extra, stats = pruner.loss()
        lambdas.append((float(stats["sparsity"] - stats["target_sparsity"]), float(pruner.lambda1)))
        opt.zero_grad()
        (loss + extra).backward()
        opt.step()
    achieved = pruner.sparsity()
    assert abs(achieved["overall"] - target) <= 0.01, achieved["overall"]
    # only the overall sparsity is constrained: layers end at different sparsities
    per = list(achieved["per_layer"].values())
    assert max(per) - min(per) > 0.02
    # dual ascent: the multiplier falls while sparsity is below the target (pulling towards
    # more pruning) and rises while above it
    steps = list(zip(lambdas, lambdas[1:]))
    assert all(b[1] < a[1] for a, b in steps if b[0] < -1e-3)
    assert all(b[1] > a[1] for a, b in steps if b[0] > 1e-3)
    summary = pruner.finalize()
    zeros = sum(int((l.weight == 0).sum()) for l in layers_of(model).values())
    total = sum(l.weight.numel() for l in layers_of(model).values())
    assert summary.sparsity == pytest.approx(zeros / total)
    assert abs(zeros / total - target) <= 0.01


def test_finalize_snaps_to_target_keeping_the_layer_split():
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0,
                       finalize_tolerance=0.005)
    pruner.before_forward()
    for i, (_, gate, w) in enumerate(pruner.gates()):  # 0.6 / 0.7 / 0.3 by hand: overall 0.66
        q = (0.6, 0.7, 0.3)[i]
        gate.threshold.data.fill_(w.abs().flatten().quantile(q) / (gate.gain * gate.scale.sqrt()))
    before = pruner.sparsity()
    assert before["overall"] > 0.55
    summary = pruner.finalize()
    assert abs(summary.sparsity - 0.5) <= 0.005
    assert summary.method["snap_factor"] < 1 and summary.sparsity_before_snap == before["overall"]
    after = summary.per_layer_sparsity
    # the same order of layers by sparsity as training left it
    assert sorted(after, key=after.get) == sorted(before["per_layer"], key=before["per_layer"].get)


def test_finalize_leaves_a_model_within_tolerance_alone():
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0,
                       finalize_tolerance=0.05)
    pruner.before_forward()
    for _, gate, w in pruner.gates():
        gate.threshold.data.fill_(w.abs().flatten().quantile(0.53) / (gate.gain * gate.scale.sqrt()))
    s = pruner.sparsity()["overall"]
    summary = pruner.finalize()
    assert summary.method["snap_factor"] == 1.0 and summary.sparsity == pytest.approx(s)


def test_sparse_export_gives_masked_outputs(tmp_path):
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.6, layers=["l*"], warmup_steps=0)
    pruner.before_forward()
    for layer in pruner.layers.values():  # prune 60% of each layer by hand
        w = layer.parametrizations.weight.original
        gate = layer.parametrizations.weight[0]
        gate.threshold.data.fill_(w.abs().flatten().quantile(0.6) / (gate.gain * gate.scale.sqrt()))
    model.eval()
    x = torch.randn(5, 16)
    with torch.no_grad():
        masked = model(x)
    pruner.finalize()
    keys = [f"{i}.weight" for i in (0, 2, 4)]
    nbytes = save_sparse(model.state_dict(), keys, tmp_path / "m.sparse.pt")
    torch.save(model.state_dict(), tmp_path / "m.pth")
    assert nbytes < (tmp_path / "m.pth").stat().st_size
    fresh = mlp(seed=5).eval()
    fresh.load_state_dict(load_sparse(tmp_path / "m.sparse.pt"))
    for k in keys:  # the stored weights are the masked weights, bit for bit
        assert torch.equal(fresh.state_dict()[k], model.state_dict()[k]), k
    with torch.no_grad():  # another code path (plain weights): equal to float32 rounding
        assert_same_function(fresh(x), masked)


def test_sparse_roundtrip_conv_shapes():
    w = torch.randn(4, 3, 5)
    w[w.abs() < 0.7] = 0
    state = {"c.weight": w, "c.bias": torch.randn(4)}
    back = from_sparse(to_sparse(state, ["c.weight"]))
    assert torch.equal(back["c.weight"], w) and torch.equal(back["c.bias"], state["c.bias"])


@pytest.mark.parametrize("conf, key", [
    ({"target_sparsity": 1.0}, "pruner_conf.target_sparsity"),
    ({"target_sparsity": -0.1}, "pruner_conf.target_sparsity"),
    ({"tau": 0.0}, "pruner_conf.tau"),
    ({"tau": -1.0}, "pruner_conf.tau"),
    ({"layers": ["encoder.layerz.*"]}, "pruner_conf.layers"),
    ({"layers": []}, "pruner_conf.layers"),
    ({"warmup_steps": -1}, "pruner_conf.warmup_steps"),
    ({"penalty": -1.0}, "pruner_conf.penalty"),
    ({"threshold_gain": 0.0}, "pruner_conf.threshold_gain"),
    ({"finalize_tolerance": -0.1}, "pruner_conf.finalize_tolerance"),
    ({"threshold_step": "adam"}, "pruner_conf.threshold_step"),
    ({"threshold_lr": 0.0}, "pruner_conf.threshold_lr"),
    ({"threshold_precondition": "rms"}, "pruner_conf.threshold_precondition"),
    ({"threshold_precondition": "size"}, "pruner_conf.threshold_precondition needs"),
    ({"threshold_max_step": 0.1}, "pruner_conf.threshold_max_step"),
    ({"threshold_step": "sgd", "threshold_max_step": 0.0}, "pruner_conf.threshold_max_step"),
    ({"budget_ref_steps": 0}, "pruner_conf.budget_ref_steps"),
    ({"budget_ref_steps": 1.5}, "pruner_conf.budget_ref_steps"),
])
def test_bad_config_names_the_key(conf, key):
    with pytest.raises(ValueError, match=key):
        SPGPruner(OrderedDict(encoder_layers_0_fc1=torch.nn.Linear(2, 2)), **{"layers": ["*"], **conf})


def test_target_ramp_as_a_fraction_of_the_budget():
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0.4)
    pruner.train()
    pruner.before_forward()
    model(torch.randn(2, 16))
    with pytest.raises(ValueError, match="fraction of the budget"):
        pruner.loss()  # no budget bound: refuses rather than guessing a ramp
    pruner.bind_budget(188)
    assert pruner.warmup_steps == 75
    assert pruner.current_target() == 0.0
    pruner.step.fill_(30)
    assert pruner.current_target() == pytest.approx(0.5 * 30 / 75)


@pytest.mark.parametrize("ref, total, factor", [(None, 47, 1.0), (188, 188, 1.0), (188, 47, 4.0),
                                                (188, 376, 0.5)])
def test_budget_relative_controller_scales_the_dual_step_by_ref_over_budget(ref, total, factor):
    """lambda1 after one step = factor x dual_lr x gap: a 47-step budget integrates 4x faster per
    step what a 188-step one does, so both cover the same per fraction of the budget."""
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0,
                       dual_lr=20.0, penalty=0.0, budget_ref_steps=ref)
    pruner.bind_budget(total)
    assert pruner.budget_factor == pytest.approx(factor)
    pruner.train()
    pruner.before_forward()
    model(torch.randn(2, 16))
    _, stats = pruner.loss()
    gap = float(stats["sparsity"]) - 0.5
    assert abs(gap) > 0.1
    assert float(pruner.lambda1) == pytest.approx(factor * 20.0 * gap, rel=1e-4)
    pruner.bind_budget(total)  # bound again (a resumed run): from the tuned value, not compounded
    assert pruner.dual_lr == pytest.approx(factor * 20.0)


def test_probe_splits_each_thresholds_gradient_into_asr_and_sparsity_parts():
    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0,
                       probe_interval=2, init_threshold=0.5)
    pruner.train()
    x = torch.randn(8, 16)
    pruner.before_forward()
    asr = model(x).pow(2).mean()
    term, _ = pruner.loss()  # step 1: probed
    assert pruner.take_probe() == {}  # not before its backward pass
    (asr + term).backward()
    probe = pruner.take_probe()
    assert probe["step"] == 1 and set(probe["layers"]) == set(pruner.layers)
    gates = {n: g for n, g, _ in pruner.gates()}
    totals = {n: float(g.threshold.grad) for n, g in gates.items()}
    per_layer = pruner.sparsity()["per_layer"]
    # the ASR part is what the ASR loss alone gives the threshold (same weights, same masks)
    model.zero_grad()
    pruner.zero_grad()
    pruner.before_forward()
    model(x).pow(2).mean().backward()
    for name, rec in probe["layers"].items():
        assert rec["grad_total"] == pytest.approx(totals[name], rel=1e-6)
        # total - sparsity part in float32: the difference of two numbers up to ~1e4 x larger
        # than it, so it is exact to a few ulps of the larger one (8 ulps allowed)
        ulps = 8 * 2.0 ** -23 * max(abs(rec["grad_total"]), abs(rec["grad_sparsity"]))
        assert rec["grad_asr"] == pytest.approx(float(gates[name].threshold.grad), rel=1e-4, abs=ulps)
        assert rec["grad_sparsity"] == pytest.approx(totals[name] - rec["grad_asr"], rel=1e-6)
        assert rec["grad_asr"] != 0 and rec["grad_sparsity"] != 0, name
        assert rec["sparsity"] == pytest.approx(per_layer[name])
        assert rec["theta"] == pytest.approx(float(gates[name].threshold))
    pruner.before_forward()
    asr = model(x).pow(2).mean()
    (asr + pruner.loss()[0]).backward()  # step 2: not probed
    assert pruner.take_probe() == {}


def test_probe_interval_is_checked():
    with pytest.raises(ValueError, match="pruner_conf.probe_interval"):
        SPGPruner(layers_of(mlp()), layers=["l*"], probe_interval=-1)


def test_raw_parametrization_thresholds_w2_with_one_model_wide_unit():
    """The paper's form: t_l = theta * gain * u on W^2, soft mask sigmoid((W^2 - t_l) / (2 tau u))
    with u the model's unit (not the layer's RMS); its fused gradients equal plain autograd on the
    surrogate."""
    torch.manual_seed(0)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = SPGGate(tau=0.3, gain=2.0, parametrization="raw").double()
    g.scale.fill_(0.5)  # u
    g.threshold.data.fill_(0.4)  # t_l = 0.4 * 2 * 0.5 = 0.4 on W^2
    assert torch.equal(g.hard(w), (w.detach() ** 2 >= 0.4).double())
    upstream = torch.randn(6, 5, dtype=torch.float64)
    out = g(w)
    ((out * upstream).sum() + 0.7 * g.kept).backward()
    got_w, got_t = w.grad.clone(), g.threshold.grad.clone()
    theta = g.threshold.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    soft = torch.sigmoid((w2 ** 2 - theta * 2.0 * 0.5) / (2 * 0.3 * 0.5))
    hard = (w2.detach() ** 2 >= 0.4).double()
    ref = w2 * (hard + soft - soft.detach())
    ((ref * upstream).sum() + 0.7 * (hard.sum() + soft.sum() - soft.sum().detach())).backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(got_w, w2.grad)
    torch.testing.assert_close(got_t, theta.grad)


def test_raw_unit_is_the_median_layer_and_makes_configs_scale_free():
    """raw compares layers on one absolute scale (a layer with larger weights keeps more of them
    at the same t_l), but that scale is the model's median mean W^2: the same config on a model
    whose weights are all c times larger gives the same masks and the same theta."""
    def calibrated(c):
        model = mlp()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(c)
        pruner = SPGPruner(layers_of(model), layers=["l*"], parametrization="raw")
        pruner.before_forward()
        return model, pruner
    model, pruner = calibrated(1.0)
    ms = sorted(float(w.pow(2).mean()) for _, _, w in pruner.gates())
    assert all(float(g.scale) == pytest.approx(ms[(len(ms) - 1) // 2]) for _, g, _ in pruner.gates())
    big, pruner_big = calibrated(10.0)
    for (n, g, w), (_, gb, wb) in zip(pruner.gates(), pruner_big.gates()):
        assert torch.equal(g.hard(w), gb.hard(wb)), n
        assert float(gb.threshold) == pytest.approx(float(g.threshold), rel=1e-5), n
        assert float(gb.t2()) == pytest.approx(100 * float(g.t2()), rel=1e-5), n


def test_raw_and_rms_start_from_the_same_masks():
    masks = {}
    for p in ("rms", "raw"):
        model = mlp()
        pruner = SPGPruner(layers_of(model), layers=["l*"], init_threshold=0.5, parametrization=p)
        pruner.before_forward()
        masks[p] = {n: (g.hard(w), (w * w - g.t2()).abs() / g.t2()) for n, g, w in pruner.gates()}
    for n, (rms, margin) in masks["rms"].items():
        differ = rms != masks["raw"][n][0]  # only a weight within float32 rounding of t may differ
        assert (margin[differ] < 1e-5).all(), n
    masks = {p: {n: m for n, (m, _) in ms.items()} for p, ms in masks.items()}
    assert 0 < sum(float((m == 0).float().mean()) for m in masks["raw"].values())
    with pytest.raises(ValueError, match="pruner_conf.parametrization"):
        SPGPruner(layers_of(mlp()), layers=["l*"], parametrization="log")


def test_sgd_thresholds_move_with_their_pull_adam_ones_in_lockstep():
    """Sparsity term only (no ASR loss): the term's pull on a layer's threshold is proportional
    to the layer's share of the gated weights (l2: 4,096 of 5,376; l4: 256). Adam moves every
    threshold by about lr per step whatever that pull; plain SGD (threshold_step: sgd) moves
    each by its gradient, so the large layer's threshold travels much further."""
    from espnet_pinch.train.optim import add_plain_sgd_group

    moved = {}
    for step, pre in (("shared", "none"), ("sgd", "none"), ("sgd", "size")):
        model = mlp()
        pruner = SPGPruner(layers_of(model), target_sparsity=0.5, layers=["l*"], warmup_steps=0,
                           threshold_gain=1.0, init_threshold=0.1, threshold_step=step,
                           threshold_lr=0.05 if pre == "none" else 0.01,
                           threshold_precondition=pre)
        pruner.train()
        pruner.before_forward()
        theta0 = {n: float(g.threshold) for n, g, _ in pruner.gates()}
        opt = torch.optim.Adam([g.threshold for _, g, _ in pruner.gates()], lr=0.01)
        add_plain_sgd_group(opt, *pruner.plain_sgd_parameters())
        for _ in range(20):
            for _, gate, w in pruner.gates():
                gate(w)
            term, _ = pruner.loss()
            opt.zero_grad()
            term.backward()
            opt.step()
        # in units of each layer's RMS weight (theta x gain), comparable across the three
        moved[step + pre] = {n: (float(g.threshold) - theta0[n]) * g.gain for n, g, _ in pruner.gates()}
    adam, sgd, pre = moved["sharednone"], moved["sgdnone"], moved["sgdsize"]
    assert all(v > 0 for v in [*adam.values(), *sgd.values()]), moved  # all pulled to pruning
    assert max(adam.values()) / min(adam.values()) < 1.2, moved  # lockstep
    assert sgd["l2"] / sgd["l4"] > 5, moved  # in proportion to the pull
    # size-preconditioned: the pull per weight, the same order for layers 16x apart in size
    assert max(pre.values()) / min(pre.values()) < 3, moved
    assert pruner.plain_sgd_parameters() == ([g.threshold for _, g, _ in pruner.gates()], 0.01, None)


def test_trust_region_bounds_every_threshold_step_in_rms_units():
    """threshold_max_step: with the size preconditioning, the smallest layer's threshold (the
    largest gain) would jump furthest; bounded, no threshold moves more than the cap (in units
    of its layer's RMS weight) in one step, whatever its gain."""
    from espnet_pinch.train.optim import add_plain_sgd_group

    model = mlp()
    pruner = SPGPruner(layers_of(model), target_sparsity=0.9, layers=["l*"], warmup_steps=0,
                       threshold_gain=1.0, init_threshold=0.1, threshold_step="sgd",
                       threshold_lr=5.0, threshold_precondition="size", threshold_max_step=0.02)
    pruner.train()
    pruner.before_forward()
    opt = torch.optim.Adam([g.threshold for _, g, _ in pruner.gates()], lr=0.01)
    add_plain_sgd_group(opt, *pruner.plain_sgd_parameters())
    x = torch.randn(8, 16)
    for _ in range(5):
        before = {n: float(g.t()) / float(g.scale.sqrt()) for n, g, _ in pruner.gates()}
        pruner.before_forward()
        loss = model(x).pow(2).mean()
        term, _ = pruner.loss()
        opt.zero_grad()
        (loss + term).backward()
        opt.step()
        moved = {n: abs(float(g.t()) / float(g.scale.sqrt()) - before[n]) for n, g, _ in pruner.gates()}
        assert max(moved.values()) <= 0.02 + 1e-6, moved
    assert min(moved.values()) > 0.019, moved  # the gradient's step was larger: the cap binds
