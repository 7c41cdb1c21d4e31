"""Every recipe: one compression config per recipe and model, one pruning block per method, and
what a method trains with is exactly the base plus its block (``bin/compose_config.py``)."""
import re
import subprocess
import sys

import pytest
import yaml

from espnet_pinch.bin.compose_config import BLOCK_KEYS, compose, compose_files

from ..conftest import ROOT

# (recipe, base config, block directory)
SETS = [
    ("an4/asr1", "train_compress.yaml", "pruner"),
    ("an4/asr1", "train_compress_debug.yaml", "pruner_debug"),
    ("librispeech_100/asr1", "train_compress_wav2vec2_base.yaml", "pruner_wav2vec2_base"),
    ("librispeech_100/asr1", "train_compress_hubert_large.yaml", "pruner_hubert_large"),
    ("slurp/slu1", "train_compress_wav2vec2_base.yaml", "pruner"),
]
BLOCKS = [(r, b, blk) for r, b, d in SETS for blk in sorted((ROOT / "egs2" / r / "conf" / d).glob("*.yaml"))]


def test_every_recipe_has_its_bases_and_blocks():
    for recipe, base, blocks in SETS:
        conf = ROOT / "egs2" / recipe / "conf"
        assert (conf / base).is_file(), base
        names = {p.stem for p in (conf / blocks).glob("*.yaml")}
        assert {"spg", "ump", "nascp", "hj_size", "hj_macs", "hj_separate"} <= names, (recipe, blocks)
    # no per-method copies of the whole training config are left
    assert not [p for p in (ROOT / "egs2").glob("*/*/conf/train_*.yaml")
                if re.match(r"train_(spg|ump|nascp|hj_|dense_cont)", p.stem)]


@pytest.mark.parametrize("recipe,base,block", BLOCKS, ids=[f"{r}:{b.parent.name}/{b.name}" for r, _, b in BLOCKS])
def test_effective_config_is_the_base_plus_the_block(recipe, base, block):
    base_cfg = yaml.safe_load((ROOT / "egs2" / recipe / "conf" / base).read_text())
    block_cfg = yaml.safe_load(block.read_text())
    assert set(block_cfg) <= set(BLOCK_KEYS) and block_cfg["pruner"], block
    assert base_cfg.get("pruner") is None  # dense_cont trains with the base as it is
    got = compose_files(ROOT / "egs2" / recipe / "conf" / base, block)
    for k, v in got.items():  # every key: the block's if it is a pruning key, else the base's
        assert v == (block_cfg[k] if k in BLOCK_KEYS else base_cfg[k]), k
    assert set(got) == (set(base_cfg) - set(BLOCK_KEYS)) | set(block_cfg)


def test_a_block_with_a_training_key_or_a_base_with_a_method_is_refused(tmp_path):
    base, block = {"optim": "adamw", "pruner": None}, {"pruner": "spg", "pruner_conf": {}}
    with pytest.raises(ValueError, match=r"b\.yaml: key 'max_epoch' does not belong"):
        compose(base, {**block, "max_epoch": 9}, "a.yaml", "b.yaml")
    with pytest.raises(ValueError, match=r"a\.yaml: key 'pruner' must be null"):
        compose({**base, "pruner": "ump"}, block, "a.yaml", "b.yaml")
    with pytest.raises(ValueError, match=r"b\.yaml: key 'pruner' must name"):
        compose(base, {"pruner_conf": {}}, "a.yaml", "b.yaml")
    # the command: a clear one-line error naming the file, and the output written elsewhere
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "block.yaml").write_text("pruner: spg\nlr: 1\n")
    r = subprocess.run([sys.executable, "-m", "espnet_pinch.bin.compose_config", "--base",
                        str(tmp_path / "base.yaml"), "--block", str(tmp_path / "block.yaml"),
                        "--out", str(tmp_path / "out/c.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "block.yaml: key 'lr'" in r.stderr and not (tmp_path / "out").exists()
    (tmp_path / "block.yaml").write_text("pruner: spg\npruner_conf: {tau: 0.1}\n")
    r = subprocess.run([sys.executable, "-m", "espnet_pinch.bin.compose_config", "--base",
                        str(tmp_path / "base.yaml"), "--block", str(tmp_path / "block.yaml"),
                        "--out", str(tmp_path / "out/c.yaml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((tmp_path / "out/c.yaml").read_text()) == {
        "optim": "adamw", "pruner": "spg", "pruner_conf": {"tau": 0.1}}


# What each SPG variant of the AN4 comparison (issue 13) may change against spg_raw.yaml (the
# paper's form at the variants' common controller); everything else (the target's ramp, the
# lambda controller, tau) must be the same, so a variant's row in RESULTS.md differs from the
# others by its parametrisation or threshold step only. spg.yaml, the default, and spg_d60.yaml,
# the default before it, are spg_raw.yaml with their own controller (dual_lr, penalty) and nothing
# else.
SPG_VARIANT_KEYS = {
    "spg": {"dual_lr", "penalty"},
    "spg_d60": {"dual_lr"},
    "spg_rms": {"parametrization", "threshold_gain"},
    "spg_sgd": {"parametrization", "threshold_step", "threshold_gain", "threshold_lr"},
    "spg_psgd": {"parametrization", "threshold_step", "threshold_precondition", "threshold_gain",
                 "threshold_lr"},
    "spg_psgd_tr": {"parametrization", "threshold_step", "threshold_precondition", "threshold_gain",
                    "threshold_lr", "threshold_max_step"},
}


def test_spg_variants_differ_from_spg_raw_only_in_their_own_keys():
    pruner = ROOT / "egs2" / "an4" / "asr1" / "conf" / "pruner"
    base = yaml.safe_load((pruner / "spg_raw.yaml").read_text())["pruner_conf"]
    blocks = {p.stem: yaml.safe_load(p.read_text()) for p in pruner.glob("spg*.yaml")}
    variants = {name: b["pruner_conf"] for name, b in blocks.items()
                if b["pruner"] == "spg" and name != "spg_raw"}
    assert set(variants) == set(SPG_VARIANT_KEYS), "a new SPG variant: declare the keys it may change"
    for name, allowed in SPG_VARIANT_KEYS.items():
        conf = variants[name]
        changed = {k for k in set(base) | set(conf) if conf.get(k) != base.get(k)}
        assert changed and changed <= allowed, (name, sorted(changed - allowed))


# Near copies kept for recorded runs: copy -> (the config it was copied from, the keys where it
# differs and their values, None = absent), declared in conf/pruner_copies.yaml.
CONFIG_COPIES = {copy: (c["source"], c["changes"]) for copy, c in yaml.safe_load(
    (ROOT / "egs2" / "an4" / "asr1" / "conf" / "pruner_copies.yaml").read_text()).items()}


@pytest.mark.parametrize("copy", sorted(CONFIG_COPIES))
def test_config_copies_differ_from_their_source_only_where_they_say(copy):
    pruner = ROOT / "egs2" / "an4" / "asr1" / "conf" / "pruner"
    source, changes = CONFIG_COPIES[copy]
    new = yaml.safe_load((pruner / f"{source}.yaml").read_text())
    old = yaml.safe_load((pruner / f"{copy}.yaml").read_text())
    assert old["pruner"] == new["pruner"]
    a, b = old["pruner_conf"], new["pruner_conf"]
    assert {k for k in set(a) | set(b) if a.get(k) != b.get(k)} == set(changes), copy
    assert {k: a.get(k) for k in changes} == changes
