"""The speedup benchmark runs and reports what it promises (no timing is asserted here)."""
import importlib.util

from ..conftest import ROOT


def test_speedup_reports_keys():
    spec = importlib.util.spec_from_file_location("sp", ROOT / "benchmarks/speedup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.measure("tiny_test", seconds=1.0, target=0.5, repeats=1, warmup=0)
    assert {"dense_seconds", "compact_seconds", "masked_only_seconds", "speedup_measured",
            "speedup_ideal"} <= set(r)
    assert abs(r["achieved_macs_reduction"] - 0.5) < 0.05
    assert r["speedup_ideal"] > 1.5
    assert r["masked_vs_compact_max_abs_diff"] < 1e-4
