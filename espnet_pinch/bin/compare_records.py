"""Compare two systems' run records: B against A, word errors pooled over their seeds.

Stage 9 judges every run against dense_cont. A variant of a method (a trial config, a trainer
option run in a side exp dir) is also to be judged against the method it varies: is the change's
effect measurable? Each side is a list of record files (``<exp_dir>/records/<tag>.json``, written
by stage 9), one per seed, the same seeds on both sides. For each test set this prints each side's
WER per seed with its mean and std, and stage 9's paired bootstrap (``N_BOOT`` resamples of the
utterances, ``scoring.significance.paired_bootstrap``) of B - A on the per-utterance errors summed
over the seeds (``scoring.results.pooled``, as stage 9 pools seeds); ``--json`` writes the same.

Usage: python -m espnet_pinch.bin.compare_records \
           --a exp/records/nascp_noband_0.65_b1_s0.json exp/records/nascp_noband_0.65_b1_s1.json \
           --b exp/records/nascp_0.65_b1_s0.json exp/records/nascp_0.65_b1_s1.json [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from espnet_pinch.scoring.results import N_BOOT, pooled
from espnet_pinch.scoring.significance import format_p, paired_bootstrap
from espnet_pinch.utils.atomic import write_json


def read_record(path: str | Path) -> dict:
    rec = json.loads(Path(path).read_text())
    if not isinstance(rec.get("row"), dict) or not isinstance(rec.get("per_utt"), dict):
        raise ValueError(f"{path}: not a run record (needs 'row' and 'per_utt'; stage 9 writes them)")
    return rec


def _side(records: list[dict], test_set: str) -> dict:
    wer = [r["row"]["wer"][test_set] for r in records]
    return {"tags": [r["row"]["tag"] for r in records], "wer": wer, "mean": statistics.mean(wer),
            "std": statistics.stdev(wer) if len(wer) > 1 else None}


def compare(a: list[dict], b: list[dict], test_sets: list[str] | None = None) -> dict:
    """B - A per test set: each side's per-seed WER, mean, std, and the pooled paired bootstrap."""
    if not a or not b:
        raise ValueError("each side needs at least one record")
    seeds = [sorted(r["row"].get("seed", 0) for r in side) for side in (a, b)]
    if seeds[0] != seeds[1]:
        raise ValueError(f"the sides ran different seeds: A {seeds[0]}, B {seeds[1]}")
    common = set.intersection(*(set(r["per_utt"]) for r in a + b))
    sets = test_sets or sorted(common)
    missing = [s for s in sets if s not in common]
    if missing or not sets:
        raise ValueError(f"test set(s) {missing or 'any'} not scored in every record "
                         f"(scored in all: {sorted(common)})")
    out = {"seeds": seeds[0], "sets": {}}
    for s in sets:
        boot = paired_bootstrap(pooled([r["per_utt"][s] for r in a]),
                                pooled([r["per_utt"][s] for r in b]), n_boot=N_BOOT)
        out["sets"][s] = {"a": _side(a, s), "b": _side(b, s), **boot}
    return out


def _fmt_side(side: dict) -> str:
    std = "" if side["std"] is None else f" +- {side['std']:.2f}"
    return f"{side['mean']:.2f}{std} ({', '.join(f'{w:.2f}' for w in side['wer'])})"


def report(result: dict) -> str:
    lines = []
    for s, r in result["sets"].items():
        lines.append(f"{s}: A {' '.join(r['a']['tags'])}: {_fmt_side(r['a'])}")
        lines.append(f"{s}: B {' '.join(r['b']['tags'])}: {_fmt_side(r['b'])}")
        lines.append(f"{s}: B - A {r['delta_wer']:+.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] "
                     f"p {format_p(r)} (paired bootstrap over utterances, errors pooled over "
                     f"seeds {' '.join(map(str, result['seeds']))}, {r['n_boot']} resamples)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", nargs="+", required=True, help="A's records, one per seed")
    p.add_argument("--b", nargs="+", required=True, help="B's records, the same seeds")
    p.add_argument("--test_sets", nargs="*", default=None, help="default: every set all records scored")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    try:
        result = compare([read_record(f) for f in args.a], [read_record(f) for f in args.b],
                         args.test_sets)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
        print(f"compare_records: {e}", file=sys.stderr)
        return 1
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
