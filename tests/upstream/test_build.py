import pytest
import torch
from s3prl.nn import S3PRLUpstream

from espnet_pinch.upstream.build import build_model, load_size_config, make_upstream, s3prl_name
from espnet_pinch.utils.safe_load import load_checkpoint

from ..conftest import TINY


def test_checkpoint_loads_through_s3prl_local_loader(tiny_ckpt):
    model = build_model(load_size_config(TINY), seed=0).eval()
    up = S3PRLUpstream("wav2vec2_local", path_or_url=str(tiny_ckpt)).eval()
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        hs, _ = up(wav, torch.tensor([8000, 8000]))
        ref = model.extract_features(wav, None)["x"]
    assert len(hs) == 3  # input of each of 2 layers + final output
    # S3PRL pads the conv output (24 frames) to len // 320 = 25 frames by repeating the last.
    assert up.downsample_rates[0] == 320 and hs[-1].shape[1] == 8000 // 320
    torch.testing.assert_close(hs[-1][:, : ref.shape[1]], ref)


def test_hubert_checkpoint(tmp_path):
    cfg = load_size_config(TINY)
    cfg = {**cfg, "arch": "hubert", "model_cfg": {**cfg["model_cfg"], "label_rate": 50},
           "task_cfg": {"label_rate": 50}}
    path = make_upstream(cfg, tmp_path / "h.pt")
    assert s3prl_name(cfg) == "hubert_local"
    up = S3PRLUpstream("hubert_local", path_or_url=str(path))
    assert up.hidden_sizes[-1] == 32


def test_seed_changes_weights(tmp_path):
    a = load_checkpoint(make_upstream(TINY, tmp_path / "a.pt", seed=0))["model_weight"]
    b = load_checkpoint(make_upstream(TINY, tmp_path / "b.pt", seed=1))["model_weight"]
    k = "encoder.layers.0.fc1.weight"
    assert not torch.equal(a[k], b[k])


@pytest.mark.parametrize("cfg, match", [
    ({"arch": "conformer"}, "arch must be one of"),
    ({"arch": "wav2vec2", "model_cfg": {"encoder_layerz": 2}}, r"unknown fields \['encoder_layerz'\]"),
    ({"arch": "wav2vec2", "size": 3}, r"unknown keys \['size'\]"),
])
def test_bad_size_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        load_size_config(cfg)


def test_shipped_size_configs_are_valid():
    for name in ("small_cpu", "wav2vec2_base", "hubert_large"):
        cfg = load_size_config(TINY.parent / f"{name}.yaml")
        layers = eval(cfg["model_cfg"]["conv_feature_layers"])  # noqa: S307 (our own file)
        stride = 1
        for _, _, s in layers:
            stride *= s
        assert stride == 320, name  # S3PRL's fixed frame rate
