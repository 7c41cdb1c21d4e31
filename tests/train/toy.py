"""A toy training setup for trainer-level tests: random-noise utterances dumped as the recipe dumps
them, a character token list, and a config per pruning method on the tiny upstream."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

TOKENS = ["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]

# Per-method pruning blocks, sized so that a few steps move every part of the state.
PRUNERS = {
    "spg": {"target_sparsity": 0.5, "warmup_steps": 4},
    "ump": {"target_sparsity": 0.5},
    "nascp": {"target_sparsity": 0.5, "tau_steps": 4},
    "hj": {"target_sparsity": 0.5, "alpha_lr_scale": 40.0, "warmup_steps": 4},
}


def make_data(root: Path, n: int = 8, seconds: float = 0.5, seed: int = 0) -> Path:
    """``n`` noise utterances with 2-3 letter texts -> ``root/dump`` (wav.scp ark, text, shapes)."""
    import soundfile

    from espnet_pinch.data.dump import dump
    from espnet_pinch.data.kaldi_dir import Utterance, write_kaldi_dir

    rng = np.random.default_rng(seed)
    wavs = root / "wav"
    wavs.mkdir(parents=True, exist_ok=True)
    utts = []
    for i in range(n):
        path = wavs / f"u{i:03d}.wav"
        soundfile.write(path, (rng.standard_normal(int(16000 * seconds)) * 3000).astype(np.int16), 16000)
        text = "".join(rng.choice(list("ABC"), size=2 + i % 2))
        utts.append(Utterance(f"spk{i % 2}-u{i:03d}", f"spk{i % 2}", str(path), text))
    write_kaldi_dir(root / "data", utts)
    dump(root / "data", root / "dump")
    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    return root / "dump"


def write_config(path: Path, ckpt: Path, pruner: str | None, pruner_conf: dict | None = None,
                 **extra) -> Path:
    cfg = {
        "frontend": "s3prl_pinch",
        "frontend_conf": {"upstream": "wav2vec2_local", "path_or_url": str(ckpt), "apply_mask": False},
        "normalize": None, "encoder": "linear", "encoder_conf": {"dropout": 0.1},
        "model": "pinch", "model_conf": {"ctc_weight": 1.0, "report_cer": False, "report_wer": False},
        "optim": "adamw", "optim_conf": {"lr": 0.002},
        "batch_type": "unsorted", "batch_size": 2, "max_epoch": 2, "num_workers": 0,
        "best_model_criterion": [["valid", "loss", "min"]], "keep_nbest_models": 1,
        "num_att_plot": 0, "use_tensorboard": False, "log_interval": 1,
    }
    if pruner is not None:
        cfg["pruner"], cfg["pruner_conf"] = pruner, dict(pruner_conf or PRUNERS[pruner])
    cfg.update(extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def data_args(dump: Path) -> list[str]:
    """ESPnet's train and valid data options, both on the dumped set ``dump``."""
    out = []
    for phase in ("train", "valid"):
        out += [f"--{phase}_data_path_and_name_and_type", f"{dump}/wav.scp,speech,kaldi_ark",
                f"--{phase}_data_path_and_name_and_type", f"{dump}/text,text,text",
                f"--{phase}_shape_file", f"{dump}/utt2num_samples"]
    return out


def train_args(config: Path, dump: Path, tokens: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "espnet_pinch.bin.asr_train", "--config", str(config),
            "--output_dir", str(out), "--token_type", "char", "--token_list", str(tokens),
            "--use_preprocessor", "true", "--ngpu", "0", "--seed", "0", "--resume", "true",
            *data_args(dump), *extra]


def env(threads: int = 1) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=kw.pop("env", env()), **kw)
