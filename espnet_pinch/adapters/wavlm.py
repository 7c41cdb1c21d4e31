"""WavLM (S3PRL's ``WavLM``, Microsoft's implementation): wav2vec 2.0's layout (conv extractor,
``post_extract_proj``, Transformer layers with ``self_attn`` q/k/v/out and ``fc1``/``fc2``) with
a gated relative position bias in the attention.

What differs from ``adapters/wav2vec2.py``:
  - configs: ``WavLMConfig`` (a plain class; ``normalize`` is a model field, no task config) and
    S3PRL's ``wavlm_local`` checkpoint layout ``{"cfg": {...}, "model": state_dict}``;
  - attention: layer 0 owns the relative position embedding (``relative_attention_bias``:
    buckets x heads) and passes the bias it computes, (B*H, T, T), on to every later layer.
    With ``gru_rel_pos``, each head scales that bias by a gate computed from *its own slice of
    the layer input* (``grep_linear`` on channels h*dh ... (h+1)*dh of the residual stream,
    shared by the heads, times the per-head ``grep_a``).
So a head is not interchangeable with another by position: a compacted layer
(``WavLMHeadSubsetAttention``) remembers the original index of every head it keeps, selects those
heads' rows of the shared bias and their input slices for the gate, and slices ``grep_a``; the
explicit architecture lists the kept indices per layer (``kept_heads``) so that a rebuilt model
selects the same ones. Layer 0 keeps the whole relative position embedding (every later layer
reads the bias of all the original heads; it is buckets x heads, 3,840 parameters for Base) and
passes on the full bias whatever it keeps itself.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from espnet_pinch.adapters.wav2vec2 import Wav2Vec2Adapter
from espnet_pinch.compaction.units import UnitGroup

_CONVERTED = "https://huggingface.co/s3prl/converted_ckpts/resolve/main/"


class WavLMHeadSubsetAttention(torch.nn.Module):
    """WavLM self-attention over a subset ``kept`` (original indices) of its ``full_heads`` heads,
    with the same projection, gate and embedding modules (state-dict keys unchanged).
    (T, B, D) in and out, ``key_padding_mask`` True at padding, ``position_bias``
    (B*full_heads, T, T) in and out, as S3PRL's layer passes it."""

    self_attention = True

    def __init__(self, att: torch.nn.Module):
        super().__init__()
        if getattr(att, "bias_k", None) is not None or getattr(att, "add_zero_attn", False):
            raise ValueError("compaction: attention with add_bias_kv / add_zero_attn is not supported")
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = att.q_proj, att.k_proj, att.v_proj, att.out_proj
        self.num_heads = self.full_heads = int(att.num_heads)
        self.head_dim = int(att.head_dim)
        self.kept: List[int] = list(range(self.num_heads))
        self.dropout = float(att.dropout_module.p)
        self.has_relative_attention_bias = bool(att.has_relative_attention_bias)
        self.num_buckets, self.max_distance = att.num_buckets, att.max_distance
        if self.has_relative_attention_bias:
            self.relative_attention_bias = att.relative_attention_bias
        self.gru_rel_pos = bool(att.gru_rel_pos)
        if self.gru_rel_pos:
            self.grep_linear, self.grep_a = att.grep_linear, att.grep_a

    def keep_(self, keep: torch.Tensor) -> None:
        """Keep heads ``keep`` (indices among the current heads); slices the per-head ``grep_a``."""
        keep = [int(k) for k in keep]
        self.kept = [self.kept[k] for k in keep]
        self.num_heads = len(keep)
        if self.gru_rel_pos:
            self.grep_a = torch.nn.Parameter(self.grep_a.detach()[:, keep].clone().contiguous(),
                                             requires_grad=self.grep_a.requires_grad)

    def compute_bias(self, query_length: int, key_length: int) -> torch.Tensor:
        from s3prl.upstream.wavlm.modules import MultiheadAttention

        return MultiheadAttention.compute_bias(self, query_length, key_length)

    def _relative_positions_bucket(self, relative_positions, bidirectional=True):
        from s3prl.upstream.wavlm.modules import MultiheadAttention

        return MultiheadAttention._relative_positions_bucket(self, relative_positions, bidirectional)

    def forward(self, query: torch.Tensor, key=None, value=None,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = False,
                attn_mask=None, position_bias: Optional[torch.Tensor] = None, **unused):
        if attn_mask is not None:
            raise NotImplementedError("WavLMHeadSubsetAttention: no attn_mask (streaming masks)")
        t, b, _ = query.shape
        if self.has_relative_attention_bias and position_bias is None:
            position_bias = (self.compute_bias(t, t).unsqueeze(0).repeat(b, 1, 1, 1)
                             .view(b * self.full_heads, t, t))
        if self.num_heads == 0:
            out = query.new_zeros(t, b, self.out_proj.out_features)
            bias = self.out_proj.bias
            return (out + bias if bias is not None else out), None, position_bias

        def heads(x):  # (T, B, h*dh) -> (B, h, T, dh)
            return x.view(t, b, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        mask = None
        if position_bias is not None:
            mask = position_bias.view(b, self.full_heads, t, t)[:, self.kept]
            if self.gru_rel_pos:  # each kept head's gate reads its own slice of the input
                x = query.transpose(0, 1).reshape(b, t, self.full_heads, self.head_dim)
                x = x[:, :, self.kept].permute(0, 2, 1, 3)  # (B, h, T, dh)
                gate_a, gate_b = torch.sigmoid(
                    self.grep_linear(x).view(b, self.num_heads, t, 2, 4).sum(-1)).chunk(2, dim=-1)
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask
        if key_padding_mask is not None:
            pad = key_padding_mask.to(torch.bool)[:, None, None, :]
            mask = (query.new_zeros(()) if mask is None else mask).masked_fill(pad, float("-inf"))
        out = torch.nn.functional.scaled_dot_product_attention(
            heads(self.q_proj(query)), heads(self.k_proj(query)), heads(self.v_proj(query)),
            attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = out.permute(2, 0, 1, 3).reshape(t, b, self.num_heads * self.head_dim)
        return self.out_proj(out), None, position_bias


class WavLMAdapter(Wav2Vec2Adapter):
    arch = "wavlm"
    s3prl_local = "wavlm_local"
    hub = {
        "wavlm_base": _CONVERTED + "wavlm_base.pt",
        "wavlm_base_plus": _CONVERTED + "wavlm_base_plus.pt",
        "wavlm_large": _CONVERTED + "wavlm_large.pt",
    }
    arch_keys = ("conv_channels", "attention_heads", "ffn_dims", "kept_heads")

    # -- building ----------------------------------------------------------------------------
    def config_classes(self) -> tuple:
        from s3prl.upstream.wavlm.WavLM import WavLMConfig

        return WavLMConfig, None

    def config_fields(self) -> Tuple[set, set]:
        return set(self.config_classes()[0]().__dict__), set()

    def full_configs(self, model_cfg: dict, task_cfg: dict) -> tuple:
        if task_cfg:
            raise ValueError(f"arch wavlm has no task_cfg (normalize is a model_cfg field), got {task_cfg}")
        return self.config_classes()[0](dict(model_cfg)), None

    def build(self, model_cfg, task_cfg) -> torch.nn.Module:
        from s3prl.upstream.wavlm.WavLM import WavLM

        return WavLM(model_cfg)

    def checkpoint(self, model_cfg: dict, task_cfg: dict, state_dict: dict) -> dict:
        cfg, _ = self.full_configs(model_cfg, task_cfg)
        return {"cfg": dict(cfg.__dict__), "model": state_dict}

    def read_checkpoint(self, ckpt: dict) -> Tuple[dict, dict, dict]:
        return dict(ckpt["cfg"]), {}, ckpt["model"]

    def owns_checkpoint(self, ckpt: dict) -> bool:
        return "cfg" in ckpt and "model" in ckpt

    def owns_model(self, model: torch.nn.Module) -> bool:
        from s3prl.upstream.wavlm.WavLM import WavLM

        return isinstance(model, WavLM)

    # -- forward -----------------------------------------------------------------------------
    def normalizes_wav(self, expert: torch.nn.Module) -> bool:
        return bool(expert.cfg.normalize)

    @staticmethod
    def _layer(layer: torch.nn.Module, x: torch.Tensor, state: dict) -> torch.Tensor:
        """WavLM's layers pass the relative position bias on (computed by the first layer)."""
        x, _, state["pos_bias"] = layer(x, self_attn_padding_mask=None, need_weights=False,
                                        pos_bias=state.get("pos_bias"))
        return x

    # -- units -------------------------------------------------------------------------------
    @staticmethod
    def _resize_heads(layer: torch.nn.Module, keep: torch.Tensor) -> None:
        att = layer.self_attn
        if not isinstance(att, WavLMHeadSubsetAttention):
            att = WavLMHeadSubsetAttention(att)
        att.keep_(keep)
        layer.self_attn = att

    def architecture(self, model: torch.nn.Module) -> dict:
        arch = super().architecture(model)
        arch["kept_heads"] = [list(getattr(l.self_attn, "kept", range(l.self_attn.num_heads)))
                              for l in model.encoder.layers]
        return arch

    def arch_keep(self, group: UnitGroup, arch: dict, width: int) -> Sequence[int]:
        if group.kind == "heads" and "kept_heads" in arch:
            kept = arch["kept_heads"][int(group.name.split(".")[1])]
            if len(kept) != width:
                raise ValueError(f"pruned_arch: {group.name}: {width} heads but kept_heads {kept}")
            return kept
        return range(width)
