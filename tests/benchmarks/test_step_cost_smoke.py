"""benchmarks/step_cost.py builds each method as stage 6 does and prices the budget's steps at the
measured step times (no timing is asserted here)."""
import importlib.util
import json
import shutil

import pytest
import yaml

from ..conftest import ROOT
from tests.pruning.test_spg_espnet import TOKENS


def test_step_cost_prices_each_methods_budget(tiny_ckpt, tmp_path, monkeypatch):
    recipe = tmp_path / "asr1"  # a recipe dir: the AN4 configs, a token list, a tiny upstream
    shutil.copytree(ROOT / "egs2/an4/asr1/conf", recipe / "conf")
    (recipe / "data/token_list/char").mkdir(parents=True)
    (recipe / "data/token_list/char/tokens.txt").write_text("\n".join(TOKENS) + "\n")
    (recipe / "exp/upstream").mkdir(parents=True)
    shutil.copy(tiny_ckpt, recipe / "exp/upstream/upstream.pt")
    monkeypatch.chdir(recipe)
    spec = importlib.util.spec_from_file_location("sc", ROOT / "benchmarks/step_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "sc.json"
    compact = tmp_path / "final"  # a finalized model's config (here: the same tiny architecture)
    compact.mkdir()
    (compact / "config.yaml").write_text(yaml.safe_dump(
        {"frontend_conf": {"upstream": "wav2vec2_local", "path_or_url": str(tiny_ckpt)}}))
    assert mod.main(["--methods", "dense_cont", "spg", "nascp", "hj_size", "--utt_seconds", "1.0",
                     "--compact", f"nascp={compact}", "--warmup", "0", "--steps", "1",
                     "--out", str(out)]) == 0
    r = json.loads(out.read_text())["methods"]
    assert r["dense_cont"]["ratio_to_dense_cont"] == 1.0
    for m in ("dense_cont", "spg"):  # 4 epochs x 47 steps at the step's time, no fine-tuning
        assert (r[m]["search_epochs"], r[m]["finetune_epochs"]) == (4, 0)
        assert r[m]["budget_step_seconds"] == pytest.approx(188 * r[m]["step_seconds"], abs=0.1)
    assert r["spg"]["budget_ratio_to_dense_cont"] == pytest.approx(
        r["spg"]["budget_step_seconds"] / r["dense_cont"]["budget_step_seconds"], abs=1e-3)
    # NAS-CP fine-tunes a compact model for 1 of its 4 epochs, priced at the compact model's step
    assert (r["nascp"]["search_epochs"], r["nascp"]["finetune_epochs"]) == (3, 1)
    assert r["nascp"]["budget_step_seconds"] == pytest.approx(
        47 * (3 * r["nascp"]["step_seconds"] + r["nascp"]["compact_step_seconds"]), abs=0.1)
    assert "budget_step_seconds" not in r["hj_size"]  # no --compact for it: left unpriced
