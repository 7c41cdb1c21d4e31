"""Time of one training step with SPG gates vs dense, measured in one run.

For each upstream size (random weights): the ESPnet-style step = S3PRL frontend forward on a
batch of audio, CTC loss on a linear head, backward, AdamW step; SPG adds its gates on the
default layer set and its sparsity term. Median of timed steps after warm-up steps; dense and
SPG steps are interleaved so that machine load affects both alike.

Usage: tools/venv/bin/python benchmarks/gate_overhead.py [--sizes small_cpu wav2vec2_base]
Writes benchmarks/results/gate_overhead.json: {size: {dense_step_seconds, spg_step_seconds, ratio, ...}}
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# (batch, seconds of audio per utterance) per size: what one step sees on these 2 cores
BATCH = {"small_cpu": (8, 4.0), "wav2vec2_base": (1, 10.0), "tiny_test": (2, 1.0)}


def build(size: str, spg: bool, seed: int = 0):
    from espnet_pinch.frontend.s3prl import PinchS3prlFrontend
    from espnet_pinch.upstream.build import load_size_config
    from espnet_pinch.pruning.spg import SPGPruner

    torch.manual_seed(seed)
    fe = PinchS3prlFrontend("wav2vec2_local",
                            upstream_config=load_size_config(ROOT / f"conf/upstream/{size}.yaml"))
    head = torch.nn.Linear(fe.output_size(), 32)
    pruner = (SPGPruner(fe.prunable_layers(), target_sparsity=0.5, warmup_steps=0,
                         layers=fe.adapter.default_patterns) if spg else None)
    params = list(fe.parameters()) + list(head.parameters()) + (list(pruner.parameters()) if spg else [])
    return fe, head, pruner, torch.optim.AdamW(params, lr=1e-4)


def step(fe, head, pruner, opt, wav, lens, targets, tlens) -> float:
    t0 = time.perf_counter()
    if pruner is not None:
        pruner.before_forward()
    feats, flens = fe(wav, lens)
    logp = head(feats).log_softmax(-1).transpose(0, 1)
    loss = torch.nn.functional.ctc_loss(logp, targets, flens, tlens, zero_infinity=True)
    if pruner is not None:
        loss = loss + pruner.loss()[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def measure(size: str, warmup: int, steps: int) -> dict:
    b, secs = BATCH[size]
    n = int(16000 * secs)
    torch.manual_seed(1)
    wav, lens = torch.randn(b, n), torch.full((b,), n)
    targets, tlens = torch.randint(1, 32, (b, 20)), torch.full((b,), 20)
    runs = {"dense": build(size, False), "spg": build(size, True)}
    for r in runs.values():
        r[0].train()
    times = {"dense": [], "spg": []}
    for i in range(warmup + steps):
        for name, r in runs.items():
            t = step(*r, wav, lens, targets, tlens)
            if i >= warmup:
                times[name].append(t)
    d, s = statistics.median(times["dense"]), statistics.median(times["spg"])
    return {"dense_step_seconds": round(d, 4), "spg_step_seconds": round(s, 4),
            "ratio": round(s / d, 3), "batch": b, "seconds_per_utterance": secs,
            "steps_timed": steps, "threads": torch.get_num_threads(),
            "gated_params": sum(m.weight.numel() for m in runs["spg"][2].layers.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["small_cpu", "wav2vec2_base"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/gate_overhead.json"))
    args = p.parse_args()
    results = {}
    for size in args.sizes:
        results[size] = measure(size, args.warmup, args.steps)
        print(size, json.dumps(results[size]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
