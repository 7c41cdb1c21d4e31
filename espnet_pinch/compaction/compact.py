"""Physical compaction: slice removed units out of a wav2vec2 / HuBERT model, in place.

``compact_(model, keep)`` takes, per unit group (``compaction.units``), the unit indices to keep
and replaces the producer rows, consumer columns and per-channel norm entries with smaller
tensors: Conv1d / Linear / GroupNorm modules get new sizes, an attention module gets fewer heads.
S3PRL's attention cannot take its fused path with fewer heads than the residual width and falls
back to its general, unfused path; a compacted attention module runs ``_pruned_heads_forward``
instead: the same projections and ``scaled_dot_product_attention``. The residual width never
changes, so nothing outside the groups is touched.

``apply_architecture_(model, arch)`` gives a freshly built (random-weight) model the shapes of
an explicit architecture (``units.architecture``), so that a compacted model's state dict loads
into it: the compact model needs neither masks nor the original checkpoint.
A group may keep zero units (a removed FFN or attention block outputs its bias only), except
conv groups, which keep at least one channel.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

from espnet_pinch.compaction.units import UnitGroup, architecture, unit_groups


def _rows(unit_idx: torch.Tensor, unit_size: int) -> torch.Tensor:
    if unit_size == 1:
        return unit_idx
    base = unit_idx[:, None] * unit_size + torch.arange(unit_size)[None, :]
    return base.reshape(-1)


def _param(t: torch.Tensor, like: torch.nn.Parameter) -> torch.nn.Parameter:
    return torch.nn.Parameter(t.detach().clone().contiguous(), requires_grad=like.requires_grad)


def _slice_out(mod: torch.nn.Module, rows: torch.Tensor) -> None:
    mod.weight = _param(mod.weight.index_select(0, rows), mod.weight)
    if getattr(mod, "bias", None) is not None:
        mod.bias = _param(mod.bias.index_select(0, rows), mod.bias)
    if isinstance(mod, torch.nn.Conv1d):
        mod.out_channels = len(rows)
    elif isinstance(mod, torch.nn.Linear):
        mod.out_features = len(rows)
    elif isinstance(mod, torch.nn.GroupNorm):
        mod.num_groups = mod.num_channels = len(rows)


def _slice_in(mod: torch.nn.Module, cols: torch.Tensor) -> None:
    mod.weight = _param(mod.weight.index_select(1, cols), mod.weight)
    if isinstance(mod, torch.nn.Conv1d):
        mod.in_channels = len(cols)
    else:
        mod.in_features = len(cols)


@torch.no_grad()
def compact_group_(group: UnitGroup, keep: Sequence[int]) -> None:
    keep = torch.as_tensor(sorted(int(k) for k in keep), dtype=torch.long)
    if len(keep) and (keep[0] < 0 or keep[-1] >= group.num_units):
        raise ValueError(f"{group.name}: unit indices must be in [0, {group.num_units})")
    if group.kind == "conv" and len(keep) == 0:
        raise ValueError(f"{group.name}: a conv layer must keep at least one channel")
    idx = _rows(keep, group.unit_size)
    for prod in group.producers:
        _slice_out(prod, idx)
    if group.norm is not None:
        _slice_out(group.norm, keep)
    _slice_in(group.consumer, idx)
    if group.owner is not None:  # S3PRL MultiheadAttention
        att = group.owner
        att.num_heads = len(keep)
        att.embed_dim = att.head_dim * len(keep)
        att.skip_embed_dim_check = True
        if len(keep) == 0:  # S3PRL's attention cannot reshape zero heads: output = out_proj bias
            att.forward = _no_heads_forward.__get__(att)
        else:
            att.forward = _pruned_heads_forward.__get__(att)


def _pruned_heads_forward(self, query, key=None, value=None, key_padding_mask=None,
                          incremental_state=None, need_weights=False, static_kv=False,
                          attn_mask=None, before_softmax=False, need_head_weights=False):
    """Self-attention with ``num_heads`` heads of ``head_dim`` on a wider residual stream."""
    if (need_weights or need_head_weights or attn_mask is not None or incremental_state is not None
            or before_softmax or static_kv or not self.self_attention):
        return type(self).forward(self, query, key, value, key_padding_mask, incremental_state,
                                  need_weights, static_kv, attn_mask, before_softmax,
                                  need_head_weights)
    t, b, _ = query.shape

    def heads(x):  # (T, B, H*dh) -> (B, H, T, dh)
        return x.view(t, b, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    mask = None
    if key_padding_mask is not None:  # True = padding in S3PRL; True = attend in SDPA
        mask = ~key_padding_mask.to(torch.bool)[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(
        heads(self.q_proj(query)), heads(self.k_proj(query)), heads(self.v_proj(query)),
        attn_mask=mask, dropout_p=self.dropout_module.p if self.training else 0.0)
    return self.out_proj(out.permute(2, 0, 1, 3).reshape(t, b, self.num_heads * self.head_dim)), None


def _no_heads_forward(self, query, key=None, value=None, *args, **kwargs):
    t, b, _ = query.shape
    bias = self.out_proj.bias
    out = query.new_zeros(t, b, self.out_proj.out_features)
    return (out + bias if bias is not None else out), None


def compact_(ssl_model: torch.nn.Module, keep: Dict[str, Sequence[int]]) -> dict:
    """Keep only the listed units of each named group; returns the new ``architecture``."""
    groups = unit_groups(ssl_model)
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"compaction: unknown unit groups {unknown} (have {list(groups)[:4]}, ...)")
    for name, idx in keep.items():
        compact_group_(groups[name], idx)
    return architecture(ssl_model)


def apply_architecture_(ssl_model: torch.nn.Module, arch: dict) -> None:
    """Resize a freshly built model to ``arch`` (weights are placeholders until loaded)."""
    have = architecture(ssl_model)
    for key in ("conv_channels", "attention_heads", "ffn_dims"):
        if key in arch and len(arch[key]) != len(have[key]):
            raise ValueError(f"pruned_arch.{key}: {len(arch[key])} entries for a model with "
                             f"{len(have[key])} layers")
    keep = {}
    for name, g in unit_groups(ssl_model).items():
        if g.kind == "conv":
            want = arch.get("conv_channels", have["conv_channels"])[int(name.split(".")[1])]
        elif g.kind == "heads":
            want = arch.get("attention_heads", have["attention_heads"])[int(name.split(".")[1])]
        else:
            want = arch.get("ffn_dims", have["ffn_dims"])[int(name.split(".")[1])]
        if not 0 <= want <= g.num_units:
            raise ValueError(f"pruned_arch: {name} width {want} not in [0, {g.num_units}]")
        if want != g.num_units:
            keep[name] = range(want)
    compact_(ssl_model, keep)
    if architecture(ssl_model)["conv_channels"] != list(arch.get("conv_channels", have["conv_channels"])):
        raise ValueError("pruned_arch.conv_channels: the last conv layer cannot be pruned "
                         "(and no conv layer in layer_norm extractor mode)")
