"""WER / CER with jiwer, plus a per-utterance alignment file.

Writes ``<out>/score.json`` ({wer, cer, num_utts, num_words, num_chars, sub, del, ins}, rates in
percent), ``<out>/per_utt.json`` ({utt: [word errors, reference words]}, for the paired
significance test in ``significance.py``) and ``<out>/alignment.txt`` (REF / HYP / OPS per
utterance, errors first).

Usage: python -m espnet_pinch.scoring.score --ref dump/test/text --hyp exp/x/decode_test/raw/1best_recog/text --out exp/x/decode_test
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import jiwer

from espnet_pinch.data.kaldi_dir import read_scp
from espnet_pinch.utils.atomic import write_json


def _align_rows(chunks, ref: list[str], hyp: list[str]) -> tuple[str, str, str]:
    r_out, h_out, ops = [], [], []
    for c in chunks:
        if c.type == "equal" or c.type == "substitute":
            for r, h in zip(ref[c.ref_start_idx:c.ref_end_idx], hyp[c.hyp_start_idx:c.hyp_end_idx]):
                w = max(len(r), len(h))
                r_out.append(r.ljust(w)); h_out.append(h.ljust(w))
                ops.append(("C" if c.type == "equal" else "S").ljust(w))
        elif c.type == "delete":
            for r in ref[c.ref_start_idx:c.ref_end_idx]:
                r_out.append(r); h_out.append("*" * len(r)); ops.append("D".ljust(len(r)))
        elif c.type == "insert":
            for h in hyp[c.hyp_start_idx:c.hyp_end_idx]:
                r_out.append("*" * len(h)); h_out.append(h); ops.append("I".ljust(len(h)))
    return " ".join(r_out), " ".join(h_out), " ".join(ops)


def score(ref: dict[str, str], hyp: dict[str, str]) -> tuple[dict, list[dict]]:
    """Score hypotheses against references (both {utt: text}); every reference must be decoded.

    Returns (summary, per-utterance rows). Rates are percentages.
    """
    missing = [u for u in ref if u not in hyp]
    if missing:
        raise ValueError(f"{len(missing)} reference utterances have no hypothesis, e.g. {missing[:3]}")
    utts = list(ref)
    refs = [ref[u].strip() for u in utts]
    hyps = [hyp[u].strip() for u in utts]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    rows = []
    for i, u in enumerate(utts):
        r, h = refs[i].split(), hyps[i].split()
        ra, ha, ops = _align_rows(words.alignments[i], r, h)
        n_err = sum(op.strip() in "SDI" for op in ops.split())
        rows.append({"utt": u, "ref": ra, "hyp": ha, "ops": ops, "errors": n_err, "words": len(r)})
    n_words = sum(len(r.split()) for r in refs)
    summary = {
        "wer": 100.0 * words.wer, "cer": 100.0 * chars.cer, "num_utts": len(utts),
        "num_words": n_words, "num_chars": sum(len(r) for r in refs),
        "sub": words.substitutions, "del": words.deletions, "ins": words.insertions,
    }
    return summary, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference Kaldi text")
    p.add_argument("--hyp", required=True, help="hypothesis Kaldi text (ESPnet's 1best_recog/text)")
    p.add_argument("--out", required=True, help="dir for score.json, per_utt.json and alignment.txt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ref, hyp = read_scp(args.ref), read_scp(args.hyp)
    try:
        summary, rows = score(ref, hyp)
    except ValueError as e:
        logging.error("%s: %s", args.hyp, e)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "alignment.txt", "w") as f:
        for r in sorted(rows, key=lambda r: (-r["errors"], r["utt"])):
            f.write(f"{r['utt']}  errors={r['errors']}/{r['words']}\n")
            f.write(f"  REF: {r['ref']}\n  HYP: {r['hyp']}\n  OPS: {r['ops']}\n")
    write_json(out / "per_utt.json", {r["utt"]: [r["errors"], r["words"]] for r in rows})
    write_json(out / "score.json", summary)
    logging.info("%s: WER %.2f%% CER %.2f%% over %d utterances", args.hyp, summary["wer"],
                 summary["cer"], summary["num_utts"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
