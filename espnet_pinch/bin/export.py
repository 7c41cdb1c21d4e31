"""Export one trained model to ONNX (``espnet_pinch.export.onnx``) and measure the export.

Usage: python -m espnet_pinch.bin.export --asr_train_config exp/x/config.yaml \
    --asr_model_file exp/x/latest.pth --out exp/x/export --int8 \
    [--set test dump/test/wav.scp dump/test/text ...] [--threads 2]

Writes ``<out>/{model.onnx, model.int8.onnx, tokens.txt, transcribe.py, README, export.json}``.
Each ``--set NAME WAV_SCP TEXT`` is then transcribed with the shipped entry point
(``transcribe.py``'s Transcriber, ONNX Runtime only) with the fp32 and the int8 model, and
scored; for the fp32 model every utterance's CTC log-probabilities are compared with PyTorch's
decode path (``model.encode`` + ``ctc.log_softmax``, as ``bin/decode.py``'s greedy search): the
largest difference, the utterances where some frame's best token differs, and among them those
where PyTorch's margin between its two best tokens exceeded twice that frame's difference (a
flip no rounding explains: 0 unless the graph is wrong). Barely trained models have near-ties
everywhere, so their transcripts, and WER, can differ from PyTorch's by rounding alone.
All of it goes to ``<out>/onnx.json``: per model kind, bytes on disk, WER/CER per set, decode
seconds and real-time factor (ONNX Runtime run time over the audio; loading excluded), and the
largest log-probability difference to PyTorch per set; hypotheses to
``<out>/decode_<set>_<kind>/text``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from espnet_pinch.export.onnx import ExportError, export, load_asr_model
from espnet_pinch.export.transcribe import InputError, Transcriber, read_scp
from espnet_pinch.data.kaldi_dir import read_scp as read_text
from espnet_pinch.scoring.score import score
from espnet_pinch.utils.atomic import write_json
from espnet_pinch.utils.safe_load import UnsafeCheckpointError


@torch.no_grad()
def torch_log_probs(model, samples: np.ndarray, scale: float) -> np.ndarray:
    """(frames, vocab): the PyTorch decode path of ``bin/decode.py`` on one utterance of
    ``samples`` in [-1, 1), fed at the scale training saw (``data.dump.input_scale``)."""
    x = torch.from_numpy(samples * np.float32(scale))[None]
    enc, _ = model.encode(x, torch.tensor([x.shape[1]]))
    if isinstance(enc, tuple):
        enc = enc[0]
    return model.ctc.log_softmax(enc)[0].numpy()


def evaluate(out: Path, kind: str, onnx_file: Path, tokens: Path, sets: list, threads: int,
             model=None, scale: float = 1.0) -> dict:
    """Transcribe and score every set with one exported model; with ``model`` (the PyTorch
    model), also the largest |log-prob difference| per set."""
    asr = Transcriber(str(onnx_file), str(tokens), threads)
    res = {"bytes": onnx_file.stat().st_size, "wer": {}, "cer": {}, "decode_seconds": {}, "rtf": {}}
    if model is not None:
        res.update({"max_abs_diff_vs_torch": {}, "utts_argmax_differ": {}, "utts_differ_unexplained": {}})
    for name, wav_scp, text in sets:
        utts = read_scp(wav_scp)
        hyp, seconds, diff, differ, unexplained = {}, 0.0, 0.0, 0, 0
        for utt, samples in utts:
            start = time.perf_counter()
            lp = asr.log_probs(samples)
            hyp[utt] = asr.greedy(lp)
            seconds += time.perf_counter() - start
            if model is not None:
                ref = torch_log_probs(model, samples, scale)
                d = np.abs(lp - ref)
                diff = max(diff, float(d.max()))
                flips = lp.argmax(-1) != ref.argmax(-1)
                if flips.any():  # a near-tie in PyTorch's own log-probs explains a flipped frame
                    differ += 1
                    top2 = np.sort(ref[flips], -1)[:, -2:]
                    unexplained += bool(((top2[:, 1] - top2[:, 0]) > 2 * d[flips].max(-1)).any())
        audio = sum(len(s) for _, s in utts) / 16000.0
        d = out / f"decode_{name}_{kind}"
        d.mkdir(exist_ok=True)
        (d / "text").write_text("".join(f"{u} {h}\n" for u, h in hyp.items()))
        summary, _ = score(read_text(text), hyp)
        res["wer"][name], res["cer"][name] = round(summary["wer"], 2), round(summary["cer"], 2)
        res["decode_seconds"][name] = round(seconds, 3)
        res["rtf"][name] = round(seconds / audio, 5)
        if model is not None:
            res["max_abs_diff_vs_torch"][name] = diff
            res["utts_argmax_differ"][name] = differ
            res["utts_differ_unexplained"][name] = unexplained
        logging.info("export: %s %s on %s: WER %.2f, RTF %.4f%s", onnx_file.name, kind, name,
                     summary["wer"], seconds / audio,
                     f", max |log-prob - PyTorch's| {diff:.1e}" if model is not None else "")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True, help="model file (a sparse export too)")
    p.add_argument("--out", required=True, help="export directory (created)")
    p.add_argument("--tag", help="the model's name in the README (default: the parent dir's name)")
    p.add_argument("--int8", action="store_true", help="also model.int8.onnx (dynamic quantization)")
    p.add_argument("--int8_per_channel", action="store_true",
                   help="int8 weight scales per output channel (default: per tensor, faster here)")
    p.add_argument("--set", nargs=3, action="append", default=[], metavar=("NAME", "WAV_SCP", "TEXT"),
                   help="a data set to transcribe and score with the exported model(s) (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime / torch threads")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        loaded = load_asr_model(args.asr_train_config, args.asr_model_file, out)  # once for both
        model = loaded[1]
        info = export(args.asr_train_config, args.asr_model_file, out, tag=args.tag, int8=args.int8,
                      int8_per_channel=args.int8_per_channel,
                      threads=args.threads, loaded=loaded)
        if args.set:
            res = {"export": info, "fp32": evaluate(out, "fp32", out / "model.onnx", out / "tokens.txt",
                                                    args.set, args.threads, model, info["input_scale"])}
            if args.int8:
                res["int8"] = evaluate(out, "int8", out / "model.int8.onnx", out / "tokens.txt",
                                       args.set, args.threads)
            write_json(out / "onnx.json", res)
    except (ExportError, InputError, FileNotFoundError, UnsafeCheckpointError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)  # the line the recipe's fail() quotes
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
