"""SPG through ESPnet's model and task: config selection, loading dense weights, finalize/export."""
import argparse
from pathlib import Path

import pytest
import torch
import yaml

from espnet_pinch.data.dump import train_input_scale
from espnet_pinch.tasks.asr import PinchASRTask
from tests.numerics import assert_same_function

TOKENS = ["<blank>", "<unk>", "\u2581", "A", "B", "C", "<sos/eos>"]


def build_args(ckpt, tmp_path: Path, pruner="spg", pruner_conf=None,
               upstream="wav2vec2_local") -> argparse.Namespace:
    parser = PinchASRTask.get_parser()
    cfg = {
        "token_list": TOKENS, "input_size": None, "frontend": "s3prl_pinch",
        "frontend_conf": {"upstream": upstream, "path_or_url": str(ckpt)},
        "encoder": "linear", "model": "pinch", "model_conf": {"ctc_weight": 1.0},
        "pruner": pruner, "pruner_conf": pruner_conf or {"target_sparsity": 0.5, "warmup_steps": 0},
        "decoder": None, "specaug": None, "normalize": None,
        # as the recipe trains: the stage-3 dump (int16 PCM, so samples in [-32768, 32768))
        "train_data_path_and_name_and_type": [["dump/train/wav.scp", "speech", "kaldi_ark"]],
    }
    conf = tmp_path / "config.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    return parser.parse_args(["--config", str(conf), "--output_dir", str(tmp_path)])


def masked_then_finalize(model, args, exp: Path, b: dict):
    """(the model's eval output on batch ``b`` with its current masks, bin.finalize's summary)
    after saving the model and its config into ``exp`` as a training run would."""
    from espnet_pinch.bin.finalize import finalize

    model.eval()
    with torch.no_grad():
        model.pruner.before_forward()
        masked, _ = model.encode(b["speech"], b["speech_lengths"])
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    return masked, finalize(exp, "model.pth", exp / "final")


def batch():
    torch.manual_seed(0)
    return dict(speech=torch.randn(2, 16000), speech_lengths=torch.tensor([16000, 12000]),
                text=torch.tensor([[3, 4, 5], [4, 5, 0]]), text_lengths=torch.tensor([3, 2]))


def test_pruner_selected_by_config_and_logged(tiny_ckpt, tmp_path):
    model = PinchASRTask.build_model(build_args(tiny_ckpt, tmp_path))
    assert type(model.pruner).__name__ == "SPGPruner"
    gated = list(model.pruner.layers)
    assert "encoder.layers.0.self_attn.q_proj" in gated and "ctc.ctc_lo" not in gated
    assert model.pruner.num_extra_params() == len(gated)
    model.train()
    loss, stats, _ = model(**batch())
    assert {"loss_ctc", "loss_sparsity", "sparsity", "target_sparsity"} <= set(stats)
    loss.backward()
    q = model.frontend.ssl_model.encoder.layers[0].self_attn.q_proj
    assert q.parametrizations.weight[0].threshold.grad is not None


def test_sgd_thresholds_get_their_own_group_in_the_models_optimizer(tiny_ckpt, tmp_path):
    conf = {"target_sparsity": 0.5, "warmup_steps": 0, "threshold_step": "sgd", "threshold_lr": 3.0}
    args = build_args(tiny_ckpt, tmp_path, pruner_conf=conf)
    model = PinchASRTask.build_model(args)
    (opt,) = PinchASRTask.build_optimizers(args, model)
    thresholds = {id(g.threshold) for _, g, _ in model.pruner.gates()}
    main, own = opt.param_groups
    assert {id(p) for p in own["params"]} == thresholds and own["plain_sgd"] and own["lr"] == 3.0
    assert not thresholds & {id(p) for p in main["params"]}
    assert len(main["params"]) + len(thresholds) == len(list(model.parameters()))
    args = build_args(tiny_ckpt, tmp_path)  # the default: one optimizer over everything
    (opt,) = PinchASRTask.build_optimizers(args, PinchASRTask.build_model(args))
    assert len(opt.param_groups) == 1


def test_budget_relative_thresholds_get_their_own_scaled_group(tiny_ckpt, tmp_path):
    """SPG's thresholds live in the layers' parametrizations, not in the pruner module: the
    budget-scaled group must still hold exactly them (pruning/lagrangian.py)."""
    conf = {"target_sparsity": 0.5, "warmup_steps": 0, "budget_ref_steps": 188}
    args = build_args(tiny_ckpt, tmp_path, pruner_conf=conf)
    model = PinchASRTask.build_model(args)
    (opt,) = PinchASRTask.build_optimizers(args, model)
    thresholds = {id(g.threshold) for _, g, _ in model.pruner.gates()}
    main, own = opt.param_groups
    assert {id(p) for p in own["params"]} == thresholds and own["budget_scaled"]
    assert not own.get("plain_sgd") and own["lr"] == main["lr"]  # Adam, scaled only when bound
    assert len(main["params"]) + len(thresholds) == len(list(model.parameters()))


def test_unknown_pruner_key_is_reported(tiny_ckpt, tmp_path):
    with pytest.raises(ValueError, match="pruner_conf"):
        PinchASRTask.build_model(build_args(tiny_ckpt, tmp_path, pruner_conf={"sparsity_goal": 1}))


def test_ctc_head_can_be_gated(tiny_ckpt, tmp_path):
    args = build_args(tiny_ckpt, tmp_path, pruner_conf={"layers": ["encoder.layers.*.fc1", "ctc.ctc_lo"]})
    model = PinchASRTask.build_model(args)
    assert list(model.pruner.layers) == ["encoder.layers.0.fc1", "encoder.layers.1.fc1", "ctc.ctc_lo"]


def test_dense_weights_load_into_gated_model_and_export_matches(tiny_ckpt, tmp_path):
    from espnet_pinch.bin.finalize import finalize

    dense = PinchASRTask.build_model(build_args(tiny_ckpt, tmp_path, pruner=None))
    with torch.no_grad():
        for p in dense.parameters():
            p.add_(0.01 * torch.randn_like(p))
    torch.save(dense.state_dict(), tmp_path / "dense.pth")

    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(tiny_ckpt, exp, pruner_conf={"target_sparsity": 0.6, "warmup_steps": 0})
    model = PinchASRTask.build_model(args)
    # What ESPnet's --init_param does; dense keys "x.weight" map to the gated "x...original".
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    load_pretrained_model(str(tmp_path / "dense.pth"), model, ignore_init_mismatch=False)
    q = "frontend.upstream.upstream.model.encoder.layers.0.self_attn.q_proj"
    torch.testing.assert_close(model.state_dict()[q + ".parametrizations.weight.original"],
                               dense.state_dict()[q + ".weight"])
    model.pruner.before_forward()  # calibrates on the loaded weights
    for _, gate, w in model.pruner.gates():  # then prune about 60% of every layer
        gate.threshold.data.fill_(w.abs().flatten().quantile(0.6) / (gate.gain * gate.scale.sqrt()))
    model.eval()
    b = batch()
    with torch.no_grad():
        masked, _ = model.encode(b["speech"], b["speech_lengths"])
    torch.save(model.state_dict(), exp / "model.pth")
    with open(exp / "config.yaml", "w") as f:
        yaml.safe_dump(vars(args), f)
    summary = finalize(exp, "model.pth", exp / "final")
    assert abs(summary["sparsity"] - 0.6) < 0.01
    assert summary["bytes_sparse"] < summary["bytes_dense"]

    # The export loads as an ordinary model (no pruner) and gives the masked model's output.
    from espnet_pinch.pruning.sparse import load_sparse

    cfg = yaml.safe_load((exp / "final/config.yaml").read_text())
    assert cfg["pruner"] is None
    # the data entries go (a fine-tuning run appends its own); the scale of their audio stays
    assert "train_data_path_and_name_and_type" not in cfg
    assert train_input_scale(argparse.Namespace(**cfg), "final") == 32768.0
    loaded = PinchASRTask.build_model(argparse.Namespace(**cfg)).eval()
    loaded.load_state_dict(load_sparse(exp / "final/model.sparse.pt"))
    assert loaded.pruner is None
    # What the export promises bit for bit: the stored weights are exactly the masked weights
    # (the kept values unchanged, the rest zero). The outputs come through another code path
    # (plain weights instead of the parametrization), so they agree to float32 rounding.
    names = {id(m): n for n, m in model.named_modules()}
    effective = {names[id(layer)]: layer.weight.detach() for layer in model.pruner.layers.values()}
    for name, w in effective.items():
        stored = loaded.state_dict()[name + ".weight"]
        # bit for bit, the sign of zero included (the masks write +0.0, as the export does)
        assert torch.equal(stored.view(torch.int32), w.view(torch.int32)), name
    with torch.no_grad():
        out, _ = loaded.encode(b["speech"], b["speech_lengths"])
    assert_same_function(out, masked)
