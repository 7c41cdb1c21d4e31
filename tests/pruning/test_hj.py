"""HJ-Pruning: hard-concrete gates, the Lagrangian term, the three variants, compaction."""
import math
import shutil

import pytest
import torch
from torch.nn.utils import parametrize

from espnet_pinch.pruning.hj import HardConcrete
from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import batch, build_args, masked_then_finalize


def hj_model(ckpt, tmp_path, **conf):
    conf = {"target_sparsity": 0.5, **conf}
    return PinchASRTask.build_model(build_args(ckpt, tmp_path, pruner="hj", pruner_conf=conf))


def test_hard_concrete_range_and_expected_l0():
    torch.manual_seed(0)
    g = HardConcrete(4, init_log_alpha=0.0)
    g.set_log_alpha(torch.tensor([-3.0, 0.0, 1.0, 4.0]))
    z = torch.stack([g.sample() for _ in range(20000)])
    assert z.min() == 0.0 and z.max() == 1.0          # stretched and clamped: exact 0 and 1 occur
    assert ((z > 0) & (z < 1)).any()
    p = g.prob_nonzero()
    # P(z != 0) = sigmoid(log_alpha - beta * log(-l / r)), checked by sampling
    torch.testing.assert_close((z > 0).float().mean(0), p.detach(), atol=0.015, rtol=0)
    assert float(p[1]) == pytest.approx(1 / (1 + math.exp((2 / 3) * math.log(0.1 / 1.1))))
    assert float(g.expected_count()) == pytest.approx(float(p.sum()))
    # evaluation: round(E[L0]) units with the largest log_alpha
    m = g.deterministic()
    assert int((m > 0).sum()) == round(float(p.sum())) and m[3] > 0 and m[0] == 0


def test_multipliers_move_towards_the_target(tiny_ckpt, tmp_path):
    model = hj_model(tiny_ckpt, tmp_path, target_sparsity=0.8)  # starts near dense: below target
    model.train()
    _, stats, _ = model(**batch())
    assert float(stats["expected_all"]) < 0.8
    low = model.pruner.lambda1_all.item()
    assert low < 0    # pulls the sparsity up
    for g in model.pruner.gates.values():
        g.set_log_alpha(-6.0)                       # now far above the target
    for _ in range(3):
        model(**batch())
    assert model.pruner.lambda1_all.item() > low + 0.2  # rises: pulls the sparsity down


def test_dual_gap_clip_bounds_lambda1s_windup_not_the_term(tiny_ckpt, tmp_path):
    """Anti-windup: far below the target, lambda1 moves by dual_lr x clip, not dual_lr x gap;
    the loss term still sees the whole gap (its value is the unclipped one's)."""
    out = {}
    for clip in (None, 0.05):
        torch.manual_seed(0)
        model = hj_model(tiny_ckpt, tmp_path, target_sparsity=0.8, dual_lr=10.0, penalty=50.0,
                         dual_gap_clip=clip)
        model.train()
        _, stats, _ = model(**batch())
        out[clip] = (float(stats["expected_all"]) - 0.8, model.pruner.lambda1_all.item(),
                     float(stats["loss_sparsity"]))
    gap = out[None][0]
    assert gap < -0.5                                       # near dense: far below 0.8
    assert out[None][1] == pytest.approx(10.0 * gap, rel=1e-5)
    assert out[0.05][1] == pytest.approx(10.0 * -0.05, rel=1e-5)
    assert out[0.05][0] == pytest.approx(gap, rel=1e-5) and out[0.05][2] == pytest.approx(out[None][2])
    with pytest.raises(ValueError, match="pruner_conf.dual_gap_clip"):
        hj_model(tiny_ckpt, tmp_path, dual_gap_clip=0.0)


def test_hard_gap_measures_the_deterministic_architecture(tiny_ckpt, tmp_path):
    """hard_gap: the term's value and lambda1's step use the chosen (deterministic)
    architecture's gap, its gradient is the expected one's scaled by gap_chosen / gap_expected
    (straight-through); without it (the default) the expected gap throughout."""
    out = {}
    for hard in (False, True):
        model = hj_model(tiny_ckpt, tmp_path, target_sparsity=0.5, dual_lr=1.0, penalty=100.0,
                         hard_gap=hard)
        p = model.pruner
        for i, g in enumerate(p.gates.values()):  # P(z != 0) spread out: rounding matters
            g.set_log_alpha(torch.linspace(-2.0, 3.0, g.log_alpha.numel()) + 0.3 * i)
        p.train()
        p.before_forward()
        term, stats = p.loss()
        term.backward()
        grad = torch.cat([g.raw.grad.flatten() for g in p.gates.values()])
        out["chosen" if hard else "expected"] = (float(stats["expected_all"]) - 0.5, float(stats["achieved_all"]) - 0.5,
                       float(term), p.lambda1_all.item(), grad)
    gap_e, gap_c = out["expected"][0], out["expected"][1]
    assert abs(gap_c - gap_e) > 0.005                 # the two measures differ here
    assert out["chosen"][:2] == pytest.approx((gap_e, gap_c))   # both logged as they are
    assert out["expected"][2] == pytest.approx(100.0 * gap_e ** 2, rel=1e-4)
    assert out["chosen"][2] == pytest.approx(100.0 * gap_c ** 2, rel=1e-4)
    assert out["expected"][3] == pytest.approx(gap_e, rel=1e-4)   # lambda1 += dual_lr x gap
    assert out["chosen"][3] == pytest.approx(gap_c, rel=1e-4)
    torch.testing.assert_close(out["chosen"][4], out["expected"][4] * (gap_c / gap_e))


@pytest.mark.parametrize("variant,conf", [
    ("size", {}),
    ("macs", {}),
    ("separate", {"cnn_target": 0.3, "transformer_target": 0.6}),
])
def test_each_variant_reaches_its_target(tiny_ckpt, tmp_path, variant, conf):
    torch.manual_seed(0)
    model = hj_model(tiny_ckpt, tmp_path, target_on=variant, penalty=500.0, dual_lr=2.0, **conf)
    p = model.pruner
    opt = torch.optim.Adam(p.parameters(), lr=0.1)
    model.train()
    for _ in range(60):
        loss, stats, _ = model(**batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    for part, target in p.targets.items():  # training alone gets close ...
        assert abs(float(stats[f"expected_{part}"]) - target) < 0.05, (part, stats)
    summary = p.finalize()                   # ... and the deterministic result is within 2 %
    for part, target in p.targets.items():
        assert abs(summary.method["achieved"][part] - target) <= 0.02, summary.method["achieved"]


def test_macs_model_matches_the_counter(tiny_ckpt, tmp_path):
    from espnet_pinch.profiling.macs import ssl_macs_per_second

    model = hj_model(tiny_ckpt, tmp_path, target_on="macs")
    p, ssl = model.pruner, model.frontend.ssl_model
    assert p.dense_macs == ssl_macs_per_second(ssl)["macs_per_second"]
    widths = {n: max(1, g.num_units // 3) for n, g in p.groups.items()}
    keep = {n: list(range(w)) for n, w in widths.items()}
    for g in p.groups.values():  # masks off (weights untouched), then cut to ``widths``
        parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=False)
    model.frontend.adapter.compact_(ssl, keep)
    assert p.macs_of(widths) == ssl_macs_per_second(ssl)["macs_per_second"]


def test_masked_equals_compact_with_an_empty_layer(tiny_ckpt, tmp_path):

    own = tmp_path / "upstream.pt"
    shutil.copy(tiny_ckpt, own)
    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(own, exp, pruner="hj", pruner_conf={"target_sparsity": 0.4,
                                                          "finalize_tolerance": 1.0})
    model = PinchASRTask.build_model(args)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    for name, g in model.pruner.gates.items():
        g.set_log_alpha(torch.randn(g.raw.shape) * 3)
    model.pruner.gates["layers_1_ffn"].set_log_alpha(-10.0)    # FFN of layer 1: all gone
    model.pruner.gates["layers_0_heads"].set_log_alpha(-10.0)  # attention of layer 0: gone
    b = batch()
    masked, summary = masked_then_finalize(model, args, exp, b)
    assert summary["widths"]["layers.1.ffn"] == 0 and summary["widths"]["layers.0.heads"] == 0
    assert all(w >= 1 for n, w in summary["widths"].items() if n.startswith("conv."))
    own.unlink()
    net, _ = PinchASRTask.build_model_from_file(exp / "final/config.yaml", exp / "final/model.pth", "cpu")
    ssl = net.frontend.ssl_model
    assert ssl.encoder.layers[1].fc1.out_features == 0 and ssl.encoder.layers[0].self_attn.num_heads == 0
    with torch.no_grad():
        compact, _ = net.eval().encode(b["speech"], b["speech_lengths"])
    assert (compact - masked).abs().max() < 1e-4


def test_whole_block_gates(tiny_ckpt, tmp_path):
    model = hj_model(tiny_ckpt, tmp_path, prune_layers=True)
    p = model.pruner
    assert set(p.layer_gates) == {"layers_0_heads", "layers_0_ffn", "layers_1_heads", "layers_1_ffn"}
    # a block gate scales the expected width of all its units
    full = float(p.expected_widths()["layers.0.ffn"])
    p.layer_gates["layers_0_ffn"].set_log_alpha(-10.0)
    assert float(p.expected_widths()["layers.0.ffn"]) < 0.01 * full
    assert p.chosen_widths()["layers.0.ffn"] == 0         # the whole FFN block is pruned
    assert p.chosen_widths()["layers.1.ffn"] > 0
    assert p.num_extra_params() == sum(g.num_units for g in p.groups.values()) + 4


def test_move_band_holds_the_architecture_within_the_band(tiny_ckpt, tmp_path):
    """move_band: a training step moves a group's held kept count to the gates' rounded one only
    if what is constrained stays within the band of the step's target or gets closer (the group
    with the larger relative change first; a refused move leaves the next free); evaluation and
    finalize see the held counts. Without the band the rounded counts are used as they are."""
    a, b = "layers.0.ffn", "conv.0"

    def trained(**conf):  # held: every group at its full width; then the gates move a and b
        p = hj_model(tiny_ckpt, tmp_path, warmup_steps=0, **conf).pruner
        for g in p.gates.values():
            g.set_log_alpha(10.0)
        p.chosen_widths(hold=True)
        half = torch.tensor([10.0] * 32 + [-10.0] * 32)      # a: 32 of 64 units (1/2)
        p.gates[p._key(a)].set_log_alpha(half)
        p.gates[p._key(b)].set_log_alpha(torch.tensor([10.0] * 12 + [-10.0] * 4))  # b: 12 of 16
        return p

    p = trained()
    full = p.full_widths()
    moved = {a: 32, b: 12}

    def s(*names):
        return float(p.sparsity_of({**full, **{n: moved[n] for n in names}}))

    sa, sb = s(a), s(b)
    assert sa > 2 * sb > 0                  # a's move alone would end further from b's target
    assert p.chosen_widths(hold=True) == {**full, **moved}  # no band: the gates' counts
    band = sb / 2
    banded = trained(target_sparsity=sb, move_band=band)
    assert banded.chosen_widths() == full   # evaluation: what the last training step held
    # a's move (the larger) would leave the band and end further: refused; b's is made
    assert banded.chosen_widths(hold=True) == {**full, b: 12}
    assert banded.chosen_widths(hold=True) == {**full, b: 12}  # and a's stays refused
    # the held counts are what an evaluation forward and finalize use
    banded.eval()
    banded.before_forward()
    assert {n: int((banded.column_mask(n).mask != 0).sum()) for n in full} == {**full, b: 12}
    result = banded.finalize()  # ... and it reports the unheld (rounded) architecture's value
    assert result.sparsity_before_snap == pytest.approx(sb)
    assert result.unheld_achieved["all"] == pytest.approx(s(a, b))
    assert result.unheld_apart_units == pytest.approx(32 / sum({**full, **moved}.values()))
    assert p.finalize().unheld_achieved is None  # no band: nothing held
    # a move towards the target is made even if it ends outside the band
    assert trained(target_sparsity=2 * s(a, b), move_band=band).chosen_widths(hold=True) == {**full, **moved}
    # a training forward moves the held counts, an evaluation forward does not
    q = trained(target_sparsity=sb, move_band=band)
    q.eval()
    q.before_forward()
    q.loss()
    assert q.chosen_widths() == full
    q.train()
    q.before_forward()
    _, stats = q.loss()
    assert q.chosen_widths() == {**full, b: 12}
    assert float(stats["achieved_all"]) == pytest.approx(sb)
    with pytest.raises(ValueError, match="pruner_conf.move_band"):
        hj_model(tiny_ckpt, tmp_path, move_band=-0.1)
