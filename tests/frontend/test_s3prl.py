import pytest
import torch

from espnet_pinch.frontend.s3prl import PinchS3prlFrontend
from espnet_pinch.upstream.build import load_size_config

from ..conftest import TINY


def test_registered_in_espnet_choices():
    import espnet_pinch.tasks.asr  # noqa: F401
    from espnet2.tasks import asr

    assert asr.frontend_choices.get_class("s3prl_pinch") is PinchS3prlFrontend
    assert asr.encoder_choices.get_class("linear").__name__ == "LinearEncoder"
    # ESPnet's own choices are still there.
    assert asr.frontend_choices.get_class("s3prl") is not None


def test_forward_backward_reaches_cnn(tiny_ckpt):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt), apply_mask=False)
    fe.train()
    wav = torch.randn(2, 16000)
    lens = torch.tensor([16000, 9600])
    feats, flens = fe(wav, lens)
    assert feats.shape == (2, 50, fe.output_size()) and fe.output_size() == 32
    assert flens.tolist() == [50, 30]
    feats.pow(2).mean().backward()
    conv0 = fe.ssl_model.feature_extractor.conv_layers[0][0].weight
    assert conv0.grad is not None and conv0.grad.abs().sum() > 0


def test_int16_input_is_scaled(tiny_ckpt):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt)).eval()
    x = (torch.randn(1, 8000) * 3000).round()
    with torch.no_grad():
        a, _ = fe(x.to(torch.int16), torch.tensor([8000]))
        b, _ = fe(x / 32768.0, torch.tensor([8000]))
    torch.testing.assert_close(a, b)


def test_prunable_layers_cover_cnn_and_transformer(tiny_ckpt):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt))
    names = list(fe.prunable_layers())
    for i in range(2):
        for sub in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                    "self_attn.out_proj", "fc1", "fc2"):
            assert f"encoder.layers.{i}.{sub}" in names
    assert sum(n.startswith("feature_extractor.conv_layers.") for n in names) == 7
    assert "post_extract_proj" in names
    # Pretraining-only heads are not part of the fine-tuning forward pass.
    assert not any(n.startswith(("final_proj", "project_q", "quantizer")) for n in names)
    mods = dict(fe.ssl_model.named_modules())
    assert all(mods[n] is m for n, m in fe.prunable_layers().items())


def test_no_second_copy_of_weights(tiny_ckpt):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt))
    n_params = sum(p.numel() for p in fe.parameters())
    n_state = sum(t.numel() for t in fe.state_dict().values() if t.is_floating_point())
    n_all = sum(t.numel() for t in vars(fe).values() if isinstance(t, torch.Tensor))
    assert n_state <= n_params + 100  # state = parameters (+ a few buffers), no stored copy
    assert n_all == 0 and not hasattr(fe, "pretrained_params")


def test_build_from_architecture_only_then_load_weights(tiny_ckpt):
    a = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt)).eval()
    b = PinchS3prlFrontend("wav2vec2_local", upstream_config=load_size_config(TINY)).eval()
    b.load_state_dict(a.state_dict())
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(a(wav, torch.tensor([8000]))[0], b(wav, torch.tensor([8000]))[0])


def test_training_mask_only_in_training(tiny_ckpt):
    fe = PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt), apply_mask=True)
    fe.ssl_model.mask_prob = 0.9
    wav = torch.randn(1, 16000)
    fe.eval()
    with torch.no_grad():
        e1, e2 = fe(wav, torch.tensor([16000]))[0], fe(wav, torch.tensor([16000]))[0]
        fe.train()
        for m in fe.modules():  # no dropout in the tiny config; masking is the only randomness
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        t1 = fe(wav, torch.tensor([16000]))[0]
    torch.testing.assert_close(e1, e2)
    assert not torch.allclose(e1, t1)


def test_bad_conf_errors(tiny_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match="path_or_url"):
        PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="16000"):
        PinchS3prlFrontend("wav2vec2_local", path_or_url=str(tiny_ckpt), fs=8000)


def test_a_local_loader_name_loads_the_family_the_file_holds(tiny_wavlm_ckpt, caplog):
    """``wav2vec2_local`` in a recipe's config with a WavLM file (``--upstream_config`` swapped):
    the file's family decides, and the log says so."""
    import logging

    with caplog.at_level(logging.INFO):
        fe = PinchS3prlFrontend(upstream="wav2vec2_local", path_or_url=str(tiny_wavlm_ckpt))
    assert type(fe.adapter).__name__ == "WavLMAdapter" and fe.upstream_name == "wavlm_local"
    assert "holds a wavlm model: loaded with wavlm_local" in caplog.text
    feats, lens = fe(torch.randn(1, 16000), torch.tensor([16000]))
    assert feats.shape == (1, int(lens[0]), 32)
