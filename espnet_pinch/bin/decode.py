"""Decode one model on one or more data sets in one process: greedy CTC or ESPnet's beam search.

Usage: python -m espnet_pinch.bin.decode --config conf/decode.yaml \
    --asr_train_config exp/x/config.yaml --asr_model_file exp/x/latest.pth \
    --set dump/dev/wav.scp exp/x/decode_dev/raw --set dump/test/wav.scp exp/x/decode_test/raw

The decoding config (YAML) chooses the search with ``search``:
  greedy  best-path CTC: the most likely token per frame, repeats merged, blanks dropped. The
          decode a CTC-only model ships with (no LM, no attention decoder to rescore), and the
          one that measures the model rather than the search: with beam search over a CTC prefix
          scorer, search time dominated AN4's decoding (RTF 0.21 for the dense model, the same
          for a model with 0.55 of its MACs). One utterance at a time, as ESPnet decodes, so that
          no padding reaches the upstream's normalisation layers.
  beam    ESPnet's beam search (``espnet2.bin.asr_inference``) with the config's other keys
          (``beam_size``, ``ctc_weight``, ``lm_weight``, ``penalty``, ``nbest``, ...).
Each ``--set WAV_SCP OUTPUT_DIR`` is decoded into ESPnet's layout,
``OUTPUT_DIR/1best_recog/{text,token,token_int,score}``, plus ``OUTPUT_DIR/timing.json``
(``decode_seconds``: loading the model and decoding that set; not Python start-up and imports,
which one process per model pays once instead of once per set). ``--asr_model_file`` may be a
sparse export (``*.sparse.pt``, see ``bin.asr_inference``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from itertools import groupby
from pathlib import Path

import torch
import yaml

from espnet_pinch.bin import asr_inference
from espnet_pinch.data.dump import input_scale, train_input_scale
from espnet_pinch.utils.safe_load import check_checkpoint, weights_only_loads

SEARCHES = ("greedy", "beam")


def read_config(path: str | Path) -> dict:
    """The decoding config: a mapping with ``search`` (default ``beam``, ESPnet's behaviour)."""
    conf = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: a decoding config must be a mapping of options, got {type(conf).__name__}")
    search = conf.get("search", "beam")
    if search not in SEARCHES:
        raise ValueError(f"{path}: search must be one of {SEARCHES}, got {search!r}")
    return conf


@torch.no_grad()
def greedy_ctc(speech2text, speech: torch.Tensor) -> tuple[list[int], float]:
    """Best-path CTC of one utterance: (token ids without blanks and repeats, its log-probability)."""
    model = speech2text.asr_model
    x = speech.unsqueeze(0).to(torch.float32)
    enc, _ = model.encode(x, x.new_full([1], x.size(1), dtype=torch.long))
    if isinstance(enc, tuple):  # (final output, intermediate CTC outputs)
        enc = enc[0]
    best, ids = model.ctc.log_softmax(enc)[0].max(dim=-1)
    drop = {model.blank_id, model.sos, model.eos}
    tokens = [int(t) for t, _ in groupby(ids.tolist()) if int(t) not in drop]
    return tokens, float(best.sum())


def decode_greedy(train_config: str, model_file: str, wav_scp: str, out: Path, device: str) -> None:
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.tasks.asr import ASRTask

    with weights_only_loads():
        s2t = Speech2Text(asr_train_config=train_config, asr_model_file=model_file, device=device,
                          beam_size=1, ctc_weight=1.0, lm_weight=0.0, nbest=1)
    s2t.asr_model.eval()
    data_type = _data_type(wav_scp)
    # feed the audio at the scale training saw (a WAV list for a model trained on the dumps)
    rescale = (train_input_scale(s2t.asr_train_args, train_config)
               / input_scale(data_type, wav_scp))
    loader = ASRTask.build_streaming_iterator(
        [(wav_scp, "speech", data_type)], dtype="float32",
        batch_size=1, key_file=None, num_workers=0,
        preprocess_fn=ASRTask.build_preprocess_fn(s2t.asr_train_args, False),
        collate_fn=ASRTask.build_collate_fn(s2t.asr_train_args, False),
        allow_variable_data_keys=False, inference=True)
    with DatadirWriter(out) as writer:
        best = writer["1best_recog"]
        for keys, batch in loader:
            speech = batch["speech"][0] * rescale if rescale != 1.0 else batch["speech"][0]
            ids, score = greedy_ctc(s2t, speech)
            token = s2t.converter.ids2tokens(ids)
            best["token"][keys[0]] = " ".join(token)
            best["token_int"][keys[0]] = " ".join(map(str, ids))
            best["score"][keys[0]] = str(score)
            best["text"][keys[0]] = s2t.tokenizer.tokens2text(token) if s2t.tokenizer else " ".join(token)


def _data_type(wav_scp: str) -> str:
    """ESPnet's input type for a wav.scp: ``kaldi_ark`` when its entries point into Kaldi archives
    (``file.ark:offset``, as stage 3 dumps), else ``sound``."""
    with open(wav_scp) as f:
        first = f.readline().split(maxsplit=1)
    return "kaldi_ark" if len(first) == 2 and ".ark:" in first[1] else "sound"


def decode_beam(conf: dict, train_config: str, model_file: str, wav_scp: str, out: Path, ngpu: int) -> None:
    data_type = _data_type(wav_scp)
    check_checkpoint(model_file)  # a crafted file is refused by name before anything else
    with open(train_config) as f:
        train = argparse.Namespace(**(yaml.safe_load(f) or {}))
    if train_input_scale(train, train_config) != input_scale(data_type, wav_scp):
        # ESPnet's inference reads the audio itself; it cannot be rescaled on the way
        raise ValueError(f"{wav_scp}: {data_type} audio, but {train_config} trained on another scale "
                         "of samples; decode the same kind of input as training (the stage-3 dump) "
                         "or use search: greedy, which rescales")
    args = ["--asr_train_config", train_config, "--asr_model_file", model_file, "--ngpu", str(ngpu),
            "--data_path_and_name_and_type", f"{wav_scp},speech,{data_type}",
            "--output_dir", str(out)]
    for k, v in conf.items():
        if k != "search":
            args += [f"--{k}", str(v)]
    asr_inference.main(args)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="decoding config (YAML), e.g. conf/decode.yaml")
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--set", nargs=2, action="append", required=True, metavar=("WAV_SCP", "OUTPUT_DIR"),
                   help="a Kaldi wav.scp to decode and the directory for its results (repeatable)")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    print(" ".join([sys.executable, "-m", "espnet_pinch.bin.decode", *(argv or sys.argv[1:])]), file=sys.stderr)
    conf = read_config(args.config)
    for f in (args.config, args.asr_train_config, args.asr_model_file, *(s for s, _ in args.set)):
        if not Path(f).is_file():
            raise FileNotFoundError(f"no such file: {f}")
    device = "cuda" if args.ngpu > 0 else "cpu"
    search = conf.get("search", "beam")
    # greedy: a sparse export is expanded (and any model file checked) once, not once per set
    model_file = (asr_inference.dense_model_file(args.asr_model_file, Path(args.set[0][1]))
                  if search == "greedy" else None)
    for wav_scp, out_dir in args.set:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        logging.info(f"{search} search: {wav_scp} with {args.asr_model_file} -> {out}")
        start = time.perf_counter()
        if search == "greedy":
            decode_greedy(args.asr_train_config, model_file, wav_scp, out, device)
        else:
            decode_beam(conf, args.asr_train_config, args.asr_model_file, wav_scp, out, args.ngpu)
        (out / "timing.json").write_text(json.dumps({"decode_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
