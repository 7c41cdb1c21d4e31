"""The deploy benchmark runs end to end on the tiny upstream and reports what it promises: every
model in every runtime, both compact models at about half the MACs, ONNX Runtime fp32 agreeing
with PyTorch (no timing is asserted here)."""
import json
import sys

from ..conftest import ROOT


def test_deploy_reports_every_model_and_runtime(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("deploy", None)
    import deploy

    out = tmp_path / "deploy.json"
    assert deploy.main(["--size", "tiny_test", "--seconds", "1", "--repeats", "1", "--warmup", "0",
                        "--spg_steps", "40", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    models = ("dense", "compact_hj", "compact_spg_struct", "masked_65")
    assert set(r["seconds_median"]) == {f"{m}/{rt}" for m in models for rt in ("torch", "ort_fp32", "ort_int8")}
    dense = r["models"]["dense"]["macs_per_second_dense_exec"]
    for c in ("compact_hj", "compact_spg_struct"):
        assert 0.4 < 1 - r["models"][c]["macs_per_second_dense_exec"] / dense < 0.6, c
        assert r["models"][c]["params"] < r["models"]["dense"]["params"]
    widths = r["models"]["compact_spg_struct"]["widths"]
    assert widths and all(w >= 0 for w in widths.values())
    for m in models:
        assert r["models"][m]["ort_fp32_max_abs_diff_vs_torch"] < 1e-4, m
    assert r["models"]["masked_65"]["nonzero_params"] < 0.5 * r["models"]["dense"]["nonzero_params"]
