"""wav2vec 2.0 (S3PRL's ``Wav2Vec2Model``, fairseq layout): the adapter, and the attention module
a head-pruned layer runs.

Layout: a CNN feature extractor (``feature_extractor.conv_layers.<i>``: Conv1d, then a per-channel
GroupNorm in the first layer of ``default`` mode, or a LayerNorm over channels in every layer of
``layer_norm`` mode), ``post_extract_proj``, a positional conv, and Transformer layers
(``encoder.layers.<l>``: ``self_attn`` with q/k/v/out projections, ``fc1`` / ``fc2``).
Unit groups:
  ``conv.<i>``          output channels of conv i, for every conv but the last (whose output
                        feeds a LayerNorm over channels: removing a channel there would change
                        every other channel's normalised value) and none in ``layer_norm`` mode;
  ``layers.<l>.heads``  attention heads: rows of q/k/v, columns of out_proj;
  ``layers.<l>.ffn``    FFN units: rows of fc1, columns of fc2.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import torch

from espnet_pinch.adapters.base import FamilyAdapter
from espnet_pinch.compaction.units import KINDS, UnitGroup

_CONVERTED = "https://huggingface.co/s3prl/converted_ckpts/resolve/main/"

# What the SPG paper gates: CNN feature-extractor convs, feature projection, q/k/v/out of every
# attention layer and both FFN layers.
TRANSFORMER_PATTERNS = (
    "encoder.layers.*.self_attn.q_proj",
    "encoder.layers.*.self_attn.k_proj",
    "encoder.layers.*.self_attn.v_proj",
    "encoder.layers.*.self_attn.out_proj",
    "encoder.layers.*.fc1",
    "encoder.layers.*.fc2",
)


class HeadSubsetAttention(torch.nn.Module):
    """Self-attention with ``num_heads`` heads of ``head_dim`` on a wider residual stream: what a
    compacted layer runs instead of S3PRL's ``MultiheadAttention`` (whose projection width is tied
    to ``embed_dim`` and whose fused path needs all heads). The same projection modules, so the
    state-dict keys are unchanged; q, k, v, then ``scaled_dot_product_attention`` (scale
    head_dim^-0.5, as S3PRL's), then out_proj. Zero heads: the output is out_proj's bias.
    Tensors are (T, B, D), as in S3PRL; padding is True in ``key_padding_mask``."""

    self_attention = True

    def __init__(self, q_proj: torch.nn.Linear, k_proj: torch.nn.Linear, v_proj: torch.nn.Linear,
                 out_proj: torch.nn.Linear, num_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.num_heads, self.head_dim, self.dropout = int(num_heads), int(head_dim), float(dropout)

    @classmethod
    def replacing(cls, att: torch.nn.Module) -> "HeadSubsetAttention":
        """The module to put in place of S3PRL's ``att`` (or of an earlier subset: re-compaction)."""
        if isinstance(att, cls):
            return att
        if getattr(att, "bias_k", None) is not None or getattr(att, "add_zero_attn", False):
            raise ValueError("compaction: attention with add_bias_kv / add_zero_attn is not supported")
        return cls(att.q_proj, att.k_proj, att.v_proj, att.out_proj, att.num_heads, att.head_dim,
                   att.dropout_module.p)

    def forward(self, query: torch.Tensor, key=None, value=None,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = False,
                attn_mask=None, **unused) -> Tuple[torch.Tensor, None]:
        if need_weights or attn_mask is not None:
            raise NotImplementedError("HeadSubsetAttention: self-attention only, no attention "
                                      "weights or attn_mask (as wav2vec2 / HuBERT encoders call it)")
        t, b, _ = query.shape
        if self.num_heads == 0:
            out = query.new_zeros(t, b, self.out_proj.out_features)
            bias = self.out_proj.bias
            return (out + bias if bias is not None else out), None

        def heads(x):  # (T, B, H*dh) -> (B, H, T, dh)
            return x.view(t, b, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

        mask = None
        if key_padding_mask is not None:  # True = padding in S3PRL; True = attend in SDPA
            mask = ~key_padding_mask.to(torch.bool)[:, None, None, :]
        out = torch.nn.functional.scaled_dot_product_attention(
            heads(self.q_proj(query)), heads(self.k_proj(query)), heads(self.v_proj(query)),
            attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.permute(2, 0, 1, 3).reshape(t, b, self.num_heads * self.head_dim)), None


def _per_channel_norm(block: torch.nn.Sequential) -> Tuple[Optional[torch.nn.Module], bool]:
    """(GroupNorm with one group per channel or None, whether another norm mixes channels)."""
    for m in block.modules():
        if isinstance(m, torch.nn.GroupNorm):
            if m.num_groups != m.num_channels:
                return None, True
            return m, False
        if isinstance(m, torch.nn.LayerNorm):
            return None, True
    return None, False


class TrainingMask:
    """Mixin: ``extract_features`` masks time steps while training (S3PRL's experts never ask for
    it; fine-tuning recipes do). ``extract_features`` calls ``self.forward`` directly, so no
    module hook sees it: the model gets this subclass of its own class instead."""

    def extract_features(self, source, padding_mask=None, mask=False, **kwargs):
        return super().extract_features(source, padding_mask, mask=bool(mask) or self.training, **kwargs)


_MASKED_CLASSES: dict = {}


def with_training_mask(model: torch.nn.Module) -> None:
    """Give ``model`` the ``TrainingMask`` subclass of its class (same state dict, same type for
    isinstance checks)."""
    cls = type(model)
    if issubclass(cls, TrainingMask):
        return
    if cls not in _MASKED_CLASSES:
        _MASKED_CLASSES[cls] = type(f"{cls.__name__}WithTrainingMask", (TrainingMask, cls), {})
    model.__class__ = _MASKED_CLASSES[cls]


class Wav2Vec2Adapter(FamilyAdapter):
    arch = "wav2vec2"
    s3prl_local = "wav2vec2_local"
    hub = {
        "wav2vec2": _CONVERTED + "wav2vec_small.pt",  # base, LibriSpeech 960 h
        "wav2vec2_base_960": _CONVERTED + "wav2vec_small.pt",
        "wav2vec2_large_960": _CONVERTED + "libri960_big.pt",
        "wav2vec2_large_ll60k": _CONVERTED + "wav2vec_vox_new.pt",
    }
    default_patterns = ("feature_extractor.conv_layers.*", "post_extract_proj") + TRANSFORMER_PATTERNS
    parts = (("cnn", "feature_extractor.conv_layers."), ("transformer", "encoder.layers."))
    used_prefixes = ("feature_extractor.", "post_extract_proj", "encoder.", "layer_norm.")
    arch_keys = ("conv_channels", "attention_heads", "ffn_dims")

    # -- building ----------------------------------------------------------------------------
    def config_classes(self) -> tuple:
        from s3prl.upstream.wav2vec2.wav2vec2_model import AudioPretrainingConfig, Wav2Vec2Config

        return Wav2Vec2Config, AudioPretrainingConfig

    def build(self, model_cfg, task_cfg) -> torch.nn.Module:
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Model

        return Wav2Vec2Model(model_cfg)

    def owns_checkpoint(self, ckpt: dict) -> bool:
        # S3PRL's converted checkpoints say nothing else about their family; HuBERT's carry the
        # pre-training label dictionary.
        return "model_cfg" in ckpt and "dictionaries_symbols" not in ckpt

    def owns_model(self, model: torch.nn.Module) -> bool:
        from s3prl.upstream.wav2vec2.wav2vec2_model import Wav2Vec2Model

        return isinstance(model, Wav2Vec2Model)

    # -- forward -----------------------------------------------------------------------------
    def normalizes_wav(self, expert: torch.nn.Module) -> bool:
        """Whether S3PRL's expert standardises each waveform (the task config's ``normalize``)."""
        return bool(expert.wav_normalize)

    def enable_training_mask(self, model: torch.nn.Module) -> None:
        with_training_mask(model)

    def hidden_states(self, model: torch.nn.Module, wav: torch.Tensor) -> list:
        """S3PRL's expert hooks the input of every Transformer layer and the encoder's output.
        One unpadded utterance needs no padding mask, and the encoder's padding to
        ``required_seq_len_multiple`` only adds masked frames that no real frame attends to, so
        both are left out (S3PRL computes them with Python arithmetic on sizes)."""
        if getattr(model, "crop_seq_to_multiple", 1) != 1:
            raise ValueError(f"{type(model).__name__}: crop_seq_to_multiple="
                             f"{model.crop_seq_to_multiple} is not supported by the export forward")
        x = self._features(model, wav)
        enc = model.encoder
        x = x + enc.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not enc.layer_norm_first:
            x = enc.layer_norm(x)
        x = x.transpose(0, 1)  # (T, B, C)
        hs, state = [], {}
        for layer in enc.layers:
            hs.append(x.transpose(0, 1))
            x = self._layer(layer, x, state)
        x = x.transpose(0, 1)
        hs.append(enc.layer_norm(x) if enc.layer_norm_first else x)
        return hs

    @staticmethod
    def _features(model: torch.nn.Module, wav: torch.Tensor) -> torch.Tensor:
        """(1, samples) -> (1, frames, encoder dim): conv extractor, layer norm, projection."""
        x = model.layer_norm(model.feature_extractor(wav).transpose(1, 2))
        return x if model.post_extract_proj is None else model.post_extract_proj(x)

    @staticmethod
    def _layer(layer: torch.nn.Module, x: torch.Tensor, state: dict) -> torch.Tensor:
        """One Transformer layer of ``hidden_states`` (``state``: what layers pass on, if any)."""
        return layer(x, self_attn_padding_mask=None, need_weights=False)[0]

    # -- units -------------------------------------------------------------------------------
    @staticmethod
    def _conv_blocks(model) -> list:
        return list(model.feature_extractor.conv_layers)

    def unit_groups(self, model: torch.nn.Module, kinds: Sequence[str] = KINDS
                    ) -> "OrderedDict[str, UnitGroup]":
        self.check_kinds(kinds)
        out: "OrderedDict[str, UnitGroup]" = OrderedDict()
        if "conv" in kinds:
            blocks = self._conv_blocks(model)
            for i in range(len(blocks) - 1):
                norm, mixing = _per_channel_norm(blocks[i])
                if mixing:
                    continue
                conv, nxt = blocks[i][0], blocks[i + 1][0]
                out[f"conv.{i}"] = UnitGroup(f"conv.{i}", "conv", conv.out_channels, 1, [conv], nxt,
                                             norm=norm)
        for l, layer in enumerate(model.encoder.layers):
            if "heads" in kinds:
                att = layer.self_attn
                out[f"layers.{l}.heads"] = UnitGroup(
                    f"layers.{l}.heads", "heads", att.num_heads, att.head_dim,
                    [att.q_proj, att.k_proj, att.v_proj], att.out_proj, owner=att,
                    resize_owner=lambda keep, layer=layer: self._resize_heads(layer, keep))
            if "ffn" in kinds:
                if not isinstance(layer.fc1, torch.nn.Linear):  # e.g. WavLM's GLU_Linear
                    raise ValueError(f"{type(layer.fc1).__name__} FFN: FFN units are not supported")
                out[f"layers.{l}.ffn"] = UnitGroup(
                    f"layers.{l}.ffn", "ffn", layer.fc1.out_features, 1, [layer.fc1], layer.fc2)
        return out

    @staticmethod
    def _resize_heads(layer: torch.nn.Module, keep: torch.Tensor) -> None:
        att = HeadSubsetAttention.replacing(layer.self_attn)
        att.num_heads = len(keep)
        layer.self_attn = att

    def group_width_key(self, group: UnitGroup) -> Tuple[str, int]:
        key = {"conv": "conv_channels", "heads": "attention_heads", "ffn": "ffn_dims"}[group.kind]
        return key, int(group.name.split(".")[1])

    def architecture(self, model: torch.nn.Module) -> dict:
        return {
            "conv_channels": [b[0].out_channels for b in self._conv_blocks(model)],
            "attention_heads": [l.self_attn.num_heads for l in model.encoder.layers],
            "ffn_dims": [l.fc1.out_features for l in model.encoder.layers],
        }
