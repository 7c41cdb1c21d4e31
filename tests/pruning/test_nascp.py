"""NAS-CP: search space, Gumbel-softmax search with the size term, valid widths, compact export."""
import shutil

import pytest
import soundfile
import torch
import yaml

from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import batch, build_args


def nascp_model(ckpt, tmp_path, **conf):
    conf = {"target_sparsity": 0.5, "tau_steps": 20, **conf}
    return PinchASRTask.build_model(build_args(ckpt, tmp_path, pruner="nascp", pruner_conf=conf))


def test_candidates_and_extra_params(tiny_ckpt, tmp_path):
    model = nascp_model(tiny_ckpt, tmp_path, width_fractions=[0.25, 0.5, 1.0])
    p = model.pruner
    assert p.candidates["layers.0.ffn"] == [16, 32, 64]
    assert p.candidates["layers.0.heads"] == [0, 1, 2]   # 2 heads: 25 % rounds to none
    assert p.candidates["conv.0"] == [4, 8, 16]
    # one architecture logit per candidate: the method's only parameters
    assert p.num_extra_params() == sum(len(c) for c in p.candidates.values())
    assert p.sparsity_of(p.full_widths()) == 0.0
    assert p.chosen_widths() == p.full_widths()  # tied logits at the start: full width


def test_size_term_pulls_the_expected_sparsity_to_the_target(tiny_ckpt, tmp_path):
    torch.manual_seed(0)
    model = nascp_model(tiny_ckpt, tmp_path, target_sparsity=0.6, penalty=1000.0, dual_lr=5.0)
    opt = torch.optim.Adam(model.pruner.parameters(), lr=0.05)
    model.train()
    b = batch()
    first = None
    for _ in range(25):
        loss, stats, _ = model(**b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(stats["expected_sparsity"])
    assert abs(float(stats["expected_sparsity"]) - 0.6) < abs(first - 0.6)
    assert abs(float(stats["expected_sparsity"]) - 0.6) < 0.05
    assert model.pruner.lambda1.item() != 0.0


@pytest.mark.parametrize("hard_gap", [False, True])
def test_the_size_terms_value_is_the_argmax_architectures_with_hard_gap(tiny_ckpt, tmp_path, hard_gap):
    torch.manual_seed(0)
    model = nascp_model(tiny_ckpt, tmp_path, target_sparsity=0.6, penalty=10.0, dual_lr=1.0,
                        warmup_steps=0, hard_gap=hard_gap)
    p = model.pruner
    with torch.no_grad():  # expectation between the candidates; the argmax is the full width
        for a in p.alpha.values():
            a.zero_()[-1] = 0.01
    model.train()
    loss, stats, _ = model(**batch())
    chosen, expected = float(stats["sparsity"]), float(stats["expected_sparsity"])
    assert chosen == 0.0 and expected > 0.2
    gap = (chosen if hard_gap else expected) - 0.6
    assert float(stats["loss_sparsity"]) == pytest.approx(10.0 * gap ** 2, rel=1e-5)  # lambda1 was 0
    assert float(p.lambda1) == pytest.approx(gap, rel=1e-5)  # dual ascent on the same gap
    loss.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in p.alpha.values())


def test_eval_forward_uses_the_argmax_architecture(tiny_ckpt, tmp_path):
    model = nascp_model(tiny_ckpt, tmp_path)
    with torch.no_grad():
        model.pruner.alpha["layers_0_ffn"].copy_(torch.tensor([1.0, 0, 0, 0]))  # 25 %
    model.eval()
    model.pruner.before_forward()
    m = model.pruner.column_mask("layers.0.ffn").mask
    assert int(m.sum()) == 16 and model.pruner.chosen_widths()["layers.0.ffn"] == 16


@pytest.mark.parametrize("target", [0.3, 0.6])
def test_finalize_selects_valid_widths_and_exports_a_compact_model(tiny_ckpt, tmp_path, target):
    from espnet_pinch.bin.finalize import finalize

    own_ckpt = tmp_path / "upstream.pt"  # deleted below: the export must not need it
    shutil.copy(tiny_ckpt, own_ckpt)
    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(own_ckpt, exp, pruner="nascp",
                      pruner_conf={"target_sparsity": target, "finalize_tolerance": 0.02})
    model = PinchASRTask.build_model(args)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for a in model.pruner.alpha.values():  # a search that ended preferring random widths
            a.copy_(torch.randn_like(a))
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    summary = finalize(exp, "model.pth", exp / "final")

    cands = model.pruner.candidates
    assert all(summary["widths"][n] in cands[n] for n in cands)
    # within the tolerance, or as close as the tiny model's coarse candidate steps allow
    assert abs(summary["sparsity"] - target) <= 0.05
    assert summary["compact_max_abs_diff"] < 1e-4
    arch = yaml.safe_load((exp / "final/pruned_arch.yaml").read_text())
    assert arch["ffn_dims"] == [summary["widths"]["layers.0.ffn"], summary["widths"]["layers.1.ffn"]]

    # Stand-alone: no original checkpoint, no masks; the compact model has the chosen widths.
    own_ckpt.unlink()
    net, _ = PinchASRTask.build_model_from_file(exp / "final/config.yaml", exp / "final/model.pth", "cpu")
    ssl = net.frontend.ssl_model
    assert [l.fc1.out_features for l in ssl.encoder.layers] == arch["ffn_dims"]
    assert [l.self_attn.num_heads for l in ssl.encoder.layers] == arch["attention_heads"]
    dense_params = summary["params_total_dense"]
    assert sum(p.numel() for p in net.parameters()) < dense_params
    assert not any("parametrizations" in k for k in net.state_dict())


def test_compact_model_decodes_through_the_inference_entry_point(tiny_ckpt, tmp_path):
    from espnet_pinch.bin import asr_inference
    from espnet_pinch.bin.finalize import finalize

    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(tiny_ckpt, exp, pruner="nascp", pruner_conf={"target_sparsity": 0.5})
    args.token_type = "char"  # the tiny token list has no sentencepiece model
    model = PinchASRTask.build_model(args)
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    finalize(exp, "model.pth", exp / "final")
    wav = tmp_path / "a.wav"
    soundfile.write(wav, torch.randn(8000).numpy() * 0.1, 16000)
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    asr_inference.main([
        "--asr_train_config", str(exp / "final/config.yaml"),
        "--asr_model_file", str(exp / "final/model.pth"),
        "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
        "--output_dir", str(tmp_path / "dec"), "--ctc_weight", "1.0", "--beam_size", "2",
        "--batch_size", "1", "--lm_weight", "0.0"])
    assert (tmp_path / "dec/1best_recog/text").read_text().startswith("utt1")


@pytest.mark.parametrize("pruner", ["nascp", "hj"])
@pytest.mark.parametrize("conf, key", [
    ({"finalize_tolerance": -0.1}, "pruner_conf.finalize_tolerance"),
    ({"finetune_epochs": -1}, "pruner_conf.finetune_epochs"),
    ({"warmup_steps": -1}, "pruner_conf.warmup_steps"),
    ({"dual_lr": 0.0}, "pruner_conf.dual_lr"),
])
def test_structured_bad_config_names_the_key(pruner, conf, key, tiny_ckpt, tmp_path):
    args = build_args(tiny_ckpt, tmp_path, pruner=pruner, pruner_conf={"target_sparsity": 0.5, **conf})
    with pytest.raises(ValueError, match=key):
        PinchASRTask.build_model(args)


def test_argmax_margin_holds_a_groups_choice_until_another_beats_it_by_the_margin(tiny_ckpt, tmp_path):
    model = nascp_model(tiny_ckpt, tmp_path, width_fractions=[0.25, 0.5, 1.0], argmax_margin=0.5,
                        arch_lr_scale=1.0)
    p = model.pruner
    assert "held" in dict(p.named_buffers())  # resumed with the checkpoint
    assert "held" not in dict(nascp_model(tiny_ckpt, tmp_path).pruner.named_buffers())  # margin 0
    full = p.chosen_widths(hold=True)  # all tied: every group holds its full width
    assert full == p.full_widths()
    name = "layers.0.ffn"
    a = p.alpha[p._key(name)]
    with torch.no_grad():
        a.copy_(torch.tensor([0.4, 0.0, 0.0]))  # the narrowest leads by 0.4 <= 0.5: held
    assert p.chosen_widths(hold=True)[name] == 64
    with torch.no_grad():
        a.copy_(torch.tensor([0.6, 0.0, 0.0]))  # by 0.6 > 0.5: switches,
    assert p.chosen_widths()[name] == 64  # but evaluation and finalize see the held one
    assert p.chosen_widths(hold=True)[name] == 16  # a training step: now held
    assert p.chosen_widths()[name] == 16
    with torch.no_grad():
        a.copy_(torch.tensor([0.0, 0.0, 0.3]))  # back: the full width leads by 0.3 only
    assert p.chosen_widths(hold=True)[name] == 16
    plain = nascp_model(tiny_ckpt, tmp_path, width_fractions=[0.25, 0.5, 1.0], arch_lr_scale=1.0).pruner
    with torch.no_grad():
        plain.alpha[plain._key(name)].copy_(torch.tensor([0.0, 0.0, 0.3]))
    assert plain.chosen_widths()[name] == 64  # the plain argmax follows at once
    with pytest.raises(ValueError, match="pruner_conf.argmax_margin"):
        nascp_model(tiny_ckpt, tmp_path, argmax_margin=-1.0)


def test_max_switches_moves_only_the_largest_leads_one_candidate_per_training_step(tiny_ckpt, tmp_path):
    fractions = [0.25, 0.5, 1.0]
    model = nascp_model(tiny_ckpt, tmp_path, width_fractions=fractions, max_switches=1,
                        arch_lr_scale=1.0)
    p = model.pruner
    assert "held" in dict(p.named_buffers())
    full = p.full_widths()
    assert p.chosen_widths(hold=True) == full  # the first step sets every group
    leads = {"layers.0.ffn": 0.3, "layers.1.ffn": 0.9, "conv.0": 0.6}  # the narrowest leads by

    def set_leads(pruner):
        with torch.no_grad():
            for name, lead in leads.items():
                pruner.alpha[pruner._key(name)].copy_(torch.tensor([lead, 0.0, 0.0]))

    set_leads(p)
    order = sorted(leads, key=leads.get, reverse=True)  # layers.1.ffn, conv.0, layers.0.ffn

    def at(name, j):
        return {name: p.candidates[name][j]}

    assert p.chosen_widths() == full  # evaluation and finalize: the held architecture
    expect = dict(full)
    for name in order:  # one group per training step, the largest lead first (a lead is over
        for j in (1, 0):  # the held candidate), one candidate a step down to its argmax
            expect.update(at(name, j))
            assert p.chosen_widths(hold=True) == expect
            assert p.chosen_widths() == expect
    assert p.chosen_widths(hold=True) == expect  # there they stay
    two = nascp_model(tiny_ckpt, tmp_path, width_fractions=fractions, max_switches=2,
                      arch_lr_scale=1.0).pruner
    two.chosen_widths(hold=True)
    set_leads(two)
    assert two.chosen_widths(hold=True) == {**full, **at(order[0], 1), **at(order[1], 1)}
    # with budget_ref_steps the limit is a rate: a budget of a third of the steps moves three
    # groups a step, one of twice the steps still one (at least one)
    scaled = nascp_model(tiny_ckpt, tmp_path, width_fractions=fractions, max_switches=1,
                         arch_lr_scale=1.0, budget_ref_steps=30).pruner
    scaled.bind_budget(10)
    scaled.chosen_widths(hold=True)
    set_leads(scaled)
    one_down = {n: scaled.candidates[n][1] for n in order}
    assert scaled.chosen_widths(hold=True) == {**full, **one_down}
    scaled.bind_budget(60)
    assert scaled.chosen_widths(hold=True) == {**full, **one_down, **at(order[0], 0)}
    for bad in (-1, 0.5, True):
        with pytest.raises(ValueError, match="pruner_conf.max_switches"):
            nascp_model(tiny_ckpt, tmp_path, max_switches=bad)


def test_move_band_refuses_moves_that_leave_the_band_and_lets_the_next_lead_move(tiny_ckpt, tmp_path):
    fractions = [0.25, 0.5, 1.0]
    a, b = "layers.1.ffn", "conv.0"  # a: the larger lead (and the larger group), b: the next

    def searched(**conf):
        p = nascp_model(tiny_ckpt, tmp_path, width_fractions=fractions, max_switches=1,
                        arch_lr_scale=1.0, **conf).pruner
        p.chosen_widths(hold=True)  # every group holds its full width
        with torch.no_grad():
            p.alpha[p._key(a)].copy_(torch.tensor([0.9, 0.0, 0.0]))
            p.alpha[p._key(b)].copy_(torch.tensor([0.6, 0.0, 0.0]))
        return p

    p = searched()
    full = p.full_widths()

    def s(**moves):  # sparsity with group -> candidate index
        return float(p.sparsity_of({**full, **{n.replace("_", "."): p.candidates[n.replace("_", ".")][j]
                                               for n, j in moves.items()}}))

    a1, a0 = s(layers_1_ffn=1), s(layers_1_ffn=0)
    a1b1, a1b0 = s(layers_1_ffn=1, conv_0=1), s(layers_1_ffn=1, conv_0=0)
    assert 0 < a1b1 - a1 < min(a0, a1b0) - a1  # b's first move is the smallest
    band = (a1b1 + min(a0, a1b0)) / 2 - a1  # holds b's first move from a1, no other
    plain, banded = searched(target_sparsity=a1), searched(target_sparsity=a1, move_band=band)
    at = {n: (lambda j, n=n: p.candidates[n][j]) for n in (a, b)}
    # step 1: a's move ends on the target: both make it
    assert plain.chosen_widths(hold=True) == banded.chosen_widths(hold=True) == {**full, a: at[a](1)}
    # step 2: a's next move would leave the band: refused, and the step's one move goes to b
    assert plain.chosen_widths(hold=True) == {**full, a: at[a](0)}
    assert banded.chosen_widths(hold=True) == {**full, a: at[a](1), b: at[b](1)}
    # step 3: a's and b's next moves would both leave the band: the architecture stays
    assert banded.chosen_widths(hold=True) == {**full, a: at[a](1), b: at[b](1)}
    assert abs(float(banded.sparsity_of(banded.chosen_widths())) - a1) <= band
    # a move towards the target is made even if it ends outside the band
    far = searched(target_sparsity=2 * a0, move_band=band)
    assert far.chosen_widths(hold=True) == {**full, a: at[a](1)}
    for bad in ({"move_band": -0.1}, {"move_band": 0.02, "max_switches": 0}):
        with pytest.raises(ValueError, match="pruner_conf.move_band"):
            nascp_model(tiny_ckpt, tmp_path, **bad)


@pytest.mark.parametrize("on_argmax", [False, True])
def test_gap_on_argmax_puts_the_logits_choice_in_the_term_not_the_held_one(tiny_ckpt, tmp_path, on_argmax):
    """With a held architecture (max_switches, move_band) the term's value is the held one's
    sparsity, or with gap_on_argmax the plain argmax architecture's (the logits' own choice)."""
    model = nascp_model(tiny_ckpt, tmp_path, target_sparsity=0.6, penalty=10.0, dual_lr=1.0,
                        warmup_steps=0, hard_gap=True, max_switches=1, move_band=0.02,
                        gap_on_argmax=on_argmax)
    p = model.pruner
    p.chosen_widths(hold=True)  # every group holds its full width (all logits tied)
    with torch.no_grad():  # the logits now prefer the narrowest candidate everywhere
        for a in p.alpha.values():
            a.zero_()[0] = 0.05
    argmax = float(p.sparsity_of({n: ks[0] for n, ks in p.candidates.items()}))
    model.train()
    _, stats, _ = model(**batch())
    held = float(stats["sparsity"])  # one move made this step: far below the argmax
    assert 0 < held < 0.2 < 0.6 < argmax
    gap = (argmax if on_argmax else held) - 0.6
    assert float(stats["loss_sparsity"]) == pytest.approx(10.0 * gap ** 2, rel=1e-5)  # lambda1 was 0
    assert float(p.lambda1) == pytest.approx(gap, rel=1e-5)
    assert ("argmax_sparsity" in stats) == on_argmax
    with pytest.raises(ValueError, match="pruner_conf.gap_on_argmax needs hard_gap"):
        nascp_model(tiny_ckpt, tmp_path, gap_on_argmax=True)


@pytest.mark.parametrize("holding", [True, False])
def test_finalize_reports_the_unheld_architecture_of_a_method_that_holds(tiny_ckpt, tmp_path, holding):
    """A held architecture that the logits have left: finalize keeps the held one and reports the
    argmax architecture's sparsity and the share of its units the kept one differs by; a method
    that holds nothing reports neither."""
    conf = dict(max_switches=1, move_band=0.02) if holding else {}
    model = nascp_model(tiny_ckpt, tmp_path, target_sparsity=0.6, warmup_steps=0, **conf)
    p = model.pruner
    if holding:
        p.chosen_widths(hold=True)  # every group holds its full width (all logits tied)
    with torch.no_grad():  # the logits now prefer the narrowest candidate everywhere
        for a in p.alpha.values():
            a.zero_()[0] = 0.05
    narrow = {n: ks[0] for n, ks in p.candidates.items()}
    full = p.chosen_widths()
    out = p.finalize().to_json()
    if not holding:
        assert full == narrow
        assert "unheld_achieved" not in out and "unheld_apart_units" not in out
        return
    assert full == p.full_widths()
    assert out["sparsity_before_snap"] == pytest.approx(0.0)
    assert out["unheld_achieved"]["all"] == pytest.approx(float(p.sparsity_of(narrow)))
    apart = sum(full[n] - narrow[n] for n in full) / sum(narrow.values())
    assert out["unheld_apart_units"] == pytest.approx(apart) and apart > 1


def test_hard_tail_trains_the_kept_architecture_with_hard_masks_and_leaves_the_logits(tiny_ckpt, tmp_path):
    """hard_tail 0.5 of a 4-step budget: steps 0-1 search (soft Gumbel masks, the term, the
    logits' gradient), steps 2-3 train the held architecture with hard masks, no term, no
    gradient to the logits; the step still counts and the logged stats keep their keys."""
    torch.manual_seed(0)
    model = nascp_model(tiny_ckpt, tmp_path, target_sparsity=0.6, penalty=10.0, dual_lr=1.0,
                        warmup_steps=0, hard_gap=True, max_switches=1, hard_tail=0.5)
    p = model.pruner
    p.bind_budget(4)
    assert p.tail_from == 2
    with torch.no_grad():  # the logits prefer the narrowest candidate everywhere
        for a in p.alpha.values():
            a.zero_()[0] = 0.05
    model.train()
    keys = None
    for step in range(4):
        p.zero_grad(set_to_none=True)
        lam = float(p.lambda1)
        p.before_forward()
        soft = [p.column_mask(n).soft for n in p.candidates]
        loss, stats = p.loss()
        total = loss + sum(m.sum() for m in soft if m is not None)
        if total.requires_grad:  # the tail's masks and term hang on no logit
            total.backward()
        keys = keys or set(stats)
        assert set(stats) == keys
        assert int(p.step) == step + 1
        grads = [a.grad for a in p.alpha.values()]
        if step < 2:
            assert all(m is not None for m in soft) and all(g is not None for g in grads)
            assert float(p.lambda1) != lam
        else:
            held = p.chosen_widths()
            assert all(m is None for m in soft) and all(g is None for g in grads)
            assert float(stats["loss_sparsity"]) == 0.0 and float(p.lambda1) == lam
            for n, w in held.items():  # the held architecture's units, hard
                assert int(p.column_mask(n).mask.sum()) == w
            assert float(stats["sparsity"]) == pytest.approx(float(p.sparsity_of(held)))
    with pytest.raises(ValueError, match="pruner_conf.hard_tail"):
        nascp_model(tiny_ckpt, tmp_path, hard_tail=1.0)


def test_tau_steps_as_a_share_anneals_over_that_share_of_any_budget(tiny_ckpt, tmp_path):
    model = nascp_model(tiny_ckpt, tmp_path, tau_start=1.0, tau_end=0.01, tau_steps=0.5)
    p = model.pruner
    with pytest.raises(ValueError, match="pruner_conf.tau_steps"):
        p.temperature()
    for budget, halfway in [(40, 10), (8, 2)]:  # half of the share: the geometric mean, 0.1
        p.bind_budget(budget)
        p.step.fill_(halfway)
        assert p.temperature() == pytest.approx(0.1)
        p.step.fill_(budget // 2)
        assert p.temperature() == pytest.approx(0.01)
    p = nascp_model(tiny_ckpt, tmp_path, tau_start=1.0, tau_end=0.01, tau_steps=20).pruner
    p.bind_budget(8)  # a whole number of steps stays that many on any budget
    p.step.fill_(10)
    assert p.temperature() == pytest.approx(0.1)
