import json

import pytest
import torch

from espnet_pinch.scoring import score as score_mod
from espnet_pinch.scoring.results import param_counts


def test_hand_computed_case():
    # u1: B->X substitution, D deleted: 2 errors / 4 words. u2: NO inserted: 1 error / 1 word.
    summary, rows = score_mod.score({"u1": "A B C D", "u2": "YES"}, {"u1": "A X C", "u2": "YES NO"})
    assert summary["wer"] == pytest.approx(100 * 3 / 5)
    assert (summary["sub"], summary["del"], summary["ins"]) == (1, 1, 1)
    # characters (spaces count): "A B C D"->"A X C" = 1 sub + 2 del; "YES"->"YES NO" = 3 ins
    assert summary["cer"] == pytest.approx(100 * 6 / 10)
    u1 = rows[0]
    assert u1["ops"].split() == ["C", "S", "C", "D"] and u1["errors"] == 2


def test_missing_hypothesis_is_an_error():
    with pytest.raises(ValueError, match="no hypothesis"):
        score_mod.score({"u1": "A", "u2": "B"}, {"u1": "A"})


def test_cli_writes_score_and_alignment(tmp_path):
    (tmp_path / "ref").write_text("u1 GO\nu2 ERASE F\n")
    (tmp_path / "hyp").write_text("u1 GO\nu2 ERASE S\n")
    assert score_mod.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"),
                           "--out", str(tmp_path / "out")]) == 0
    s = json.loads((tmp_path / "out/score.json").read_text())
    assert s["wer"] == pytest.approx(100 / 3) and s["num_utts"] == 2
    ali = (tmp_path / "out/alignment.txt").read_text()
    assert ali.startswith("u2  errors=1/2")  # errors first
    assert "HYP: ERASE S" in ali
    # word errors and reference words per utterance, for the paired significance test
    assert json.loads((tmp_path / "out/per_utt.json").read_text()) == {"u1": [0, 1], "u2": [1, 2]}


def test_per_utterance_errors_add_up_to_the_summary():
    summary, rows = score_mod.score({"u1": "A B C D", "u2": "YES", "u3": "GO"},
                                    {"u1": "A X C", "u2": "YES NO", "u3": "GO"})
    assert [(r["errors"], r["words"]) for r in rows] == [(2, 4), (1, 1), (0, 1)]
    assert sum(r["errors"] for r in rows) == summary["sub"] + summary["del"] + summary["ins"]


def test_param_counts_over_prunable_weights(tmp_path):
    p = "frontend.upstream.upstream.model."
    w = torch.ones(4, 5)
    w[:2] = 0  # half of this prunable weight is zero
    state = {p + "encoder.layers.0.fc1.weight": w, p + "encoder.layers.0.fc1.bias": torch.ones(4),
             p + "encoder.pos_conv.0.weight_v": torch.ones(2, 2, 3), "ctc.ctc_lo.weight": torch.ones(3, 4)}
    torch.save(state, tmp_path / "m.pth")
    c = param_counts(tmp_path / "m.pth", [p + "encoder.layers.0.fc1.weight"])
    assert c["params_total"] == 20 + 4 + 12 + 12
    assert c["params_nonzero"] == 48 - 10
    assert c["params_prunable"] == 20 and c["sparsity"] == pytest.approx(0.5)
    assert c["sparsity_model"] == pytest.approx(10 / 48)
