"""Renaming a method's run records when its config changes name."""
import json

import pytest

from espnet_pinch.bin.rename_records import main, rename_records


def record(d, method, tag, run_as=None):
    rec = {"row": {"tag": tag, "method": method, "model_path": f"exp/asr_{tag}/final/model.pth"},
           "per_utt": {"test": {"u1": [1, 3]}}, "recorded": {"date": "d", "commit": "c"}}
    if run_as:
        rec["recorded"]["run_as"] = run_as
    (d / f"{tag}.json").write_text(json.dumps(rec))


def test_a_default_swap_renames_the_method_s_records_only(tmp_path):
    record(tmp_path, "nascp", "nascp_0.5_s0")
    record(tmp_path, "nascp", "nascp_0.65_b2_s1")
    record(tmp_path, "nascp_band", "nascp_band_0.5_s0")
    record(tmp_path, "nascp_free", "nascp_free_0.5_s0", run_as="nascp_0.5_s0")
    # the band variant cannot take the default's name while the old default's records are there
    with pytest.raises(ValueError, match="nascp_0.5_s0.json"):
        rename_records(tmp_path, "nascp_band", "nascp")
    assert main(["--records", str(tmp_path), "--method", "nascp", "--to", "nascp_noband"]) == 0
    assert main(["--records", str(tmp_path), "--method", "nascp_band", "--to", "nascp"]) == 0
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["nascp_0.5_s0.json", "nascp_free_0.5_s0.json", "nascp_noband_0.5_s0.json",
                     "nascp_noband_0.65_b2_s1.json"]
    old = json.loads((tmp_path / "nascp_noband_0.65_b2_s1.json").read_text())
    assert old["row"] == {"tag": "nascp_noband_0.65_b2_s1", "method": "nascp_noband",
                          "model_path": "exp/asr_nascp_noband_0.65_b2_s1/final/model.pth"}
    assert old["recorded"] == {"date": "d", "commit": "c", "run_as": "nascp_0.65_b2_s1"}
    assert old["per_utt"] == {"test": {"u1": [1, 3]}}
    new = json.loads((tmp_path / "nascp_0.5_s0.json").read_text())
    assert new["row"]["method"] == "nascp" and new["recorded"]["run_as"] == "nascp_band_0.5_s0"
    # a record renamed before keeps the tag it first ran under
    assert main(["--records", str(tmp_path), "--method", "nascp_free", "--to", "nascp_p2k"]) == 0
    again = json.loads((tmp_path / "nascp_p2k_0.5_s0.json").read_text())
    assert again["recorded"]["run_as"] == "nascp_0.5_s0"
