"""Shared fixtures: a tiny random upstream checkpoint and the AN4 corpus beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("PINCH_TEST_THREADS", "2")))

ROOT = Path(__file__).resolve().parents[1]
AN4 = Path(os.environ.get("AN4", ROOT.parent / "shared" / "data" / "an4"))
TINY = ROOT / "conf" / "upstream" / "tiny_test.yaml"


@pytest.fixture(scope="session")
def an4() -> Path:
    if not (AN4 / "etc").is_dir():
        pytest.skip(f"AN4 corpus not found at {AN4} (set AN4=...)")
    return AN4


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from espnet_pinch.upstream.build import make_upstream

    return make_upstream(TINY, tmp_path_factory.mktemp("upstream") / "tiny.pt", seed=0)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long end-to-end runs (not in the default CI run)")


@pytest.fixture(scope="session")
def tiny_hubert_ckpt(tmp_path_factory) -> Path:
    """The tiny size as a HuBERT checkpoint (stands in for hubert_large_ll60k offline)."""
    from espnet_pinch.upstream.build import load_size_config, make_upstream

    cfg = load_size_config(TINY)
    cfg = {**cfg, "arch": "hubert", "model_cfg": {**cfg["model_cfg"], "label_rate": 50},
           "task_cfg": {"label_rate": 50}}
    return make_upstream(cfg, tmp_path_factory.mktemp("upstream") / "tiny_hubert.pt", seed=0)


@pytest.fixture(scope="session")
def tiny_wavlm_ckpt(tmp_path_factory) -> Path:
    """A tiny WavLM (gated relative position bias) as S3PRL's wavlm_local checkpoint."""
    from espnet_pinch.upstream.build import make_upstream

    return make_upstream(TINY.parent / "wavlm_tiny_test.yaml",
                         tmp_path_factory.mktemp("upstream") / "tiny_wavlm.pt", seed=0)
