from collections import OrderedDict

import pytest
import torch

from espnet_pinch.pruning.ump import UMPPruner


def layers():
    torch.manual_seed(0)
    return OrderedDict(a=torch.nn.Linear(10, 20), b=torch.nn.Linear(20, 7), c=torch.nn.Conv1d(3, 4, 5))


@pytest.mark.parametrize("target", [0.3, 0.65])
def test_masks_are_uniform_per_layer_and_by_magnitude(target):
    ls = layers()
    dense = {n: l.weight.detach().clone() for n, l in ls.items()}
    pruner = UMPPruner(ls, target_sparsity=target, layers=["*"])
    pruner.before_forward()
    per = pruner.sparsity()["per_layer"]
    for name, layer in ls.items():
        n = layer.weight.numel()
        assert per[name] == pytest.approx(round(target * n) / n)  # same fraction in every layer
        kept = layer.weight != 0
        # every pruned weight is no larger in magnitude than every kept one
        assert dense[name][~kept].abs().max() <= dense[name][kept].abs().min()


def test_masks_stay_fixed_during_fine_tuning():
    ls = layers()
    pruner = UMPPruner(ls, target_sparsity=0.5, layers=["*"])
    pruner.before_forward()
    masks = {n: (l.weight == 0).clone() for n, l in ls.items()}
    opt = torch.optim.SGD([p for l in ls.values() for p in l.parameters()], lr=0.1)
    for _ in range(3):
        pruner.before_forward()
        loss = ls["a"](torch.randn(4, 10)).pow(2).sum() + ls["c"](torch.randn(2, 3, 9)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, l in ls.items():
        assert torch.equal(l.weight == 0, masks[n])
    summary = pruner.finalize()
    assert summary.sparsity == pytest.approx(0.5, abs=0.01) and summary.extra_params == 0


def test_bad_target():
    with pytest.raises(ValueError, match="pruner_conf.target_sparsity"):
        UMPPruner(layers(), target_sparsity=1.2, layers=["*"])
