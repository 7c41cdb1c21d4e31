"""Diagnostic of a structured method that holds its architecture (NAS-CP with ``max_switches``,
HJ with ``move_band``): at the end of a search, how far the held architecture (what validation
and finalize use) is from the one the method's own parameters choose unheld (NAS-CP: the
argmax candidate per group; HJ: each group's round(E[count]); ``unheld_widths`` of each). For each run dir, builds the model from
``config.yaml`` and the search's last epoch checkpoint (``<N>epoch.pth``) and prints the groups
where the two differ and the sparsity each has, and the sparsity of the widths expected under the
method's distribution (``expected_widths``: NAS-CP's softmax, HJ's gates; what the term holds at
the target without ``hard_gap``); for HJ ``achieved`` is what the target constrains: size or MACs
reduction.
Run in egs2/an4/asr1 (the configs' paths are relative to it), e.g.
PYTHONPATH=../../.. ../../../tools/venv/bin/python local/held_vs_free.py exp/asr_nascp_0.65_b*_s* > held_vs_free.txt
"""
import sys
from pathlib import Path

import torch

from espnet_pinch.pruning.structured import units_apart
from espnet_pinch.tasks.asr import PinchASRTask


def last_epoch(run: Path) -> Path:
    eps = sorted(run.glob("[0-9]*epoch.pth"), key=lambda p: int(p.name.split("epoch")[0]))
    if not eps:
        raise SystemExit(f"{run}: no <N>epoch.pth (the search's checkpoints)")
    return eps[-1]


def constrained(p, widths) -> str:
    if getattr(p, "target_on", "size") == "size":  # the sparsity is what is constrained
        return ""
    return " (" + ", ".join(f"{k} {v:.3f}" for k, v in p.achieved_values(widths).items()) + ")"


@torch.no_grad()
def main(runs: list[str]) -> None:
    for run in map(Path, runs):
        ckpt = last_epoch(run)
        net, _ = PinchASRTask.build_model_from_file(run / "config.yaml", ckpt, "cpu")
        p = net.pruner
        if not p.holds:
            raise SystemExit(f"{run}: its method holds no architecture (NAS-CP max_switches, HJ move_band)")
        held = p.chosen_widths()
        free, expected = p.unheld_widths(), p.expected_widths()
        off = [n for n in held if held[n] != free[n]]
        line = (f"{run.name} ({ckpt.name}): held != free in {len(off)} of {len(held)} groups; sparsity "
                f"held {float(p.sparsity_of(held)):.3f}{constrained(p, held)}, "
                f"free {float(p.sparsity_of(free)):.3f}{constrained(p, free)}, "
                f"expected {float(p.sparsity_of(expected)):.3f}")
        units = units_apart(held, free)
        print(f"{line}; units differing {units:.1%} of the free ones (target {p.target_sparsity})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
