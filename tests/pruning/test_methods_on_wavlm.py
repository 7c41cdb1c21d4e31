"""Every pruning method on a WavLM upstream (S3PRL ``wavlm_local``), inside the ESPnet model: a
training step, finalize, and the exported model loading on its own with the masked model's
outputs (structured methods: physically compacted, WavLM heads included)."""
import shutil

import pytest
import torch
import yaml

from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import batch, build_args, masked_then_finalize

CONFS = {
    # no snap (tolerance 1): the exported model must compute what the masked one computed
    "spg": {"target_sparsity": 0.5, "warmup_steps": 0, "init_threshold": 0.7, "finalize_tolerance": 1.0},
    "ump": {"target_sparsity": 0.5},
    "nascp": {"target_sparsity": 0.4, "finalize_tolerance": 1.0},
    "hj": {"target_sparsity": 0.4, "finalize_tolerance": 1.0},
    "hj_macs": {"target_sparsity": 0.4, "target_on": "macs", "finalize_tolerance": 1.0},
}


@pytest.mark.parametrize("method", sorted(CONFS))
def test_method_trains_finalizes_and_exports_on_wavlm(method, tiny_wavlm_ckpt, tmp_path):
    from espnet_pinch.pruning.sparse import load_sparse

    own = tmp_path / "upstream.pt"  # the export must not need it: deleted before reloading
    shutil.copy(tiny_wavlm_ckpt, own)
    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(own, exp, pruner=method.split("_")[0], pruner_conf=CONFS[method],
                      upstream="wavlm_local")
    model = PinchASRTask.build_model(args)
    assert type(model.frontend.adapter).__name__ == "WavLMAdapter"
    b = batch()
    loss, stats, _ = model(**b)
    loss.backward()
    assert "sparsity" in stats
    grads = [p.grad for p in model.frontend.ssl_model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    torch.manual_seed(3)
    with torch.no_grad():  # the structured methods' choices as training could leave them
        for g in getattr(model.pruner, "gates", {}).values() if method.startswith("hj") else []:
            g.set_log_alpha(torch.randn(g.raw.shape) * 3)
        for a in getattr(model.pruner, "alpha", {}).values():
            a.normal_()
    masked, summary = masked_then_finalize(model, args, exp, b)
    own.unlink()
    assert summary["sparsity"] > 0.1 and summary["snap_changed_units"] == 0
    if summary["structured"]:
        assert summary["compact_max_abs_diff"] < 1e-4
        net, _ = PinchASRTask.build_model_from_file(exp / "final/config.yaml", exp / "final/model.pth", "cpu")
        assert len(summary["arch"]["kept_heads"]) == 2
    else:
        with torch.no_grad():  # the fine-grained methods' masked model is the export
            masked, _ = model.encode(b["speech"], b["speech_lengths"])
        cfg = yaml.safe_load((exp / "final/config.yaml").read_text())
        cfg["frontend_conf"]["path_or_url"] = str(tiny_wavlm_ckpt)  # architecture only
        import argparse

        net = PinchASRTask.build_model(argparse.Namespace(**cfg))
        net.load_state_dict(load_sparse(exp / "final/model.sparse.pt"))
    with torch.no_grad():
        out, _ = net.eval().encode(b["speech"], b["speech_lengths"])
    assert (out - masked).abs().max() < 1e-4
