"""What every upstream family's adapter must do, on a tiny random model of each family, and the
structured pruners on a bare SSL model (no ESPnet model built)."""
import pytest
import torch
from torch.nn.utils import parametrize

from espnet_pinch.adapters import ADAPTERS, adapter, adapter_for, adapter_for_checkpoint
from espnet_pinch.compaction import ColumnMask
from espnet_pinch.compaction.cost import CostModel
from espnet_pinch.profiling.macs import ssl_macs_per_second
from espnet_pinch.pruning.layers import select_layers
from espnet_pinch.upstream.build import build_model, checkpoint_dict, load_size_config
from tests.conftest import TINY

TOL = 1e-5


def tiny_config(arch: str) -> dict:
    if arch == "wavlm":
        return load_size_config(TINY.parent / "wavlm_tiny_test.yaml")
    cfg = load_size_config(TINY)
    if arch == "hubert":
        cfg = {**cfg, "arch": "hubert", "model_cfg": {**cfg["model_cfg"], "label_rate": 50},
               "task_cfg": {"label_rate": 50}}
    return cfg


def tiny_model(arch: str, seed: int = 0) -> torch.nn.Module:
    model = build_model(tiny_config(arch), seed=seed).eval()
    with torch.no_grad():  # non-trivial norms and biases, so slicing them matters
        gen = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def features(model, wav):
    with torch.no_grad():
        out = adapter_for(model).extract(model, wav)
    return out["x"] if isinstance(out, dict) else out[0]


FAMILIES = sorted(ADAPTERS)


@pytest.mark.parametrize("arch", FAMILIES)
def test_the_model_and_its_checkpoint_name_their_family(arch):
    model = tiny_model(arch)
    assert adapter_for(model) is adapter(arch)
    assert adapter_for_checkpoint(checkpoint_dict(tiny_config(arch), model.state_dict())) is adapter(arch)
    names = list(adapter(arch).prunable_layers(model))
    assert names[0] == "feature_extractor.conv_layers.0.0"
    assert {adapter(arch).part_of(n) for n in names} == {"cnn", "transformer", None}


@pytest.mark.parametrize("arch", FAMILIES)
def test_masked_equals_compact_and_the_architecture_rebuilds(arch):
    model, family = tiny_model(arch), adapter(arch)
    groups = family.unit_groups(model)
    gen = torch.Generator().manual_seed(1)
    keep = {n: sorted(torch.randperm(g.num_units, generator=gen)[: g.num_units // 2].tolist())
            for n, g in groups.items()}
    keep["layers.0.heads"], keep["layers.1.ffn"] = [], []  # a whole attention block, a whole FFN
    keep["layers.1.heads"] = [1]  # not the first: WavLM's heads read their own input slice
    for name, g in groups.items():
        cm = ColumnMask(g.num_units, g.unit_size)
        cm.mask = torch.zeros(g.num_units)
        cm.mask[keep[name]] = 1.0
        parametrize.register_parametrization(g.consumer, "weight", cm)
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    masked = features(model, wav)
    for g in groups.values():
        parametrize.remove_parametrizations(g.consumer, "weight", leave_parametrized=True)
    arch_widths = family.compact_(model, keep)
    assert arch_widths["attention_heads"] == [0, 1] and arch_widths["ffn_dims"] == [32, 0]
    assert type(model.encoder.layers[1].self_attn).__name__.endswith("HeadSubsetAttention")
    assert (features(model, wav) - masked).abs().max() < TOL
    fresh = build_model(tiny_config(arch), seed=7).eval()
    family.apply_architecture_(fresh, arch_widths)
    assert family.architecture(fresh) == arch_widths
    fresh.load_state_dict(model.state_dict())  # strict: same keys, same shapes
    assert (features(fresh, wav) - features(model, wav)).abs().max() < TOL


@pytest.mark.parametrize("arch", FAMILIES)
def test_the_cost_model_counts_what_compaction_leaves(arch):
    model, family = tiny_model(arch), adapter(arch)
    groups = family.unit_groups(model)
    layers = select_layers(family.prunable_layers(model), family.default_patterns)
    cost = CostModel(groups, layers, family.part_of)
    cost.trace_macs(model, lambda: family.extract(model, torch.randn(1, 16000)))
    assert cost.dense_macs == ssl_macs_per_second(model)["macs_per_second"]
    widths = {n: max(1, g.num_units // 3) for n, g in groups.items()}
    expected_params, expected_macs = cost.params(widths), cost.macs(widths)
    cnn = cost.params(widths, "cnn")
    family.compact_(model, {n: range(w) for n, w in widths.items()})
    assert expected_params == sum(m.weight.numel() for m in layers.values())
    assert cnn == sum(m.weight.numel() for n, m in layers.items() if family.part_of(n) == "cnn")
    assert expected_macs == ssl_macs_per_second(model)["macs_per_second"]


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("method", ["nascp", "hj", "spg_struct"])
def test_structured_pruners_on_a_bare_ssl_model(arch, method):
    """A pruner given only the SSL model's layers: its finalize result (keep decisions) compacts
    through the adapter to the masked model's function, at the sparsity it reports."""
    from espnet_pinch.pruning import PRUNERS

    model, family = tiny_model(arch), adapter(arch)
    size = {"target_on": "size"} if method == "spg_struct" else {}  # its default target is MACs
    pruner = PRUNERS[method](family.prunable_layers(model), model, target_sparsity=0.5,
                             finalize_tolerance=0.02, **size)
    pruner.eval()
    wav = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    result = pruner.finalize()  # untrained: finalize snaps the widths onto the target
    masked = features(model, wav)
    # NAS-CP's candidates are quarters of each group: the snap stops where it crosses the target
    assert result.structured and abs(result.sparsity - 0.5) <= (0.05 if method == "nascp" else 0.02)
    assert set(result.keep) == set(pruner.groups)
    assert result.to_json()["structured"] is True and "method" not in result.to_json()
    family.compact_(model, result.keep)
    assert (features(model, wav) - masked).abs().max() < TOL
    left = sum(m.weight.numel() for m in pruner.layers.values())
    assert 1 - left / result.gated_params == pytest.approx(result.sparsity)


def test_training_mask_is_a_subclass_with_the_same_state():
    model = tiny_model("wav2vec2")
    cls, state = type(model), {k: v.clone() for k, v in model.state_dict().items()}
    model.mask_prob, model.mask_length = 0.65, 2  # S3PRL's masking options (on the model)
    adapter("wav2vec2").enable_training_mask(model)
    assert isinstance(model, cls) and type(model) is not cls
    assert model.state_dict().keys() == state.keys()
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(features(model, wav), features(model.eval(), wav))  # eval: no masking
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    torch.manual_seed(0)
    assert not torch.allclose(features(model, wav), features(model.eval(), wav))
