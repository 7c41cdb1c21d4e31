"""Seconds of one training step of each compression method, measured in one run.

The AN4 comparison's compression seconds come from runs made in different sessions, and the same
computation has taken 20-30 % less time in one session than in another (README, "Compression
time vs quality"). This benchmark measures what a method's step costs against dense_cont's in
one process, steps interleaved so that machine load hits every method alike: each method's
model is built as stage 6 builds it (the recipe's base config plus the method's block,
``bin/compose_config.py``, target 0.65, random weights: timing does not depend on them), with
the task's optimizer (``PinchASRTask.build_optimizers``), and one training step = forward
(with the method's masks and its term), backward, gradient clip, optimizer step, on one fixed
batch of random audio as large as the recipe's batches (``batch_bins`` samples). Structured
methods fine-tune a smaller model after their search: ``--compact DIR`` (a finalized run's
``final/``) adds that model's step. Median over ``--steps`` timed rounds after ``--warmup``.

Run in the recipe directory (the config's upstream and token list are relative to it), e.g.
  cd egs2/an4/asr1 && PYTHONPATH=../../.. ../../../tools/venv/bin/python ../../../benchmarks/step_cost.py \\
      --compact nascp=exp/asr_nascp_0.65_s0/final
Writes benchmarks/results/step_cost.json: per method the step seconds and the ratio to dense_cont's,
and the steps of a 4-epoch budget (``max_epoch`` x steps per epoch) priced at them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from espnet_pinch.bin.compose_config import compose_files
from espnet_pinch.bin.epochs import split_epochs
from espnet_pinch.tasks.asr import PinchASRTask

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dense_cont", "spg", "ump", "hj_size", "hj_macs", "nascp")


def build(config: dict, tmp: Path, name: str, target: float, steps_per_epoch: int):
    """The model and optimizer a stage-6 run of ``config`` trains (random weights)."""
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["--config", str(path), "--output_dir", str(tmp / name),
            "--token_list", "data/token_list/char/tokens.txt", "--token_type", "bpe",
            "--bpemodel", "data/token_list/char/spm.model"]
    if config.get("pruner"):
        argv += ["--pruner_conf", f"target_sparsity={target}"]
    args = PinchASRTask.get_parser().parse_args(argv)
    torch.manual_seed(0)
    model = PinchASRTask.build_model(args)
    model.train()
    if model.pruner is not None:  # as the trainer binds it: the steps of the config's budget
        model.pruner.bind_budget(steps_per_epoch * int(config.get("max_epoch", 1)))
    return model, PinchASRTask.build_optimizers(args, model)[0], float(config.get("grad_clip") or 0)


def step(model, opt, clip: float, batch: dict) -> float:
    t0 = time.perf_counter()
    loss, _, _ = model(**batch)
    opt.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return time.perf_counter() - t0


def fixed_batch(batch_bins: int, utt_seconds: float, vocab: int) -> dict:
    n = int(16000 * utt_seconds)
    b = max(1, batch_bins // n)
    g = torch.Generator().manual_seed(1)
    return dict(speech=torch.randn(b, n, generator=g) * 3000, speech_lengths=torch.full((b,), n),
                text=torch.randint(2, vocab - 1, (b, 12), generator=g), text_lengths=torch.full((b,), 12))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="conf/train_compress.yaml")
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   help="dense_cont and/or method names (conf/pruner/<name>.yaml)")
    p.add_argument("--compact", nargs="*", default=[], metavar="METHOD=DIR",
                   help="a structured method's finalized model (its final/ dir) to time its fine-tuning step")
    p.add_argument("--target", type=float, default=0.65)
    p.add_argument("--utt_seconds", type=float, default=2.5, help="length of each utterance of the batch")
    p.add_argument("--steps_per_epoch", type=int, default=47, help="AN4 at batch_bins 800000")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/step_cost.json"))
    args = p.parse_args(argv)
    base = yaml.safe_load(Path(args.base).read_text())
    vocab = len(Path("data/token_list/char/tokens.txt").read_text().split())
    batch = fixed_batch(int(base["batch_bins"]), args.utt_seconds, vocab)
    runs, configs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.methods:
            configs[m] = base if m == "dense_cont" else compose_files(Path(args.base), Path(f"conf/pruner/{m}.yaml"))
            runs[m] = build(configs[m], Path(tmp), m, args.target, args.steps_per_epoch)
        for spec in args.compact:
            m, _, d = spec.partition("=")
            cfg = yaml.safe_load((Path(d) / "config.yaml").read_text())
            cfg = {**base, **{k: v for k, v in cfg.items() if k in ("frontend_conf", "encoder_conf")}}
            runs[f"{m} (compact)"] = build(cfg, Path(tmp), f"{m}_compact", args.target, args.steps_per_epoch)
        times = {k: [] for k in runs}
        for i in range(args.warmup + args.steps):
            for k, r in runs.items():
                t = step(*r, batch)
                if i >= args.warmup:
                    times[k].append(t)
            print(f"round {i + 1}/{args.warmup + args.steps}"
                  + (" (warm-up)" if i < args.warmup else ""), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med.get("dense_cont")
    out = {"batch": list(batch["speech"].shape), "threads": torch.get_num_threads(),
           "steps_timed": args.steps, "target": args.target, "methods": {}}
    for m in args.methods:
        search, ft = split_epochs(configs[m], [])
        entry = {"step_seconds": round(med[m], 4),
                 "ratio_to_dense_cont": None if ref is None else round(med[m] / ref, 3),
                 "search_epochs": search, "finetune_epochs": ft}
        compact = med.get(f"{m} (compact)")
        if compact is not None:
            entry["compact_step_seconds"] = round(compact, 4)
        if ft == 0 or compact is not None:  # the budget's steps priced at these step times
            entry["budget_step_seconds"] = round(
                args.steps_per_epoch * (search * med[m] + ft * (compact or 0.0)), 1)
        out["methods"][m] = entry
        print(m, json.dumps(entry), flush=True)
    if ref is not None:
        for e in out["methods"].values():
            if "budget_step_seconds" in e:
                e["budget_ratio_to_dense_cont"] = round(
                    e["budget_step_seconds"] / out["methods"]["dense_cont"]["budget_step_seconds"], 3)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
