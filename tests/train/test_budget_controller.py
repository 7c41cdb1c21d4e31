"""The budget-relative controller (``pruner_conf.budget_ref_steps``, ``pruning/lagrangian.py``)
through ESPnet's real trainer: the pruner's parameters train in their own optimizer group at
R / N x the schedule's rate, dual_lr is scaled the same, and a run stopped after one epoch and
continued ends exactly where an uninterrupted one does."""
import re

import pytest
import torch

from espnet_pinch.train.optim import BUDGET_FLAG

from . import toy

STEPS = 12  # per epoch: 24 utterances, batches of 2
REF = 6 * STEPS  # tuned on 6 epochs; this budget has 2: factor 3


def test_pruner_group_runs_at_ref_over_budget_and_resumes_exactly(tiny_ckpt, tmp_path):
    dump = toy.make_data(tmp_path / "toy", n=2 * STEPS)
    tokens = tmp_path / "toy" / "tokens.txt"
    config = toy.write_config(
        tmp_path / "config.yaml", tiny_ckpt, "hj",
        {**toy.PRUNERS["hj"], "warmup_steps": 0.5, "dual_lr": 2.0, "budget_ref_steps": REF},
        scheduler="budgetlr", scheduler_conf={"warmup_steps": 3, "budget_epochs": 2})
    whole, split = tmp_path / "whole", tmp_path / "split"

    r = toy.run(toy.train_args(config, dump, tokens, whole, "--max_epoch", "2"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert re.search(rf"controller tuned on {REF} steps, this budget has {2 * STEPS}: .* x 3\b", out), out[-3000:]
    # ESPnet's resume file, written by this test (its reporter holds numpy scalars, which the
    # weights-only loader refuses), read the way ESPnet reads it
    ckpt = torch.load(whole / "checkpoint.pth", map_location="cpu", weights_only=False)
    groups = ckpt["optimizers"][0]["param_groups"]
    own = [g for g in groups if g.get(BUDGET_FLAG)]
    assert len(groups) == 2 and len(own) == 1
    n_pruner = sum(v.numel() for k, v in ckpt["model"].items() if k.startswith("pruner.gates."))
    assert len(own[0]["params"]) == sum(1 for k in ckpt["model"] if k.startswith("pruner.gates."))
    assert n_pruner > 0
    assert own[0]["lr"] == pytest.approx(groups[0]["lr"] * 3)  # one schedule, three times the rate
    base = ckpt["schedulers"][0]["base_lrs"]
    assert base[1] == pytest.approx(base[0] * 3)

    r = toy.run(toy.train_args(config, dump, tokens, split, "--max_epoch", "1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = toy.run(toy.train_args(config, dump, tokens, split, "--max_epoch", "2"))  # continued
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    a = torch.load(whole / "2epoch.pth", map_location="cpu", weights_only=True)
    b = torch.load(split / "2epoch.pth", map_location="cpu", weights_only=True)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
