"""LibriSpeech-100h recipe: every training config (dense, SPG, UMP, NAS-CP, HJ-Pruning for
wav2vec2-base, HuBERT-large and WavLM Base+) builds and trains one step on the real LibriSpeech sample, data
prep and BPE included, with a tiny local upstream of the same family in place of the hub one."""
from pathlib import Path

import pytest
import yaml

from espnet_pinch.bin.compose_config import compose_files
from espnet_pinch.utils.safe_load import load_checkpoint

from ..conftest import ROOT
from ..train.toy import data_args

RECIPE = ROOT / "egs2" / "librispeech_100" / "asr1"
SAMPLE = ROOT.parent / "shared" / "data" / "librispeech_sample"
MODELS = ("wav2vec2_base", "hubert_large", "wavlm_base_plus")
HUB = {"wav2vec2_base": "wav2vec2", "hubert_large": "hubert_large_ll60k", "wavlm_base_plus": "wavlm_base_plus"}
# what each run trains with: dense_<model>, dense_cont (the compression base as it is) and every
# method's block added to that base (asr.sh stage 6, bin/compose_config.py)
CONFIGS = sorted([f"dense_{m}" for m in MODELS] + [f"dense_cont_{m}" for m in MODELS]
                 + [f"{b.stem}_{m}" for m in MODELS for b in (RECIPE / "conf" / f"pruner_{m}").glob("*.yaml")])


def config_of(name: str) -> dict:
    model = next(m for m in MODELS if name.endswith(m))
    method = name[: -len(model) - 1]
    if method == "dense":
        return yaml.safe_load((RECIPE / "conf" / f"train_dense_{model}.yaml").read_text())
    base = RECIPE / "conf" / f"train_compress_{model}.yaml"
    if method == "dense_cont":
        return yaml.safe_load(base.read_text())
    return compose_files(base, RECIPE / "conf" / f"pruner_{model}" / f"{method}.yaml")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not SAMPLE.is_dir():
        pytest.skip(f"LibriSpeech sample not found at {SAMPLE}")
    from espnet_pinch.data.dump import dump
    from espnet_pinch.data.librispeech import prepare
    from espnet_pinch.data.tokenize import train_tokenizer

    root = tmp_path_factory.mktemp("ls")
    prepare(SAMPLE, root / "data", subsets=["test-clean"])
    model, tokens = train_tokenizer(root / "data/test_clean/text", root / "bpe", "bpe", vocab_size=60)
    dump(root / "data/test_clean", root / "dump")
    return root / "dump", model, tokens


def test_every_method_has_every_model():
    methods = {c[: -len(m) - 1] for c in CONFIGS for m in MODELS if c.endswith(m)}
    assert methods == {"dense", "dense_cont", "spg", "ump", "nascp", "hj_separate", "hj_size",
                       "hj_macs"}
    for m in methods:
        for model in MODELS:
            assert f"{m}_{model}" in CONFIGS


def test_operating_points_and_hub_names():
    for c in CONFIGS:
        cfg = config_of(c)
        hub = cfg["frontend_conf"]["upstream"]
        model = next(m for m in MODELS if c.endswith(m))
        assert hub == HUB[model], c
        if cfg.get("pruner"):
            want = 0.6 if model == "hubert_large" else 0.65  # the SPG paper's operating points
            assert cfg["pruner_conf"]["target_sparsity"] == want, c


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_one_step(config, prepared, tiny_ckpt, tiny_hubert_ckpt, tiny_wavlm_ckpt, tmp_path):
    from espnet_pinch.tasks.asr import PinchASRTask

    dump, bpe, tokens = prepared
    ckpt = tiny_wavlm_ckpt if "wavlm" in config else tiny_hubert_ckpt if "hubert" in config else tiny_ckpt
    out = tmp_path / "exp"
    conf = tmp_path / "train_config.yaml"
    conf.write_text(yaml.safe_dump(config_of(config)))
    PinchASRTask.main(cmd=[
        "--config", str(conf), "--output_dir", str(out),
        "--frontend_conf", f"path_or_url={ckpt}",
        "--token_type", "bpe", "--bpemodel", str(bpe), "--token_list", str(tokens),
        "--use_preprocessor", "true", "--ngpu", "0", "--num_workers", "0",
        "--max_epoch", "1", "--num_iters_per_epoch", "1", "--use_tensorboard", "false",
        "--batch_bins", "1000000", *data_args(dump)])
    assert (out / "1epoch.pth").is_file()
    state = load_checkpoint(out / "1epoch.pth")
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["frontend_conf"]["path_or_url"] == str(ckpt)
    if written.get("pruner"):
        if written["pruner"] == "ump":
            assert bool(state["pruner.pruned"])
        else:
            assert int(state["pruner.step"]) == 1  # one training step went through the pruner
