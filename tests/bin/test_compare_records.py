"""Comparing two systems' records pooled over seeds (a variant against the method it varies)."""
import json

import pytest

from espnet_pinch.bin.compare_records import compare, main


def record(d, tag, seed, errors, words=(3, 2, 5)):
    per_utt = {f"u{i}": [e, w] for i, (e, w) in enumerate(zip(errors, words))}
    wer = round(100.0 * sum(errors) / sum(words), 2)
    rec = {"row": {"tag": tag, "seed": seed, "wer": {"test": wer, "dev": wer}},
           "per_utt": {"test": per_utt, "dev": per_utt}}
    path = d / f"{tag}.json"
    path.write_text(json.dumps(rec))
    return path


def test_b_against_a_pools_the_seeds_errors_and_reports_each_seed(tmp_path):
    a = [record(tmp_path, "m_s0", 0, (1, 0, 1)), record(tmp_path, "m_s1", 1, (2, 1, 0))]
    b = [record(tmp_path, "v_s1", 1, (3, 1, 2)), record(tmp_path, "v_s0", 0, (1, 2, 2))]
    out = tmp_path / "out" / "cmp.json"
    assert main(["--a", *map(str, a), "--b", *map(str, b), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["seeds"] == [0, 1]
    t = r["sets"]["test"]
    assert t["a"]["wer"] == [20.0, 30.0] and t["a"]["mean"] == pytest.approx(25.0)
    assert t["b"]["tags"] == ["v_s1", "v_s0"] and t["b"]["mean"] == pytest.approx(55.0)
    assert t["a"]["std"] == pytest.approx(7.0711, abs=1e-4)
    # errors summed over the seeds: A 5 of 20 words, B 11 of 20
    assert t["delta_wer"] == pytest.approx(30.0)
    assert t["ci95"][0] <= 30.0 <= t["ci95"][1] and t["n_boot"] == 1000
    swapped = compare([json.loads(p.read_text()) for p in b], [json.loads(p.read_text()) for p in a])
    assert swapped["sets"]["test"]["delta_wer"] == pytest.approx(-30.0)
    assert swapped["sets"]["test"]["p_value"] == pytest.approx(t["p_value"])


def test_sides_of_different_seeds_or_sets_are_refused(tmp_path, capsys):
    a = [record(tmp_path, "m_s0", 0, (1, 0, 1))]
    b = [record(tmp_path, "v_s1", 1, (1, 0, 1))]
    assert main(["--a", str(a[0]), "--b", str(b[0])]) == 1
    assert "different seeds: A [0], B [1]" in capsys.readouterr().err
    c = record(tmp_path, "v_s0", 0, (1, 0, 1))
    assert main(["--a", str(a[0]), "--b", str(c), "--test_sets", "eval"]) == 1
    assert "test set(s) ['eval'] not scored" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"row": {}}))
    assert main(["--a", str(bad), "--b", str(c)]) == 1
    assert f"{bad}: not a run record" in capsys.readouterr().err
