"""Split a pruning run's epochs into search and fine-tuning for a structured method.

A structured method (``pruner_conf.finetune_epochs`` > 0, e.g. NAS-CP) searches, is compacted, and
then fine-tunes the compact model; the two ESPnet runs together take the config's ``max_epoch``
(or a ``--max_epoch N`` among the extra trainer options; ``--pruner_conf finetune_epochs=N``
there overrides the config's split too), so every method trains equally long. Both runs then share one lr schedule over the whole budget,
so a structured method's config must use ``scheduler: budgetlr`` (``train/schedule.py``).
With ``--budget B`` (the recipe's budget sweep) the total is B epochs and a structured method's
fine-tuning keeps the config's share of it, rounded (AN4: 1 of 4; B = 1 or 2: no fine-tuning, the
compact model is used as compacted).
Prints "<search epochs> <fine-tuning epochs> <total epochs>"; a method without fine-tuning, and a
config without a method (dense_cont, whatever finetune_epochs the extra options carry), gets
"N 0 N".

Usage: python -m espnet_pinch.bin.epochs --config exp/asr_nascp_0.65_s0/train_config.yaml [-- --max_epoch 4 ...]
"""
from __future__ import annotations

import argparse
import sys

import yaml


def split_epochs(config: dict, extra: list[str], budget: int | None = None) -> tuple[int, int]:
    total = int(config.get("max_epoch", 1))
    for i, a in enumerate(extra):  # the trainer takes the last --max_epoch given
        if a == "--max_epoch" and i + 1 < len(extra):
            total = int(extra[i + 1])
        elif a.startswith("--max_epoch="):
            total = int(a.split("=", 1)[1])
    ft = int((config.get("pruner_conf") or {}).get("finetune_epochs", 0) or 0)
    for i, a in enumerate(extra[:-1]):
        if a == "--pruner_conf" and extra[i + 1].startswith("finetune_epochs="):
            ft = int(extra[i + 1].split("=", 1)[1])
    if not config.get("pruner"):  # no method (dense_cont): the whole budget in one run
        ft = 0
    if budget is not None:
        if budget < 1:
            raise ValueError(f"--budget must be >= 1 epoch, got {budget}")
        ft, total = int(round(budget * ft / total)), budget
    if ft and total - ft < 1:
        raise ValueError(f"max_epoch {total} leaves no search epoch before {ft} fine-tuning epochs")
    if ft and config.get("scheduler") != "budgetlr":
        raise ValueError(f"scheduler: {config.get('scheduler')} cannot continue across the compact "
                         "model's fine-tuning run; structured methods need scheduler: budgetlr")
    return total - ft, ft


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--budget", type=int, default=None, help="total epochs (the budget sweep)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="trainer options after --")
    args = p.parse_args(argv)
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    extra = [a for a in args.extra if a != "--"]
    try:
        search, ft = split_epochs(cfg, " ".join(extra).split(), args.budget)
    except ValueError as e:
        print(f"{args.config}: {e}", file=sys.stderr)
        return 1
    print(search, ft, search + ft)
    return 0


if __name__ == "__main__":
    sys.exit(main())
