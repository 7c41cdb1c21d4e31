"""Multiply-accumulate (MAC) counts of a real forward pass, for dense, sparse and compacted models.

Forward hooks follow the pass that actually runs, so physically smaller (compacted) layers
(fewer heads, narrower FFNs, fewer conv channels, per layer) are counted from their own shapes.
One MAC per weight per output position:
  - ``Conv1d`` (any ``ConvNd``): output positions x weights = T_out * k * C_in/groups * C_out;
  - ``Linear``: leading positions x weights = T * d_in * d_out;
  - an attention module with ``q_proj``/``k_proj``/``v_proj``/``out_proj``, ``num_heads`` and
    ``head_dim`` (S3PRL's wav2vec2/HuBERT ``MultiheadAttention``, a compacted layer's
    ``HeadSubsetAttention``) is hooked itself, because S3PRL's fused path
    (``F.multi_head_attention_forward``) never calls the projection Linears: q, k, v, out
    projections (T * weights each) plus the two attention matmuls, QK^T and AV:
    2 * T_q * T_k * H * d_head per batch element. Linears inside it are excluded from the Linear
    count (no double count). With a gated relative position bias (WavLM), the gate Linear runs on
    each head's d_head input slice at every query position: T * H * its weights.
Weights are counted as non-zero entries (``count_nonzero=True``: fine-grained pruned models
store exact zeros, and parametrized masks show through ``module.weight``) for ``macs``, and all
entries for ``macs_dense_exec`` (what a dense kernel executes); both are always reported.
Not counted: bias adds, norms, activations, softmax, scaling, masking, resampling. Attention
modules of other implementations (e.g. ESPnet's) get only their Linear projections counted.

Categories: conv (CNN feature extractor), pos_conv (positional conv), attention_proj,
attention_scores, ffn (fc1/fc2), other_linear (post_extract_proj, ESPnet encoder, CTC head, ...).

This module counts modules it is given and imports nothing of espnet_pinch (pruners use it to
count MACs during training); ``espnet_pinch/bin/macs.py`` builds a model from an experiment's
files and counts it (stage 6's ``macs.json``).
"""
from __future__ import annotations

import math
from typing import Callable, Dict

import torch

CATEGORIES = ("conv", "pos_conv", "attention_proj", "attention_scores", "ffn", "other_linear")
FS = 16000


def _weights(layer: torch.nn.Module) -> tuple:
    """(non-zero, all) entries of ``layer.weight`` (masked weight if parametrized)."""
    w = layer.weight
    return int(torch.count_nonzero(w)), w.numel()


_ATTENTION_ATTRS = ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads", "head_dim")


def head_gate(module: torch.nn.Module):
    """The Linear a gated relative position bias applies to each head's input (WavLM's
    ``grep_linear`` with ``gru_rel_pos``), or None."""
    return getattr(module, "grep_linear", None) if getattr(module, "gru_rel_pos", False) else None


def _is_mha(module: torch.nn.Module) -> bool:
    return all(hasattr(module, a) for a in _ATTENTION_ATTRS)


def trace_positions(module: torch.nn.Module, forward_fn: Callable[[], object]) -> Dict[str, tuple]:
    """The shapes MACs are linear in, from one run of ``forward_fn()``: per layer name,
    ``("layer", positions)`` for a Conv/Linear outside attention modules (output positions, batch
    included) and ``("attention", t_q, t_k, batch)`` for an attention module (each module runs
    once per forward in wav2vec2/HuBERT). ``count_macs`` prices these shapes with the layers'
    weights; structured pruners build a differentiable MACs model from them."""
    out: Dict[str, tuple] = {}
    handles, inside_mha = [], set()

    def layer_hook(name, channel_dim):
        def hook(mod, inputs, o):
            shape = list(o.shape)
            shape.pop(channel_dim)
            out[name] = ("layer", math.prod(shape))
        return hook

    def mha_hook(name):
        def hook(mod, args, kwargs, o):
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs.get("key")
            t_k = query.shape[0] if key is None or getattr(mod, "self_attention", False) else key.shape[0]
            out[name] = ("attention", query.shape[0], t_k, query.shape[1])
        return hook

    for name, mod in module.named_modules():
        if _is_mha(mod):
            inside_mha.update(id(m) for m in mod.modules())
            handles.append(mod.register_forward_hook(mha_hook(name), with_kwargs=True))
    for name, mod in module.named_modules():
        if id(mod) in inside_mha:
            continue
        if isinstance(mod, torch.nn.modules.conv._ConvNd):
            handles.append(mod.register_forward_hook(layer_hook(name, 1)))
        elif isinstance(mod, torch.nn.Linear):
            handles.append(mod.register_forward_hook(layer_hook(name, -1)))
    try:
        with torch.no_grad():
            forward_fn()
    finally:
        for h in handles:
            h.remove()
    return out


def count_macs(
    module: torch.nn.Module, forward_fn: Callable[[], object], count_nonzero: bool = True
) -> Dict[str, object]:
    """MACs of ``forward_fn()`` (which runs ``module``), summed over the batch.

    Returns {"macs": int (non-zero weights, or all if ``count_nonzero=False``),
    "macs_dense_exec": int (all weights), "breakdown": {category: int} for ``macs``,
    "breakdown_dense_exec": {category: int}}.
    """
    nnz = dict.fromkeys(CATEGORIES, 0)
    dense = dict.fromkeys(CATEGORIES, 0)
    modules = dict(module.named_modules())

    def add(cat: str, positions: int, layer: torch.nn.Module) -> None:
        n, d = _weights(layer)
        nnz[cat] += positions * (n if count_nonzero else d)
        dense[cat] += positions * d

    for name, shape in trace_positions(module, forward_fn).items():
        mod = modules[name]
        if shape[0] == "attention":
            _, t_q, t_k, bsz = shape
            for proj, t in ((mod.q_proj, t_q), (mod.k_proj, t_k), (mod.v_proj, t_k),
                            (mod.out_proj, t_q)):
                add("attention_proj", bsz * t, proj)
            gate = head_gate(mod)
            if gate is not None:  # applied to each head's input slice at every query position
                add("attention_proj", bsz * t_q * mod.num_heads, gate)
            scores = 2 * bsz * t_q * t_k * mod.num_heads * mod.head_dim
            nnz["attention_scores"] += scores
            dense["attention_scores"] += scores
        elif isinstance(mod, torch.nn.modules.conv._ConvNd):
            add("pos_conv" if "pos_conv" in name else "conv", shape[1], mod)
        else:
            add("ffn" if name.rsplit(".", 1)[-1] in ("fc1", "fc2") else "other_linear", shape[1], mod)
    return {"macs": sum(nnz.values()), "macs_dense_exec": sum(dense.values()),
            "breakdown": nnz, "breakdown_dense_exec": dense}


def _per_second(counts: dict, seconds: float) -> dict:
    return {
        "macs_per_second": counts["macs"] / seconds,
        "macs_dense_exec_per_second": counts["macs_dense_exec"] / seconds,
        "seconds": seconds,
        "breakdown": {k: v / seconds for k, v in counts["breakdown"].items()},
        "breakdown_dense_exec": {k: v / seconds for k, v in counts["breakdown_dense_exec"].items()},
    }


def _eval_count(model: torch.nn.Module, forward_fn: Callable[[], object], seconds: float) -> dict:
    was_training = model.training
    model.eval()
    try:
        return _per_second(count_macs(model, forward_fn), seconds)
    finally:
        model.train(was_training)


def macs_per_second(espnet_model: torch.nn.Module, seconds: float = 1.0, seed: int = 0) -> dict:
    """MACs per second of audio for an ESPnet ASR model: ``encode`` + the CTC head ``ctc_lo``.

    Batch 1 of ``seconds`` of random 16 kHz audio, eval mode, no grad. Attention is quadratic in
    length, so the per-second figure is defined at this reference duration (default 1 s).
    Returns {"macs_per_second", "macs_dense_exec_per_second", "seconds", "breakdown",
    "breakdown_dense_exec"} (breakdowns per second, by category).
    """
    n = int(round(seconds * FS))
    speech = torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    lengths = torch.tensor([n])
    pruner = getattr(espnet_model, "pruner", None)
    if pruner is not None and hasattr(pruner, "before_forward"):
        pruner.before_forward()  # masks as model.forward would use them

    def run():
        enc, _ = espnet_model.encode(speech, lengths)
        espnet_model.ctc.ctc_lo(enc)

    return _eval_count(espnet_model, run, seconds)


def ssl_macs_per_second(ssl_model: torch.nn.Module, seconds: float = 1.0, seed: int = 0) -> dict:
    """As ``macs_per_second`` for a bare SSL model (``frontend.ssl_model``) with an
    ``extract_features`` method: batch 1, ``seconds`` of random 16 kHz audio, no padding, no mask."""
    n = int(round(seconds * FS))
    wav = torch.randn(1, n, generator=torch.Generator().manual_seed(seed))
    return _eval_count(
        ssl_model, lambda: ssl_model.extract_features(wav, padding_mask=None, mask=False), seconds
    )
