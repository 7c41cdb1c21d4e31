"""MAC counter: hand-computed counts on the tiny upstream, sparsity, head pruning, the CLI."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from espnet_pinch.bin.macs import main
from espnet_pinch.profiling.macs import count_macs, macs_per_second, ssl_macs_per_second
from espnet_pinch.upstream.build import build_model, load_size_config

from ..conftest import TINY

N_WAV = 16000  # 1 s at 16 kHz


def hand_count(cfg: dict, heads: list) -> dict:
    """MACs of the SSL model's extract_features on N_WAV samples, from the size config alone."""
    mc = cfg["model_cfg"]
    t, c_in, conv = N_WAV, 1, 0
    for c_out, k, stride in eval(mc["conv_feature_layers"], {"__builtins__": {}}):  # as S3PRL
        t = (t - k) // stride + 1
        conv += t * k * c_in * c_out
        c_in = c_out
    d, dff, k_pos, g = (mc["encoder_embed_dim"], mc["encoder_ffn_embed_dim"], mc["conv_pos"],
                        mc["conv_pos_groups"])
    post_extract_proj = t * c_in * d
    t_pos = t + 2 * (k_pos // 2) - k_pos + 1  # padding k//2, SamePad then drops the extra frame
    pos_conv = t_pos * k_pos * (d // g) * d
    # wav2vec2 / HuBERT's encoder pads T to a multiple of 2; WavLM's does not
    multiple = 1 if cfg["arch"] == "wavlm" else mc.get("required_seq_len_multiple", 2)
    t = -(-t // multiple) * multiple
    dh = d // mc["encoder_attention_heads"]
    proj = sum(4 * t * d * (h * dh) for h in heads)
    if mc.get("gru_rel_pos"):  # WavLM's gate: Linear(dh, 8) on each head's input slice
        proj += sum(t * h * dh * 8 for h in heads)
    scores = sum(2 * t * t * h * dh for h in heads)
    ffn = len(heads) * 2 * t * d * dff
    return {"conv": conv, "pos_conv": pos_conv, "attention_proj": proj,
            "attention_scores": scores, "ffn": ffn, "other_linear": post_extract_proj}


def tiny_config(arch: str = "wav2vec2") -> dict:
    if arch == "wavlm":
        return load_size_config(TINY.parent / "wavlm_tiny_test.yaml")
    cfg = load_size_config(TINY)
    if arch == "hubert":  # same sizes; HuBERT also needs a label rate
        cfg = load_size_config({**cfg, "arch": "hubert",
                                "model_cfg": {**cfg["model_cfg"], "label_rate": 50},
                                "task_cfg": {**cfg["task_cfg"], "label_rate": 50}})
    return cfg


@pytest.fixture
def ssl():
    cfg = tiny_config()
    return cfg, build_model(cfg).eval()


def count(model):
    wav = torch.randn(1, N_WAV)
    return count_macs(model, lambda: model.extract_features(wav, padding_mask=None, mask=False))


@pytest.mark.parametrize("arch", ["wav2vec2", "hubert", "wavlm"])
def test_matches_hand_computation(arch):
    cfg = tiny_config(arch)
    model = build_model(cfg).eval()
    expected = hand_count(cfg, heads=[2, 2])
    got = count(model)
    assert got["breakdown"] == expected and got["breakdown_dense_exec"] == expected
    assert got["macs"] == got["macs_dense_exec"] == sum(expected.values())
    per_s = ssl_macs_per_second(model, seconds=1.0)
    assert per_s["macs_per_second"] == sum(expected.values()) and per_s["seconds"] == 1.0


def test_zeros_lower_macs_not_dense_exec(ssl):
    _, model = ssl
    base = count(model)
    t = 50  # encoder frames (49 padded to a multiple of 2)
    fc1 = model.encoder.layers[0].fc1
    with torch.no_grad():
        fc1.weight[: fc1.out_features // 2] = 0
    zeros = fc1.weight.numel() // 2
    # A parametrized mask on q_proj: the fused attention path never calls q_proj's forward.
    q = model.encoder.layers[1].self_attn.q_proj
    mask = (torch.arange(q.weight.numel()).reshape(q.weight.shape) % 4 != 0).float()

    class Mask(torch.nn.Module):
        def forward(self, w):
            return w * mask

    torch.nn.utils.parametrize.register_parametrization(q, "weight", Mask())
    got = count(model)
    assert got["macs"] == base["macs"] - t * zeros - t * int((mask == 0).sum())
    assert got["breakdown"]["ffn"] == base["breakdown"]["ffn"] - t * zeros
    assert got["macs_dense_exec"] == base["macs_dense_exec"]
    dense = count_macs(model, lambda: model.extract_features(torch.randn(1, N_WAV), None),
                       count_nonzero=False)
    assert dense["macs"] == dense["macs_dense_exec"] == base["macs"]


def test_head_pruned_layer_counted_once(ssl):
    cfg, model = ssl
    attn = model.encoder.layers[0].self_attn
    attn._adaptive_prune_heads(attn._get_reserve_head_index(1))
    attn._set_skip_embed_dim_check()  # slow path: q/k/v/out_proj forwards do run
    calls = []
    attn.q_proj.register_forward_hook(lambda *a: calls.append(1))
    got = count(model)
    assert calls, "expected the slow attention path"
    expected = hand_count(cfg, heads=[1, 2])
    assert got["breakdown"] == expected
    assert got["macs"] == sum(expected.values())


def write_experiment(ckpt: Path, exp: Path) -> torch.nn.Module:
    """A tiny ESPnet model (S3PRL frontend, linear encoder, CTC head); writes its config.yaml."""
    from espnet_pinch.tasks.asr import PinchASRTask

    cfg = {
        "token_list": ["<blank>", "<unk>", "A", "B", "<sos/eos>"], "input_size": None,
        "frontend": "s3prl_pinch",
        "frontend_conf": {"upstream": "wav2vec2_local", "path_or_url": str(ckpt)},
        "encoder": "linear", "model": "pinch", "model_conf": {"ctc_weight": 1.0},
        "decoder": None, "specaug": None, "normalize": None,
    }
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "in.yaml").write_text(yaml.safe_dump(cfg))
    args = PinchASRTask.get_parser().parse_args(
        ["--config", str(exp / "in.yaml"), "--output_dir", str(exp)])
    model = PinchASRTask.build_model(args)
    with open(exp / "config.yaml", "w") as f:
        yaml.safe_dump(vars(args), f)
    return model


def test_cli_dense_and_sparse(tiny_ckpt, tmp_path):
    from espnet_pinch.pruning.sparse import save_sparse

    model = write_experiment(tiny_ckpt, tmp_path)
    key = "ctc.ctc_lo.weight"
    with torch.no_grad():
        model.ctc.ctc_lo.weight[:, ::2] = 0
    state = model.state_dict()
    torch.save(state, tmp_path / "model.pth")
    save_sparse(state, [key], tmp_path / "model.sparse.pt")

    dense = main(["--config", str(tmp_path / "config.yaml"), "--model", str(tmp_path / "model.pth"),
                  "--out", str(tmp_path / "macs.json")])
    saved = json.loads((tmp_path / "macs.json").read_text())
    assert saved == dense and saved["macs_per_second"] > 0 and saved["seconds"] == 1.0
    assert {"macs_dense_exec_per_second", "breakdown", "breakdown_dense_exec"} <= set(saved)
    assert saved["breakdown"]["conv"] > 0 and saved["breakdown"]["attention_scores"] > 0
    # Half of ctc_lo is zero: fewer MACs than a dense execution, by exactly that layer's zeros.
    zeros = int((model.ctc.ctc_lo.weight == 0).sum())
    assert saved["macs_dense_exec_per_second"] - saved["macs_per_second"] == 50 * zeros  # 50 frames
    assert saved["macs_per_second"] == macs_per_second(model)["macs_per_second"]

    sparse = main(["--config", str(tmp_path / "config.yaml"),
                   "--model", str(tmp_path / "model.sparse.pt"),
                   "--out", str(tmp_path / "macs_sparse.json")])
    assert sparse == dense


def test_the_counter_imports_nothing_of_the_toolkit():
    """profiling/macs.py is used by the pruners (structured.py imports it at module level), so it
    must not import the task, the pruners or the model (no import cycle)."""
    import subprocess
    import sys

    code = ("import json, sys, espnet_pinch.profiling.macs, espnet_pinch.pruning.structured; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('espnet_pinch.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "espnet_pinch.tasks.asr" not in loaded and "espnet_pinch.bin.macs" not in loaded, loaded
    assert "espnet_pinch.profiling.macs" in loaded
