"""The benchmark script runs and reports what it promises (no timing is asserted here)."""
import importlib.util

import pytest

from ..conftest import ROOT


def test_gate_overhead_reports_keys(tmp_path):
    spec = importlib.util.spec_from_file_location("go", ROOT / "benchmarks/gate_overhead.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.measure("tiny_test", warmup=0, steps=1)
    assert {"dense_step_seconds", "spg_step_seconds", "ratio"} <= set(r)
    assert r["dense_step_seconds"] > 0
    # the ratio is of the unrounded medians; the reported seconds are rounded to 0.1 ms
    assert r["ratio"] == pytest.approx(r["spg_step_seconds"] / r["dense_step_seconds"], rel=0.02)
    assert r["gated_params"] > 0
