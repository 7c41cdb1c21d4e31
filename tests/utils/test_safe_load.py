"""Checkpoints are read weights-only: a crafted pickle runs nothing, real checkpoints still load."""
from __future__ import annotations

import argparse
import pathlib

import pytest
import torch

from espnet_pinch.bin import asr_inference, decode
from espnet_pinch.bin.bundle import import_bundle, upstream_arch
from espnet_pinch.frontend.s3prl import PinchS3prlFrontend
from espnet_pinch.pruning.sparse import load_sparse
from espnet_pinch.scoring.results import param_counts
from espnet_pinch.tasks.asr import PinchASRTask
from espnet_pinch.upstream.build import checkpoint_arch, load_size_config
from espnet_pinch.utils.safe_load import UnsafeCheckpointError, check_checkpoint, load_checkpoint

from ..conftest import ROOT, TINY


class _TouchOnLoad:
    """Unpickled by a full unpickler, this calls ``marker.touch()``: arbitrary code, harmlessly."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture
def crafted(tmp_path):
    """(file, marker): an S3PRL-looking checkpoint whose pickle would create ``marker``; the file
    is also the ``model.pth`` of a bundle dir."""
    marker = tmp_path / "code_ran"
    path = tmp_path / "bundle" / "model.pth"
    path.parent.mkdir()
    torch.save({"model_cfg": {}, "task_cfg": {}, "model_weight": {}, "x": _TouchOnLoad(marker)},
               path)
    return path, marker


def test_crafted_file_runs_code_with_the_full_unpickler(crafted):
    # The control: without weights_only this file does run code, so the tests below mean something.
    path, marker = crafted
    torch.load(path, weights_only=False)
    assert marker.exists()


def _size_config(path, tiny_ckpt, tmp_path):  # finalize, after the file was swapped
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt))
    fe.path_or_url = str(path)
    fe.size_config()


def _reload(path, tiny_ckpt, tmp_path):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt))
    fe.path_or_url = str(path)
    fe.reload_pretrained_parameters()


def _import_bundle(path, tiny_ckpt, tmp_path):
    import_bundle(path.parent, tmp_path / "exp", ROOT / "x", ROOT / "y", "m.pth")


def _decode(path, tmp_path, search):
    (tmp_path / "decode.yaml").write_text(f"search: {search}\n")
    (tmp_path / "wav.scp").write_text("u1 /dev/null\n")
    (tmp_path / "config.yaml").touch()  # never read: the checkpoint is refused first
    decode.main(["--config", str(tmp_path / "decode.yaml"), "--asr_train_config",
                 str(tmp_path / "config.yaml"), "--asr_model_file", str(path),
                 "--set", str(tmp_path / "wav.scp"), str(tmp_path / "out")])


# Every way espnet_pinch reads a checkpoint (or hands one to ESPnet / S3PRL): f(path, tiny, tmp).
ENTRY_POINTS = {
    "load_checkpoint": lambda p, *_: load_checkpoint(p),
    "load_checkpoint mmap": lambda p, *_: load_checkpoint(p, mmap=True),
    "check_checkpoint": lambda p, *_: check_checkpoint(p),
    "checkpoint_arch": lambda p, *_: checkpoint_arch(p),
    "frontend hub name": lambda p, *_: PinchS3prlFrontend("wav2vec2", path_or_url=str(p)),
    "frontend local name": lambda p, *_: PinchS3prlFrontend("wav2vec2_local", path_or_url=str(p)),
    "size_config": _size_config,
    "reload_pretrained_parameters": _reload,
    "load_sparse": lambda p, *_: load_sparse(p),
    "param_counts": lambda p, *_: param_counts(p),
    "bundle upstream_arch": lambda p, *_: upstream_arch({"path_or_url": str(p)}),
    "bundle import": _import_bundle,
    "asr_train --init_param": lambda p, *_: PinchASRTask.main_worker(
        argparse.Namespace(init_param=[f"{p}:encoder:encoder"])),
    "finalize, macs: build_model_from_file":
        lambda p, tiny, tmp: PinchASRTask.build_model_from_file(tmp / "config.yaml", p),
    "asr_inference --asr_model_file": lambda p, tiny, tmp: asr_inference.main([
        "--asr_train_config", str(tmp / "config.yaml"), "--asr_model_file", str(p),
        "--data_path_and_name_and_type", "wav.scp,speech,sound", "--output_dir", str(tmp / "out")]),
    "decode greedy --asr_model_file": lambda p, tiny, tmp: _decode(p, tmp, "greedy"),
    "decode beam --asr_model_file": lambda p, tiny, tmp: _decode(p, tmp, "beam"),
    "export --asr_model_file": lambda p, tiny, tmp: _export(p, tmp),
}


def _export(path, tmp):
    from espnet_pinch.export.onnx import load_asr_model

    (tmp / "config.yaml").touch()
    load_asr_model(tmp / "config.yaml", path, tmp / "export")


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_crafted_pickle_does_not_run(name, crafted, tiny_ckpt, tmp_path):
    path, marker = crafted
    with pytest.raises(UnsafeCheckpointError) as e:
        ENTRY_POINTS[name](path, tiny_ckpt, tmp_path)
    assert str(path) in str(e.value) and "the pickle calls the global" in str(e.value)
    assert not marker.exists()


def _converted(tmp_path: pathlib.Path, arch: str) -> pathlib.Path:
    """A checkpoint as S3PRL's ``upstream/<arch>/convert.py`` writes it from a fairseq one.

    The config takes fairseq's round trip: the training config is a structured OmegaConf of the
    model's dataclass (its ChoiceEnum fields hold enum members); fairseq saves it with
    ``to_container(resolve=True, enum_to_str=True)``, ``load_checkpoint_to_cpu`` re-creates it
    with ``allow_objects``, and S3PRL's converter writes ``OmegaConf.to_container(cfg[...])``.
    """
    from omegaconf import OmegaConf

    from espnet_pinch.adapters import adapter
    from espnet_pinch.upstream.build import build_model

    size = load_size_config(TINY)
    if arch == "hubert":
        size = {**size, "arch": "hubert", "model_cfg": {**size["model_cfg"], "label_rate": 50},
                "task_cfg": {"label_rate": 50}}
    model_cls, task_cls = adapter(arch).config_classes()
    trained = OmegaConf.create({
        "model": OmegaConf.merge(OmegaConf.structured(model_cls), size["model_cfg"]),
        "task": OmegaConf.merge(OmegaConf.structured(task_cls), size["task_cfg"])})
    saved = OmegaConf.to_container(trained, resolve=True, enum_to_str=True)
    cfg = OmegaConf.to_container(OmegaConf.create(saved, flags={"allow_objects": True}))
    out = {"task_cfg": cfg["task"], "model_cfg": cfg["model"],
           "model_weight": build_model(size).state_dict()}
    if arch == "hubert":
        # fairseq Dictionary.symbols: its four specials, then the cluster labels.
        out["dictionaries_symbols"] = [["<s>", "<pad>", "</s>", "<unk>", "0", "1", "2", "3"]]
    path = tmp_path / f"{arch}_converted.pt"
    torch.save(out, path)
    return path


@pytest.mark.parametrize("arch", ["wav2vec2", "hubert"])
def test_s3prl_converted_checkpoint_loads(arch, tmp_path):
    path = _converted(tmp_path, arch)
    assert checkpoint_arch(path) == arch
    fe = PinchS3prlFrontend(arch, path_or_url=str(path))
    assert fe.size_config()["model_cfg"]["encoder_embed_dim"] == 32
    fe.reload_pretrained_parameters()


def test_missing_file_is_not_wrapped(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")


def test_not_a_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        load_checkpoint(bad)


def test_espnet_loaders_are_weights_only_inside_our_processes(crafted):
    """The check above could be raced (the file swapped after it); inside ``weights_only_loads``
    (training's main_worker, decoding, build_model_from_file) ESPnet's own ``torch.load(...,
    weights_only=False)`` of --init_param refuses the pickle too."""
    import pickle

    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from espnet_pinch.utils.safe_load import weights_only_loads

    path, marker = crafted
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        load_pretrained_model(str(path), torch.nn.Linear(2, 2), ignore_init_mismatch=False)
    assert not marker.exists()
    assert torch.load is not None and torch.load.__module__ == "torch.serialization"  # restored


def test_s3prl_load_is_weights_only_even_when_torch_is_told_otherwise(crafted, monkeypatch):
    """S3PRL loads the upstream with torch's default, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns
    into the full unpickler; with the pre-check gone (a file swapped after it), the frontend's
    build is still weights-only."""
    import pickle

    import espnet_pinch.frontend.s3prl as fe

    path, marker = crafted
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(fe, "checkpoint_arch", lambda p: "wav2vec2")  # the weights-only pre-read, gone
    with pytest.raises(pickle.UnpicklingError):
        fe.PinchS3prlFrontend("wav2vec2_local", path_or_url=str(path))
    assert not marker.exists()


@pytest.mark.parametrize("upstream", ["wav2vec2_local", "wav2vec2", "wav2vec2_custom"])
def test_code_in_a_config_string_s3prl_evals_is_refused(upstream, tmp_path):
    """S3PRL eval()s ``conv_feature_layers`` when it builds the model: a checkpoint (or size
    config) with code there is refused before S3PRL sees it, naming the file and the key."""
    import espnet_pinch.frontend.s3prl as fe
    from espnet_pinch.upstream.build import build_model, checkpoint_dict, load_size_config

    marker = tmp_path / "ran"
    size = load_size_config(TINY)
    evil = f"__import__('pathlib').Path({str(marker)!r}).touch() or [(16, 10, 5)]"
    ckpt = checkpoint_dict(size, build_model(size).state_dict())
    ckpt["model_cfg"]["conv_feature_layers"] = evil
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"evil.pt: model_cfg.conv_feature_layers .* uses \w+; S3PRL would eval"):
        fe.PinchS3prlFrontend(upstream, path_or_url=str(path))
    with pytest.raises(ValueError, match="conv_feature_layers"):
        load_size_config({**size, "model_cfg": {**size["model_cfg"], "conv_feature_layers": evil}})
    assert not marker.exists()
    # the recipes' own arithmetic on literals stays accepted
    ok = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    assert load_size_config({**size, "model_cfg": {**size["model_cfg"], "conv_feature_layers": ok}})
