import time

import numpy as np
import pytest

from espnet_pinch.scoring.significance import format_p, paired_bootstrap


def _system(n: int = 130, seed: int = 0) -> dict:
    """{utt: [errors, words]}: the same references (words) for every seed, errors vary."""
    words = np.random.default_rng(0).integers(1, 8, n)
    errors = np.random.default_rng(seed).binomial(words, 0.2)
    return {f"u{i}": [int(e), int(w)] for i, (e, w) in enumerate(zip(errors, words))}


def test_identical_systems_do_not_differ():
    a = _system()
    r = paired_bootstrap(a, dict(a))
    assert r["delta_wer"] == 0 and r["p_value"] == 1.0 and r["ci95"] == [0.0, 0.0]
    assert r["n_boot"] == 1000


def test_much_worse_system_is_significant():
    a = _system()
    b = {u: [e + 2 if i % 10 else e, w] for i, (u, (e, w)) in enumerate(a.items())}  # 90% worse
    r = paired_bootstrap(a, b)
    words = sum(w for _, w in a.values())
    assert r["delta_wer"] == pytest.approx(100 * 2 * 117 / words)  # 117 of 130 utts get +2
    assert r["p_value"] < 0.01
    assert 0 < r["ci95"][0] < r["delta_wer"] < r["ci95"][1]
    # and the other way round: B better than A is significant too (two-sided)
    r = paired_bootstrap(b, a)
    assert r["p_value"] < 0.01 and r["ci95"][1] < 0


def test_one_differing_utterance_is_not_significant():
    a = _system()
    b = dict(a)
    e, w = a["u3"]
    b["u3"] = [e + 1, w]
    r = paired_bootstrap(a, b)
    assert r["delta_wer"] > 0
    # the resamples that miss u3 (about (1 - 1/130)^130 = 37% of them) have no difference at all
    assert r["p_value"] > 0.5
    assert r["ci95"][0] == 0.0


def test_reproducible_with_the_seed():
    a, b = _system(seed=0), _system(seed=1)
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    assert paired_bootstrap(a, b, seed=1)["ci95"] != paired_bootstrap(a, b, seed=2)["ci95"]


def test_different_utterance_sets_are_an_error():
    a = _system()
    b = dict(a)
    b["extra"] = b.pop("u0")
    with pytest.raises(ValueError, match="different utterances.*1 only in A.*u0.*1 only in B.*extra"):
        paired_bootstrap(a, b)


def test_different_references_are_an_error():
    a = _system()
    b = dict(a)
    b["u0"] = [a["u0"][0], a["u0"][1] + 1]
    with pytest.raises(ValueError, match="reference word counts"):
        paired_bootstrap(a, b)


def test_vectorised_fast_enough():
    a, b = _system(seed=0), _system(seed=1)
    t = time.perf_counter()
    paired_bootstrap(a, b)
    assert time.perf_counter() - t < 0.5  # milliseconds in practice; generous for loaded CI


def test_a_p_value_no_resample_reached_is_shown_as_below_one_resample():
    a = _system()
    worse = {u: [w, w] for u, (e, w) in a.items()}  # every word wrong
    r = paired_bootstrap(a, worse)
    assert r["p_value"] == 0.0 and format_p(r) == "< 0.002"
    assert format_p({**r, "n_boot": 200}) == "< 0.01"
    assert format_p({"p_value": 0.0123, "n_boot": 1000}) == "0.012" and format_p(None) == "-"
