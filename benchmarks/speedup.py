"""CPU speed of a physically compacted model vs the dense one and vs masks alone, in one run.

The wav2vec2-base architecture (random weights) is compacted to about half of its MACs with
HJ-Pruning's unit structure (conv channels, attention heads, FFN units; the masks are set
directly, untrained: every group keeps the same share of its units, found by bisection on the
MACs model). Three models encode the same audio (eval, no grad):
  dense        the original model
  masked_only  the original model with the same units zeroed by ``torch.nn.utils.prune``
               (consumer columns and producer rows): what masks alone give
  compact      the model after ``FamilyAdapter.compact_`` (physically smaller tensors)
Timings are interleaved (dense, masked, compact, dense, ...) so machine load affects all alike;
the median of ``--repeats`` runs is kept. speedup_ideal = dense MACs / compact MACs (counted by
``profiling.macs``); speedup_measured = dense_seconds / compact_seconds.

Usage: tools/venv/bin/python benchmarks/speedup.py [--size wav2vec2_base] [--seconds 10]
Writes benchmarks/results/speedup.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def frontend(size: str):
    """The random-weight upstream (seeded: every call gives the same weights). S3PRL's upstream
    collects hidden states with hooks that a deep copy does not carry over, so copies are
    rebuilt instead."""
    from espnet_pinch.frontend.s3prl import PinchS3prlFrontend
    from espnet_pinch.upstream.build import load_size_config

    torch.manual_seed(0)
    return PinchS3prlFrontend("wav2vec2_local", upstream_config=load_size_config(
        ROOT / f"conf/upstream/{size}.yaml")).eval()


def build(size: str, target: float):
    from espnet_pinch.pruning.hj import HJPruner

    fe = frontend(size)
    pruner = HJPruner(fe.prunable_layers(), fe.ssl_model, target_sparsity=target,
                      target_on="macs", finalize_tolerance=0.005)
    # No training: finalize scales every group's kept count by one common factor onto the MACs
    # target (``HJPruner.snap_widths``) and bakes the masks in (pruned columns: exact zeros).
    return fe, pruner.finalize()


def masked_model(size: str, summary):
    """The finalized dense-size model (kept units' gate values baked in) with the pruned units
    zeroed through torch.nn.utils.prune: the compact model's function at full size."""
    from torch.nn.utils import prune

    masked, again = build(size, summary.target_sparsity)
    assert again.keep == summary.keep
    for name, g in masked.adapter.unit_groups(masked.ssl_model).items():
        keep = torch.zeros(g.num_units)
        keep[summary.keep[name]] = 1.0
        rows = keep.repeat_interleave(g.unit_size)
        for p in g.producers:
            prune.custom_from_mask(p, "weight", rows.view(-1, *[1] * (p.weight.dim() - 1)).expand_as(p.weight))
        col_shape = [1, -1] + [1] * (g.consumer.weight.dim() - 2)
        prune.custom_from_mask(g.consumer, "weight", rows.view(col_shape).expand_as(g.consumer.weight))
    return masked


def time_models(models: dict, wav: torch.Tensor, repeats: int, warmup: int) -> dict:
    lens = torch.tensor([wav.shape[1]])
    times = {k: [] for k in models}
    with torch.no_grad():
        for i in range(warmup + repeats):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(wav, lens)
                if i >= warmup:
                    times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(size: str, seconds: float, target: float, repeats: int, warmup: int) -> dict:
    from espnet_pinch.profiling.macs import ssl_macs_per_second

    dense = frontend(size)
    compact, summary = build(size, target)
    masked = masked_model(size, summary)
    arch = compact.compact_(summary.keep)["pruned_arch"]
    dense_macs = ssl_macs_per_second(dense.ssl_model, seconds)["macs_dense_exec_per_second"]
    compact_macs = ssl_macs_per_second(compact.ssl_model, seconds)["macs_dense_exec_per_second"]
    wav = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # masked and compact compute the same function (up to rounding)
        ref = compact(wav, torch.tensor([wav.shape[1]]))[0]
        diff = float((masked(wav, torch.tensor([wav.shape[1]]))[0] - ref).abs().max())
    t = time_models({"dense": dense, "masked_only": masked, "compact": compact}, wav, repeats, warmup)
    return {
        "size": size, "audio_seconds": seconds, "threads": torch.get_num_threads(),
        "repeats": repeats, "target_macs_reduction": target,
        "achieved_macs_reduction": round(1 - compact_macs / dense_macs, 4),
        "dense_seconds": round(t["dense"], 4), "masked_only_seconds": round(t["masked_only"], 4),
        "compact_seconds": round(t["compact"], 4),
        "speedup_measured": round(t["dense"] / t["compact"], 3),
        "speedup_ideal": round(dense_macs / compact_macs, 3),
        "masked_only_speedup": round(t["dense"] / t["masked_only"], 3),
        "ratio_measured_to_ideal": round((t["dense"] / t["compact"]) / (dense_macs / compact_macs), 3),
        "masked_vs_compact_max_abs_diff": diff,
        "dense_macs_per_second": dense_macs, "compact_macs_per_second": compact_macs,
        "arch": arch,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="wav2vec2_base", help="conf/upstream/<size>.yaml")
    p.add_argument("--seconds", type=float, default=10.0, help="audio length")
    p.add_argument("--target", type=float, default=0.5, help="fraction of the MACs to remove")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/speedup.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = measure(args.size, args.seconds, args.target, args.repeats, args.warmup)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps({k: v for k, v in r.items() if k != "arch"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
