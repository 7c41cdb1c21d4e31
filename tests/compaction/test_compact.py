"""Physical compaction: masked model == compact model, for conv channels, heads and FFN units."""
import pytest
import torch
from torch.nn.utils import parametrize

from espnet_pinch.adapters import adapter_for
from espnet_pinch.compaction import ColumnMask, ranked_units
from espnet_pinch.upstream.build import build_model, load_size_config
from tests.conftest import TINY
from tests.numerics import assert_same_function

TOL = 1e-5  # float32 rounding: the compact model sums fewer terms, and head-pruned attention
#             runs S3PRL's general path instead of the fused one


def features(model, wav):
    with torch.no_grad():
        return model.extract_features(wav, padding_mask=None, mask=False)["x"]


@pytest.fixture()
def tiny_model():
    model = build_model(load_size_config(TINY), seed=0).eval()
    with torch.no_grad():  # make norms and biases non-trivial so slicing them matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def unit_groups(model):
    return adapter_for(model).unit_groups(model)


def compact_(model, keep):
    return adapter_for(model).compact_(model, keep)


def apply_architecture_(model, arch):
    adapter_for(model).apply_architecture_(model, arch)


def architecture(model):
    return adapter_for(model).architecture(model)


def mask_and_compact(model, keep):
    groups = unit_groups(model)
    for name, g in groups.items():
        cm = ColumnMask(g.num_units, g.unit_size)
        cm.mask = torch.zeros(g.num_units)
        cm.mask[list(keep.get(name, range(g.num_units)))] = 1.0
        parametrize.register_parametrization(g.consumer, "weight", cm)
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    masked = features(model, wav)
    for g in groups.values():
        parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=True)
    arch = compact_(model, keep)
    return masked, features(model, wav), arch


def test_groups_of_the_tiny_model(tiny_model):
    groups = unit_groups(tiny_model)
    # 7 convs: the last one feeds the feature LayerNorm, so 6 conv groups; 2 layers x (heads, ffn)
    assert list(groups)[:6] == [f"conv.{i}" for i in range(6)]
    assert groups["layers.0.heads"].num_units == 2 and groups["layers.0.heads"].unit_size == 16
    assert groups["layers.1.ffn"].num_units == 64


def test_masked_equals_compact_including_empty_groups(tiny_model):
    groups = unit_groups(tiny_model)
    gen = torch.Generator().manual_seed(1)
    keep = {n: sorted(torch.randperm(g.num_units, generator=gen)[: g.num_units // 2].tolist())
            for n, g in groups.items()}
    keep["layers.0.heads"] = []     # a whole attention block removed
    keep["layers.1.ffn"] = []       # a whole FFN removed
    before = sum(p.numel() for p in tiny_model.parameters())
    masked, compact, arch = mask_and_compact(tiny_model, keep)
    assert arch["attention_heads"] == [0, 1] and arch["ffn_dims"] == [32, 0]
    assert arch["conv_channels"] == [8] * 6 + [16]
    assert sum(p.numel() for p in tiny_model.parameters()) < 0.6 * before
    assert (masked - compact).abs().max() < TOL


def test_compact_state_loads_into_a_fresh_model_of_the_architecture(tiny_model):
    keep = {"conv.0": [1, 3, 5], "layers.1.heads": [1], "layers.0.ffn": list(range(0, 64, 3))}
    _, compact, arch = mask_and_compact(tiny_model, keep)
    fresh = build_model(load_size_config(TINY), seed=7).eval()
    apply_architecture_(fresh, arch)
    assert architecture(fresh) == arch
    fresh.load_state_dict(tiny_model.state_dict())  # strict: same keys and shapes
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in fresh.state_dict().items())
    assert_same_function(features(fresh, wav), compact)  # same weights, other tensors' memory


def test_units_are_ranked_by_magnitude(tiny_model):
    g = unit_groups(tiny_model)["layers.0.ffn"]
    with torch.no_grad():
        g.producers[0].weight[5].mul_(100)
        g.producers[0].weight[9].zero_()
        g.producers[0].bias[9] = 0
    order = ranked_units(g)
    assert order[0] == 5 and order[-1] == 9


def test_bad_architectures_are_rejected(tiny_model):
    with pytest.raises(ValueError, match="at least one channel"):
        compact_(tiny_model, {"conv.0": []})
    with pytest.raises(ValueError, match="unknown unit groups"):
        compact_(tiny_model, {"layers.7.ffn": [0]})
    with pytest.raises(ValueError, match="2 layers"):
        apply_architecture_(tiny_model, {"ffn_dims": [3]})
    with pytest.raises(ValueError, match="conv_channels.*cannot be built"):
        apply_architecture_(tiny_model, {"conv_channels": [16] * 6 + [8]})
