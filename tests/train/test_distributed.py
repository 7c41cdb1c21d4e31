"""Distributed training (what --ngpu N does on a GPU node) on 2 CPU processes with gloo: the
pruning state (gates, thresholds, architecture weights, Lagrange multipliers, step counters) is
identical on both ranks after a few steps, for every method."""
import re
import subprocess

import pytest
import torch

from espnet_pinch.utils.safe_load import load_checkpoint

from . import toy


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return toy.make_data(root, n=8), root / "tokens.txt"


def run_two_ranks(cmd: list[str], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    port = str(toy.free_port())
    procs = []
    for rank in range(2):
        env = {**toy.env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "WORLD_SIZE": "2", "RANK": str(rank)}
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(subprocess.CompletedProcess(p.args, p.returncode, out, ""))
    return outs


@pytest.mark.parametrize("method", ["spg", "ump", "nascp", "hj"])
def test_pruning_state_identical_across_two_gloo_ranks(method, data, tiny_ckpt, tmp_path):
    dump, tokens = data
    config = toy.write_config(tmp_path / "config.yaml", tiny_ckpt, method, max_epoch=1)
    out = tmp_path / "exp"
    cmd = toy.train_args(config, dump, tokens, out, "--dist_backend", "gloo",
                         "--multiprocessing_distributed", "false")
    r0, r1 = run_two_ranks(cmd)
    assert r0.returncode == 0 and r1.returncode == 0, r0.stdout[-3000:] + r1.stdout[-3000:]
    # ESPnet ran distributed: each global batch of 2 was split over the ranks (4 steps, not 8).
    assert ":0/2]" in r0.stdout
    assert "1epoch:train:4-4batch" in r0.stdout and "1epoch:train:5-5batch" not in r0.stdout

    states = [load_checkpoint(out / "pruning_state" / f"rank{r}.pt") for r in range(2)]
    assert states[0].keys() == states[1].keys() and len(states[0]) > 0
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    # ... and the state really moved during those steps (so equality is not trivial).
    if method == "ump":
        assert bool(states[0]["pruner.pruned"])  # the masks were set at the first step
    else:
        assert int(states[0]["pruner.step"]) == 4
        lambdas = [v for k, v in states[0].items() if k.rsplit(".", 1)[-1].startswith("lambda1")]
        assert lambdas and any(float(v) != 0.0 for v in lambdas)
    m = re.search(r"pruning state across 2 ranks: max \|rank r - rank 0\| = (\S+)", r0.stdout)
    assert m and float(m.group(1)) == 0.0, r0.stdout[-2000:]
