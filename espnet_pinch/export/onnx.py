"""ONNX export of a trained model: upstream, encoder and CTC head in one graph.

``CtcGraph`` is the greedy-CTC decode path of ``bin/decode.py`` (``model.encode`` then
``ctc.log_softmax``) for one unpadded utterance, written with tensor operations only, so that
the exported graph keeps a dynamic time axis: S3PRL's forward pads, masks and crops with Python
arithmetic on sizes, which a tracer would freeze to the example's length. What differs from
S3PRL's path is each family's business (``FamilyAdapter.hidden_states``); the rest is here:

  speech (1, samples) float32, 16 kHz, in [-1, 1)
    -> times the scale training fed (``data.dump.input_scale``: 32768 for the stage-3 dumps,
       which ESPnet's kaldi_ark loader hands over as int16 values)
    -> the waveform standardised if the upstream's task says so
    -> hidden states (adapter) -> S3PRLUpstream's length matching (ceil(samples / 320) frames:
       the last conv frame repeated) and optional layer norm -> one layer, or the featurizer's
       softmax-weighted sum
    -> ESPnet's normalize (none in our configs), encoder, CTC log-softmax
    -> log_probs (1, frames, vocab)

``export()`` writes ``model.onnx`` (fp32), optionally ``model.int8.onnx`` (ONNX Runtime's
dynamic quantization of the MatMul/Gemm weights), ``tokens.txt``, ``transcribe.py`` (the ONNX
Runtime-only entry point, ``espnet_pinch/export/transcribe.py``) and a ``README``, and checks the
ONNX Runtime output against PyTorch's on two lengths before it returns.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from espnet_pinch.data.dump import train_input_scale
from espnet_pinch.frontend.s3prl import PinchS3prlFrontend

HOP = 320  # samples per frame of every S3PRL wav2vec2-family upstream
MIN_SAMPLES = 800  # S3PRLUpstream pads shorter input (0.05 s); the export refuses it instead
OPSET = 17  # LayerNormalization is a single op from 17 on
INPUT, OUTPUT = "speech", "log_probs"


class ExportError(ValueError):
    """A model the exporter cannot turn into the CTC graph; the message names the file."""


class CtcGraph(torch.nn.Module):
    """(1, samples) float waveform -> (1, frames, vocab) CTC log-probabilities; see the module
    docstring. ``source`` names the model in errors."""

    def __init__(self, asr_model: torch.nn.Module, source: str = "model", input_scale: float = 1.0):
        super().__init__()
        self.input_scale = float(input_scale)
        fe = getattr(asr_model, "frontend", None)
        if not isinstance(fe, PinchS3prlFrontend):
            raise ExportError(f"{source}: the frontend is {type(fe).__name__}, the exporter "
                              "needs espnet_pinch's S3PRL frontend (frontend: pinch_s3prl)")
        for part in ("normalize", "preencoder", "postencoder"):
            if getattr(asr_model, part, None) is not None:
                raise ExportError(f"{source}: model.{part} is {type(getattr(asr_model, part)).__name__}; "
                                  "the CTC graph supports none")
        if getattr(asr_model, "ctc", None) is None:
            raise ExportError(f"{source}: the model has no CTC head (ctc_weight 0)")
        s3prl_up = fe.upstream
        if set(s3prl_up.downsample_rates) != {HOP}:
            raise ExportError(f"{source}: upstream frame rates {sorted(set(s3prl_up.downsample_rates))}, "
                              f"the export supports {HOP} samples per frame")
        self.ssl = fe.ssl_model
        self.family = fe.adapter
        self.wav_normalize = self.family.normalizes_wav(s3prl_up.upstream)
        self.hs_normalize = bool(s3prl_up.normalize)
        self.dim = fe.output_size()
        self.layer = fe.layer
        self.featurizer = fe.featurizer
        self.encoder = asr_model.encoder
        self.ctc = asr_model.ctc

    def forward(self, speech: torch.Tensor) -> torch.Tensor:
        x = speech * self.input_scale if self.input_scale != 1.0 else speech
        if self.wav_normalize:  # F.layer_norm over the whole waveform, written out: its shape is dynamic
            mean = x.mean(dim=-1, keepdim=True)
            x = (x - mean) / torch.sqrt(((x - mean) ** 2).mean(dim=-1, keepdim=True) + 1e-5)
        hs = self.family.hidden_states(self.ssl, x)
        # S3PRLUpstream: ceil(samples / HOP) frames per hidden state (its _match_length repeats
        # the last frame the convolutions give), then an optional layer norm
        frames = torch.div(speech.shape[1] - 1, HOP, rounding_mode="floor") + 1
        idx = torch.clamp(torch.arange(frames), max=hs[0].shape[1] - 1)
        hs = [h.index_select(1, idx) for h in hs]
        if self.hs_normalize:
            hs = [F.layer_norm(h, (self.dim,)) for h in hs]
        if self.featurizer is None:
            h = hs[self.layer]
        else:
            sel = [hs[i] for i in self.featurizer.layer_selections]
            stacked = torch.stack(sel, dim=0)
            if self.featurizer.normalize:
                stacked = F.layer_norm(stacked, (self.dim,))
            w = F.softmax(self.featurizer.weights, dim=-1)
            h = (w[:, None, None, None] * stacked).sum(dim=0)
        lens = torch.ones(1, dtype=torch.long) * h.shape[1]
        enc = self.encoder(h, lens)[0]
        return self.ctc.log_softmax(enc)


def to_onnx(graph: CtcGraph, path: Path) -> None:
    """Trace ``graph`` on one second of noise into ``path`` (written under a temporary name, then
    renamed), with the time axis of input and output dynamic."""
    import warnings

    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # S3PRL's asserts on sizes: the tracer warns that they are not recorded (they hold for
        # any length; the export is checked on other lengths afterwards)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, (torch.randn(1, 16000),), str(tmp), input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {1: "samples"}, OUTPUT: {1: "frames"}},
                          opset_version=OPSET, dynamo=False)
    tmp.replace(path)


def load_asr_model(train_config: str | Path, model_file: str | Path, work_dir: Path):
    """(ESPnet's Speech2Text, its model in eval mode) from a training config and a model file
    (a sparse export is expanded into ``work_dir``), weights-only."""
    import espnet_pinch.tasks.asr  # noqa: F401  (registers our classes)
    from espnet2.bin.asr_inference import Speech2Text

    from espnet_pinch.bin.asr_inference import dense_model_file
    from espnet_pinch.utils.safe_load import weights_only_loads

    for f in (train_config, model_file):
        if not Path(f).is_file():
            raise FileNotFoundError(f"export: no such file: {f}")
    dense = dense_model_file(str(model_file), work_dir)
    with weights_only_loads():
        s2t = Speech2Text(asr_train_config=str(train_config), asr_model_file=dense, device="cpu",
                          beam_size=1, ctc_weight=1.0, lm_weight=0.0, nbest=1)
    if Path(dense).parent == work_dir and dense != str(model_file):
        Path(dense).unlink()  # the expanded copy of a sparse export
    return s2t, s2t.asr_model.eval()


def ort_session(path: str | Path, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def add_metadata(path: Path, meta: dict) -> None:
    """Write ``meta`` into the ONNX file's metadata (``transcribe.py`` reads the token type)."""
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=str(v))
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(m, str(tmp))
    tmp.replace(path)


def quantize_int8(fp32: Path, out: Path, per_channel: bool = False) -> None:
    """Dynamic int8 quantization (weights int8, one scale per tensor or per output channel;
    activations quantized at run time) of the MatMul / Gemm nodes, ONNX Runtime's tool.
    Measured on wav2vec2-base, 10 s, 2 threads (``benchmarks/int8_modes.py``): per tensor 1.63x
    faster than fp32, per channel 1.50x, with the same largest log-prob change (0.039 / 0.040);
    ONNX Runtime's shape pre-processing made both slower (1.52x / 1.44x); quantizing the
    convolutions too made the model slower than fp32 (0.66x): they stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=["MatMul", "Gemm"])


README = """# {tag}: CTC ASR model for ONNX Runtime

Exported by `espnet_pinch.bin.export` from `{model_file}` (config `{train_config}`) on {date}.

Files:
- `model.onnx`: upstream ({family}), encoder and CTC head, fp32 ({fp32_mb:.2f} MB){int8_line}
- `tokens.txt`: one token per line; the line number (from 0) is the token id; id {blank} is the
  CTC blank; `▁` starts a word (sentencepiece)
- `transcribe.py`: greedy CTC with ONNX Runtime and numpy only (no torch, no espnet):
  `python transcribe.py --model model.onnx --tokens tokens.txt audio.wav` or `--wav_scp wav.scp`

Input `{input}`: float32, shape (1, samples): one utterance, 16 kHz mono, scaled to [-1, 1)
(int16 PCM / 32768; the graph rescales to what training saw: x {scale:g}), at least {min_samples} samples ({min_s:.2f} s). No batching: one utterance per run.
Output `{output}`: float32, shape (1, frames, {vocab}): CTC log-probabilities, frames =
ceil(samples / {hop}) (one frame per {hop_ms:.0f} ms).

Checked at export: ONNX Runtime vs PyTorch, max |difference| of the log-probabilities on
{n_checked} random inputs ({lengths} samples): {max_diff:.2e}.
"""


def export(train_config: str | Path, model_file: str | Path, out_dir: str | Path, *,
           tag: Optional[str] = None, int8: bool = False, threads: int = 2, check_tol: float = 1e-4,
           loaded: Optional[tuple] = None, int8_per_channel: bool = False) -> dict:
    """Export one model into ``out_dir`` (see the module docstring); returns what it wrote and
    measured (also ``out_dir/export.json``). ``loaded``: ``load_asr_model``'s result, when the
    caller has it already. Raises ExportError naming the model on a model the
    graph does not cover, or when ONNX Runtime disagrees with PyTorch beyond ``check_tol``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    s2t, model = loaded or load_asr_model(train_config, model_file, out)
    try:
        scale = train_input_scale(s2t.asr_train_args, str(train_config))
    except ValueError as e:
        raise ExportError(str(e)) from None
    graph = CtcGraph(model, source=str(model_file), input_scale=scale).eval()
    fp32 = out / "model.onnx"
    to_onnx(graph, fp32)
    # the graph must follow the input's length: check two lengths the example did not have
    lengths = [12345, 16000 * 3 + 17]
    sess = ort_session(fp32, threads)
    max_diff = 0.0
    gen = torch.Generator().manual_seed(0)
    for n in lengths:
        x = 0.1 * torch.randn(1, n, generator=gen)
        with torch.no_grad():
            ref = graph(x).numpy()
        got = sess.run(None, {INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{model_file}: ONNX output shape {got.shape} for {n} samples, "
                              f"PyTorch's {ref.shape}: the time axis is not dynamic")
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
    if max_diff > check_tol:
        raise ExportError(f"{model_file}: ONNX Runtime differs from PyTorch by {max_diff:.2e} "
                          f"(tolerance {check_tol:g})")
    tokens = list(s2t.asr_model.token_list)
    meta = {"producer": "espnet_pinch", "family": graph.family.arch, "sample_rate": 16000,
            "token_type": s2t.asr_train_args.token_type, "blank_id": int(model.blank_id),
            "input_scale": scale, "source": str(model_file)}
    add_metadata(fp32, meta)
    (out / "tokens.txt").write_text("".join(f"{t}\n" for t in tokens))
    shutil.copyfile(Path(__file__).with_name("transcribe.py"), out / "transcribe.py")
    info = {"model_file": str(model_file), "train_config": str(train_config), "family": graph.family.arch,
            "opset": OPSET, "vocab": len(tokens), "blank_id": int(model.blank_id), "input_scale": scale,
            "onnx_fp32_bytes": fp32.stat().st_size, "check_lengths": lengths,
            "check_max_abs_diff": max_diff}
    if int8:
        q = out / "model.int8.onnx"
        quantize_int8(fp32, q, int8_per_channel)
        scales = "per channel" if int8_per_channel else "per tensor"
        add_metadata(q, {**meta, "quantization": f"dynamic int8 (MatMul, Gemm), weight scales {scales}"})
        info["onnx_int8_bytes"] = q.stat().st_size
        info["int8_weight_scales"] = scales
    info["export_seconds"] = round(time.perf_counter() - start, 2)
    int8_line = (f"\n- `model.int8.onnx`: the same with int8 MatMul/Gemm weights (dynamic quantization, "
                 f"{info['onnx_int8_bytes'] / 1e6:.2f} MB)" if int8 else "")
    (out / "README").write_text(README.format(
        tag=tag or out.parent.name, model_file=model_file, train_config=train_config,
        date=time.strftime("%Y-%m-%d"), family=graph.family.arch, fp32_mb=info["onnx_fp32_bytes"] / 1e6,
        int8_line=int8_line, blank=info["blank_id"], input=INPUT, output=OUTPUT, min_samples=MIN_SAMPLES,
        min_s=MIN_SAMPLES / 16000, vocab=len(tokens), hop=HOP, hop_ms=HOP / 16, n_checked=len(lengths),
        lengths=" and ".join(map(str, lengths)), max_diff=max_diff, scale=scale))
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    logging.info("export: %s -> %s (%.2f MB fp32%s; ONNX Runtime vs PyTorch max diff %.1e) in %.1f s",
                 model_file, out, info["onnx_fp32_bytes"] / 1e6,
                 f", {info['onnx_int8_bytes'] / 1e6:.2f} MB int8" if int8 else "", max_diff,
                 info["export_seconds"])
    return info
