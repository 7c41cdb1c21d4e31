"""Structured SPG: one threshold per unit group, straight-through unit masks, a size or MACs target."""
import pytest
import torch

from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import batch, build_args, masked_then_finalize


def struct_args(ckpt, tmp_path, **conf):
    return build_args(ckpt, tmp_path, pruner="spg_struct", pruner_conf={"target_sparsity": 0.5, **conf})


def struct_model(ckpt, tmp_path, **conf):
    return PinchASRTask.build_model(struct_args(ckpt, tmp_path, **conf))


def test_one_threshold_per_group_and_hard_masks_in_every_forward(tiny_ckpt, tmp_path):
    model = struct_model(tiny_ckpt, tmp_path)
    p = model.pruner
    assert p.num_extra_params() == len(p.groups) == len(list(p.parameters()))
    model.train()
    p.before_forward()  # the first training step calibrates: every unit kept, just
    assert bool(p.calibrated) and p.chosen_widths() == p.full_widths()
    name = next(n for n, g in p.groups.items() if g.kind == "ffn")
    u = p.scores(name).detach()
    assert float(p.threshold(name)) == pytest.approx(float(u.min()) - 2 * p.tau)
    with torch.no_grad():  # threshold at the median score: half the units go
        p.thresholds[p._key(name)].fill_(float(u.median()) / p.gain)
    for train in (True, False):
        model.train(train)
        p.before_forward()
        cm = p.column_mask(name)
        value = cm.soft if train else cm.mask
        assert torch.equal(value.detach(), (u >= u.median()).float())  # the value is the hard mask
    assert p.chosen_widths()[name] == int((u >= u.median()).sum())


def test_the_asr_loss_and_the_sparsity_term_both_reach_the_thresholds(tiny_ckpt, tmp_path):
    # penalty 0 and lambda1 0 at the first step: the term is 0, the loss is the ASR loss alone
    model = struct_model(tiny_ckpt, tmp_path, target_sparsity=0.5, target_on="size", penalty=0.0)
    p = model.pruner
    model.train()
    torch.manual_seed(0)
    loss, _, _ = model(**batch())
    thresholds = list(p.thresholds.values())
    grads_asr = torch.autograd.grad(loss, thresholds, allow_unused=True)
    assert all(g is not None and g != 0 for g in grads_asr)  # through the soft unit masks
    p.penalty = 50.0
    p.before_forward()
    term, _ = p.loss()  # the sparsity term alone, below the target
    grads_sp = torch.autograd.grad(term, thresholds, allow_unused=True)
    # below the target the term pulls every threshold up (negative gradient: descent raises it)
    assert all(g is not None and g < 0 for g in grads_sp)


@pytest.mark.parametrize("target_on", ["size", "macs"])
def test_training_reaches_the_target_before_any_snap(tiny_ckpt, tmp_path, target_on):
    torch.manual_seed(0)
    conf = dict(target_on=target_on, target_sparsity=0.4, penalty=500.0, dual_lr=2.0,
                threshold_gain=1.0, tau=0.1)
    model = struct_model(tiny_ckpt, tmp_path, **conf)
    p = model.pruner
    opt = torch.optim.Adam(p.parameters(), lr=0.05)  # the thresholds only: the model stays
    model.train()
    for _ in range(80):
        loss, stats, _ = model(**batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(float(stats["achieved_all"]) - 0.4) < 0.05, stats  # training alone gets close ...
    exp = tmp_path / "exp"
    exp.mkdir()
    masked, summary = masked_then_finalize(model, struct_args(tiny_ckpt, tmp_path, **conf), exp, batch())
    assert abs(summary["achieved_before_snap"]["all"] - 0.4) < 0.05
    assert abs(summary["achieved"]["all"] - 0.4) <= 0.011  # ... and finalize lands on it
    widths = summary["widths"]
    assert len(set(round(w / p.groups[n].num_units, 2) for n, w in widths.items())) > 2  # not uniform


def test_masked_equals_compact_with_an_empty_layer(tiny_ckpt, tmp_path):
    conf = dict(target_on="size", finalize_tolerance=1.0)  # no snap: the masks are the result
    model = struct_model(tiny_ckpt, tmp_path, **conf)
    p = model.pruner
    p.calibrated.fill_(True)
    with torch.no_grad():
        for n in p.groups:  # a third of every group goes; one FFN and one attention block entirely
            u = p.scores(n)
            level = 1e9 if n in ("layers.1.ffn", "layers.0.heads") else float(u.quantile(0.34))
            p.thresholds[p._key(n)].fill_(level / p.gain)
    exp = tmp_path / "exp"
    exp.mkdir()
    masked, summary = masked_then_finalize(model, struct_args(tiny_ckpt, tmp_path, **conf), exp, batch())
    assert summary["widths"]["layers.1.ffn"] == 0 and summary["widths"]["layers.0.heads"] == 0
    # the compact model (units removed, loaded on its own) computes the masked model's function
    net, _ = PinchASRTask.build_model_from_file(exp / "final/config.yaml", exp / "final/model.pth", "cpu")
    ssl = net.frontend.ssl_model
    assert ssl.encoder.layers[1].fc1.out_features == 0 and ssl.encoder.layers[0].self_attn.num_heads == 0
    b = batch()
    with torch.no_grad():
        compact, _ = net.eval().encode(b["speech"], b["speech_lengths"])
    assert (compact - masked).abs().max() < 1e-4
