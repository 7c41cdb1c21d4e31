#!/usr/bin/env python3
"""Transcribe speech with an exported espnet_pinch model: ONNX Runtime and numpy only.

This file is copied next to every export (``model.onnx``, ``tokens.txt``); it imports neither
torch nor espnet, so it is what a user ships with the model:

    pip install onnxruntime numpy
    python transcribe.py --model model.onnx --tokens tokens.txt audio.wav [more.wav ...]
    python transcribe.py --model model.onnx --tokens tokens.txt --wav_scp wav.scp > hyp.txt

Audio: 16 kHz, mono, 16-bit PCM WAV files, or a Kaldi ``wav.scp`` whose entries are WAV files
or offsets into Kaldi archives holding WAV data (``dump/<set>/wav.ark:123``, as the recipe's
stage 3 writes). Output: one ``<utterance id> <text>`` line per utterance on stdout (the id of a
file given directly is its path). Greedy CTC: the most likely token per frame, repeats merged,
blanks dropped, sentencepiece's ``▁`` turned into spaces.

Errors name the file (and the wav.scp line): a missing model or token list, a model whose input
or output is not the exporter's (``speech`` (1, samples) -> ``log_probs`` (1, frames, vocab)) or
whose vocabulary differs from the token list, audio at another sample rate, with several channels
or not 16-bit PCM, audio shorter than 0.05 s.
"""
from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np

RATE = 16000
MIN_SAMPLES = 800
BLANK = "<blank>"
DROPPED = {"<blank>", "<sos/eos>"}  # as bin/decode.py's greedy search (<unk> stays, as text)


class InputError(ValueError):
    """Bad input; the message names the file (and line)."""


def read_wav(f, name: str) -> np.ndarray:
    """float32 samples in [-1, 1) of a 16 kHz mono 16-bit PCM WAV stream."""
    try:
        with wave.open(f, "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            data = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise InputError(f"{name}: not a PCM WAV file ({e})") from None
    if rate != RATE:
        raise InputError(f"{name}: sample rate {rate} Hz; the model takes {RATE} Hz (resample first, "
                         f"e.g. sox in.wav -r {RATE} out.wav)")
    if channels != 1:
        raise InputError(f"{name}: {channels} channels; the model takes mono audio (e.g. sox in.wav -c 1 out.wav)")
    if width != 2:
        raise InputError(f"{name}: {8 * width}-bit samples; 16-bit PCM expected")
    x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if x.size < MIN_SAMPLES:
        raise InputError(f"{name}: {x.size} samples; the model needs at least {MIN_SAMPLES} (0.05 s)")
    return x


def read_scp(path: str) -> list[tuple[str, np.ndarray]]:
    """(utterance id, samples) of every line of a Kaldi wav.scp (WAV files or ark offsets)."""
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            where = f"{path}:{lineno}"
            if len(parts) != 2:
                raise InputError(f"{where}: expected '<utterance id> <wav file or ark:offset>'")
            utt, src = parts
            if src.endswith("|"):
                raise InputError(f"{where}: a command pipe ({src}); give WAV files or Kaldi archives")
            base, sep, offset = src.rpartition(":")
            if sep and offset.isdigit() and not Path(src).exists():  # archive.ark:offset
                if not Path(base).is_file():
                    raise InputError(f"{where}: no such archive {base}")
                with open(base, "rb") as ark:
                    ark.seek(int(offset))
                    out.append((utt, read_wav(ark, f"{where} ({src})")))
            else:
                if not Path(src).is_file():
                    raise InputError(f"{where}: no such file {src}")
                out.append((utt, read_wav(src, f"{where} ({src})")))
    return out


def tokens_to_text(pieces: list[str], token_type: str) -> str:
    """Text of token strings as ESPnet's tokenizers write it: the char tokenizer turns <space>
    into a space; sentencepiece (bpe, unigram, and char models) turns word markers into spaces,
    drops the markers before the first other piece and writes <unk> as " \u2047 " (its DecodePieces)."""
    if token_type == "char":
        return "".join(" " if p == "<space>" else p for p in pieces)
    text = "".join(" \u2047 " if p == "<unk>" else p for p in pieces)
    return text.lstrip("▁").replace("▁", " ")


class Transcriber:
    """Greedy CTC with an exported model (``model.onnx`` / ``model.int8.onnx``) on ONNX Runtime."""

    def __init__(self, model: str, tokens: str, threads: int = 2):
        import onnxruntime as ort

        for f, what in ((model, "model"), (tokens, "token list")):
            if not Path(f).is_file():
                raise InputError(f"{f}: no such {what} file")
        self.tokens = Path(tokens).read_text(encoding="utf-8").split("\n")[:-1]
        if not self.tokens or self.tokens[0] != BLANK:
            raise InputError(f"{tokens}: the first token must be {BLANK} (the exporter's tokens.txt)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise InputError(f"{model}: ONNX Runtime cannot load it ({e})") from None
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in ins] != ["speech"] or len(ins[0].shape) != 2 or [o.name for o in outs] != ["log_probs"]:
            raise InputError(f"{model}: not an espnet_pinch CTC export (inputs {[i.name for i in ins]}, "
                             f"outputs {[o.name for o in outs]}; expected speech -> log_probs)")
        meta = self.session.get_modelmeta().custom_metadata_map  # written by the exporter
        self.token_type = meta.get("token_type", "bpe")
        if meta.get("sample_rate", str(RATE)) != str(RATE):
            raise InputError(f"{model}: a model for {meta['sample_rate']} Hz audio; this script reads {RATE} Hz")
        vocab = outs[0].shape[-1]
        if isinstance(vocab, int) and vocab != len(self.tokens):
            raise InputError(f"{model}: {vocab} output classes, but {tokens} lists {len(self.tokens)} "
                             "tokens: a token list of another model")

    def log_probs(self, samples: np.ndarray) -> np.ndarray:
        """(frames, vocab) CTC log-probabilities of one utterance."""
        return self.session.run(None, {"speech": samples[None, :].astype(np.float32)})[0][0]

    def __call__(self, samples: np.ndarray) -> str:
        return self.greedy(self.log_probs(samples))

    def greedy(self, log_probs: np.ndarray) -> str:
        """Best-path CTC text of (frames, vocab) log-probabilities."""
        ids = log_probs.argmax(-1)
        keep = np.ones(len(ids), dtype=bool)
        keep[1:] = ids[1:] != ids[:-1]
        return tokens_to_text([self.tokens[i] for i in ids[keep] if self.tokens[i] not in DROPPED],
                              self.token_type)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="model.onnx", help="the exported model (default: model.onnx)")
    p.add_argument("--tokens", default="tokens.txt", help="its token list (default: tokens.txt)")
    p.add_argument("--wav_scp", help="a Kaldi wav.scp to transcribe")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("wavs", nargs="*", help="WAV files to transcribe")
    args = p.parse_args(argv)
    if not args.wav_scp and not args.wavs:
        p.error("give WAV files or --wav_scp")
    try:
        asr = Transcriber(args.model, args.tokens, args.threads)
        utts = read_scp(args.wav_scp) if args.wav_scp else []
        for w in args.wavs:
            if not Path(w).is_file():
                raise InputError(f"{w}: no such file")
            utts.append((w, read_wav(w, w)))
        for utt, samples in utts:
            print(f"{utt} {asr(samples)}", flush=True)
    except InputError as e:
        print(f"transcribe.py: {e}", file=sys.stderr)
        return 2
    return 0



if __name__ == "__main__":
    sys.exit(main())
