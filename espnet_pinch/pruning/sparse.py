"""Sparse storage of fine-grained pruned weights: a bitmask plus the non-zero values.

Format ``bitmask-v1`` (a ``torch.save`` dict):
  {"format": "bitmask-v1",
   "sparse": {key: {"shape": [...], "bits": uint8 (packed non-zero mask, row-major),
                    "values": non-zero values in row-major order}},
   "dense": {key: tensor}}                 # every other entry of the state dict
Cost per sparse tensor: numel/8 bytes of mask + 4 bytes per non-zero (float32), so it beats the
dense 4 bytes per weight from about 3% sparsity on, and is 2.1x smaller at 50% (CSR with int64
indices would need 12 bytes per non-zero).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable

import numpy as np
import torch

from espnet_pinch.utils.atomic import atomic_file
from espnet_pinch.utils.safe_load import load_checkpoint

FORMAT = "bitmask-v1"


def to_sparse(state: Dict[str, torch.Tensor], keys: Iterable[str]) -> dict:
    keys = set(keys)
    missing = keys - set(state)
    if missing:
        raise KeyError(f"sparse export: keys not in the state dict: {sorted(missing)[:3]}")
    out = {"format": FORMAT, "sparse": {}, "dense": {}}
    for k, v in state.items():
        if k not in keys:
            out["dense"][k] = v
            continue
        flat = v.detach().reshape(-1)
        nz = flat != 0
        bits = np.packbits(nz.numpy().astype(np.uint8))
        out["sparse"][k] = {"shape": list(v.shape), "bits": torch.from_numpy(bits),
                            "values": flat[nz].clone()}
    return out


def from_sparse(obj: dict) -> Dict[str, torch.Tensor]:
    if obj.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} sparse state dict (format={obj.get('format')!r})")
    state = dict(obj["dense"])
    for k, e in obj["sparse"].items():
        n = int(np.prod(e["shape"]))
        nz = torch.from_numpy(np.unpackbits(e["bits"].numpy(), count=n).astype(bool))
        flat = torch.zeros(n, dtype=e["values"].dtype)
        flat[nz] = e["values"]
        state[k] = flat.reshape(e["shape"])
    return state


def save_sparse(state: Dict[str, torch.Tensor], keys: Iterable[str], path: str | Path) -> int:
    """Write atomically; returns bytes on disk."""
    with atomic_file(path) as tmp:
        torch.save(to_sparse(state, keys), tmp)
    return Path(path).stat().st_size


def load_sparse(path: str | Path) -> Dict[str, torch.Tensor]:
    """A dense state dict (zeros restored) from a ``save_sparse`` file."""
    return from_sparse(load_checkpoint(path))
