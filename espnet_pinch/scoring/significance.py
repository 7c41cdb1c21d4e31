"""Paired bootstrap test of a WER difference between two systems on the same utterances.

M. Bisani and H. Ney, "Bootstrap estimates for confidence intervals in ASR performance
evaluation", ICASSP 2004: utterances are resampled with replacement, and both systems are
scored on the same resample, so the test sees only how the two differ utterance by utterance.
Inputs are ``per_utt.json`` files written by ``score.py``: {utt: [word errors, reference words]}.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def paired_bootstrap(a: Mapping[str, Sequence[int]], b: Mapping[str, Sequence[int]],
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """Bootstrap of delta = WER(b) - WER(a), in percentage points (positive: b is worse).

    Returns {"delta_wer": observed delta, "p_value": two-sided p of "no difference",
    "ci95": [lo, hi] percentile interval of delta, "n_boot": n_boot}.
    """
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"the systems were scored on different utterances: {len(only_a)} only in A "
                         f"(e.g. {only_a[:3]}), {len(only_b)} only in B (e.g. {only_b[:3]})")
    utts = sorted(a)
    if not utts:
        raise ValueError("no utterances to compare")
    err_a, words = np.array([a[u] for u in utts], dtype=np.int64).reshape(-1, 2).T
    err_b, words_b = np.array([b[u] for u in utts], dtype=np.int64).reshape(-1, 2).T
    if not np.array_equal(words, words_b):
        raise ValueError("the systems have different reference word counts: not the same references")
    diff = err_b - err_a
    delta = 100.0 * diff.sum() / max(words.sum(), 1)
    idx = np.random.default_rng(seed).integers(0, len(utts), size=(n_boot, len(utts)))  # (n_boot, U)
    boot = 100.0 * diff[idx].sum(1) / np.maximum(words[idx].sum(1), 1)  # (n_boot,)
    p = min(1.0, 2.0 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"delta_wer": float(delta), "p_value": float(p), "ci95": [float(lo), float(hi)],
            "n_boot": n_boot}


def format_p(sig: Mapping | None) -> str:
    """A bootstrap p-value as text: "< 2/n_boot" when every resample's difference had the same
    sign (the two-sided p's smallest nonzero value is 2/n_boot: 0 is not measurable), "-" for
    none."""
    if not sig or sig.get("p_value") is None:
        return "-"
    if sig["p_value"] == 0:
        return f"< {2.0 / sig['n_boot']:.3g}"
    return f"{sig['p_value']:.3f}"


def bootstrap_wer_ci(a: Mapping[str, Sequence[int]], n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile interval of one system's WER (%) over resamples of its utterances."""
    if not a:
        raise ValueError("no utterances")
    err, words = np.array([a[u] for u in sorted(a)], dtype=np.int64).reshape(-1, 2).T
    idx = np.random.default_rng(seed).integers(0, len(err), size=(n_boot, len(err)))
    boot = 100.0 * err[idx].sum(1) / np.maximum(words[idx].sum(1), 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return [float(lo), float(hi)]
