"""Where compressed models run faster: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, in
one run, for dense, compact and fine-grained sparse models of the wav2vec2-base architecture.

Models (random weights, upstream + linear encoder + CTC head over 32 tokens, as the recipe's):
  dense          wav2vec2-base (95 M parameters)
  compact_hj     compacted to about half its MACs with HJ-Pruning's unit structure (every
                 group keeps the same share of its units; ``benchmarks/speedup.py``'s model)
  compact_spg_struct
                 compacted to about half its MACs by structured SPG (``pruner: spg_struct``):
                 its per-group thresholds trained for ``--spg_steps`` steps on the MACs term
                 alone (random weights and no data, so no ASR loss: the allocation follows
                 what each group's units cost, not what the model needs), then finalize
                 (common-factor snap onto the target) and the shared compaction; its widths
                 differ from group to group, HJ's structure here does not
  masked_65      65 % of every prunable Linear / Conv weight zeroed by magnitude (UMP-like,
                 fine-grained): the shape of SPG's and UMP's models

Runtimes: ``torch``: PyTorch eager, the recipe's decode path (S3PRL forward, encoder, CTC
log-softmax); ``ort_fp32``: the exported ``model.onnx`` (``espnet_pinch.export``) on ONNX
Runtime; ``ort_int8``: ``model.int8.onnx`` (dynamic int8 MatMul/Gemm). One 10 s utterance, 2
threads for both runtimes, every (model, runtime) pair timed in turn within each repeat (so
machine load affects all alike), the median of ``--repeats`` kept after ``--warmup`` rounds.

Ratios (the issue's aims): ``ort_fp32 / torch`` seconds (aim <= 0.8); ``ort_fp32 / ort_int8``
(int8 speedup, aim >= 1.5); for compact models, measured speedup over dense in each runtime
divided by the ideal one from MACs (aim >= 0.9). Also the largest |log-prob| difference of each
ONNX model to PyTorch on the benchmark input.

Usage: tools/venv/bin/python benchmarks/deploy.py [--seconds 10] [--repeats 5] [--threads 2]
Writes benchmarks/results/deploy.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

# OpenMP threads spin-wait by default; with anything else on the cores that slows PyTorch many
# times over (../shared/docs/DEPENDENCIES.md). Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32


class CtcModel(torch.nn.Module):
    """The parts of ESPnet's ASR model the CTC graph reads (no normalize, pre- or post-encoder)."""

    def __init__(self, fe):
        from espnet2.asr.ctc import CTC

        from espnet_pinch.encoder.linear import LinearEncoder

        super().__init__()
        self.frontend = fe
        self.normalize = self.preencoder = self.postencoder = None
        torch.manual_seed(1)
        self.encoder = LinearEncoder(fe.output_size())
        self.ctc = CTC(VOCAB, fe.output_size())

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """PyTorch's decode path: S3PRL forward, encoder, CTC log-softmax."""
        lens = torch.tensor([wav.shape[1]])
        feats, flens = self.frontend(wav, lens)
        return self.ctc.log_softmax(self.encoder(feats, flens)[0])


def masked_65(size: str) -> CtcModel:
    """Every prunable weight (the fine-grained methods' default layers) 65 % zeros by magnitude."""
    from speedup import frontend

    fe = frontend(size)
    family = fe.adapter
    from espnet_pinch.pruning.layers import select_layers

    with torch.no_grad():
        for _, layer in select_layers(fe.prunable_layers(), family.default_patterns).items():
            w = layer.weight
            k = int(0.65 * w.numel())
            thr = w.abs().flatten().kthvalue(k).values
            w[w.abs() <= thr] = 0.0
    return CtcModel(fe).eval()


def compact_spg_struct(size: str, target: float, steps: int):
    """(the upstream compacted by structured SPG, its finalize result); see the docstring."""
    from speedup import frontend

    from espnet_pinch.pruning.spg_struct import SPGStructPruner

    fe = frontend(size)
    pruner = SPGStructPruner(fe.prunable_layers(), fe.ssl_model, target_sparsity=target, target_on="macs",
                             warmup_steps=steps // 2, threshold_gain=100.0, dual_lr=5.0, penalty=500.0)
    pruner.train()
    opt = torch.optim.Adam(pruner.thresholds.parameters(), lr=4e-4)
    for _ in range(steps):
        pruner.before_forward()
        loss, stats = pruner.loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = float(stats["macs_sparsity"])
    pruner.eval()
    summary = pruner.finalize()
    fe.compact_(summary.keep)
    widths = {n: len(k) for n, k in summary.keep.items()}
    print(f"compact_spg_struct: {steps} steps on the MACs term reached {trained:.3f} of {target} "
          f"MACs removed before the snap", flush=True)
    return fe, {"trained_macs_reduction": round(trained, 4), "widths": widths}


def models(size: str, target: float, spg_steps: int) -> tuple[dict, dict]:
    from speedup import build, frontend

    compact, summary = build(size, target)
    compact.compact_(summary.keep)
    spg, spg_info = compact_spg_struct(size, target, spg_steps)
    return ({"dense": CtcModel(frontend(size)).eval(), "compact_hj": CtcModel(compact).eval(),
             "compact_spg_struct": CtcModel(spg).eval(), "masked_65": masked_65(size)},
            {"compact_hj": {"widths": {n: len(k) for n, k in summary.keep.items()}},
             "compact_spg_struct": spg_info})


COMPACT = ("compact_hj", "compact_spg_struct")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="wav2vec2_base", help="conf/upstream/<size>.yaml")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--target", type=float, default=0.5, help="MACs reduction of the compact model")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spg_steps", type=int, default=200, help="threshold steps of compact_spg_struct")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/deploy.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from espnet_pinch.export.onnx import CtcGraph, ort_session, quantize_int8, to_onnx
    from espnet_pinch.profiling.macs import ssl_macs_per_second

    ms, structure = models(args.size, args.target, args.spg_steps)
    wav = 0.1 * torch.randn(1, int(16000 * args.seconds), generator=torch.Generator().manual_seed(1))
    runs, info = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in ms.items():
            t0 = time.perf_counter()
            fp32, int8 = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.int8.onnx"
            to_onnx(CtcGraph(m, source=name).eval(), fp32)
            quantize_int8(fp32, int8)
            with torch.no_grad():
                ref = m(wav).numpy()
            macs = ssl_macs_per_second(m.frontend.ssl_model, args.seconds)
            info[name] = {"params": sum(p.numel() for p in m.parameters()),
                          "nonzero_params": int(sum((p != 0).sum() for p in m.parameters())),
                          "macs_per_second_dense_exec": macs["macs_dense_exec_per_second"],
                          "onnx_fp32_bytes": fp32.stat().st_size, "onnx_int8_bytes": int8.stat().st_size,
                          "export_seconds": round(time.perf_counter() - t0, 1), **structure.get(name, {})}
            sessions = {"ort_fp32": ort_session(fp32, args.threads), "ort_int8": ort_session(int8, args.threads)}
            for rt, sess in sessions.items():
                out = sess.run(None, {"speech": wav.numpy()})[0]
                info[name][f"{rt}_max_abs_diff_vs_torch"] = float(np.abs(out - ref).max())
            runs[(name, "torch")] = lambda m=m: m(wav)
            for rt, sess in sessions.items():
                runs[(name, rt)] = lambda s=sess: s.run(None, {"speech": wav.numpy()})
            print(f"{name}: exported ({info[name]['export_seconds']} s)", flush=True)
        times = {k: [] for k in runs}
        with torch.no_grad():
            for i in range(args.warmup + args.repeats):
                for k, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    if i >= args.warmup:
                        times[k].append(time.perf_counter() - t0)
                print(f"round {i + 1}/{args.warmup + args.repeats}", flush=True)
    sec = {f"{n}/{rt}": round(statistics.median(v), 4) for (n, rt), v in times.items()}
    ratios = {}
    for n in ms:
        ratios[f"{n}: ort_fp32 / torch seconds"] = round(sec[f"{n}/ort_fp32"] / sec[f"{n}/torch"], 3)
        ratios[f"{n}: int8 speedup (ort_fp32 / ort_int8 seconds)"] = round(sec[f"{n}/ort_fp32"] / sec[f"{n}/ort_int8"], 3)
    ideal = {c: info["dense"]["macs_per_second_dense_exec"] / info[c]["macs_per_second_dense_exec"]
             for c in COMPACT}
    for rt in ("torch", "ort_fp32", "ort_int8"):
        for c in COMPACT:
            measured = sec[f"dense/{rt}"] / sec[f"{c}/{rt}"]
            ratios[f"{c}/{rt}: speedup measured / ideal"] = round(measured / ideal[c], 3)
            ratios[f"{c}/{rt}: speedup measured"] = round(measured, 3)
        ratios[f"masked_65/{rt}: speedup over dense"] = round(sec[f"dense/{rt}"] / sec[f"masked_65/{rt}"], 3)
    aims = {"ort_fp32 <= 0.8 x torch": {n: ratios[f"{n}: ort_fp32 / torch seconds"] <= 0.8 for n in ms},
            "int8 >= 1.5 x fp32": {n: ratios[f"{n}: int8 speedup (ort_fp32 / ort_int8 seconds)"] >= 1.5 for n in ms},
            "compact >= 0.9 of ideal": {f"{c}/{rt}": ratios[f"{c}/{rt}: speedup measured / ideal"] >= 0.9
                                        for c in COMPACT for rt in ("torch", "ort_fp32", "ort_int8")}}
    res = {"size": args.size, "audio_seconds": args.seconds, "threads": args.threads,
           "repeats": args.repeats, "warmup": args.warmup, "speedup_ideal_compact": {c: round(v, 3) for c, v in ideal.items()},
           "seconds_median": sec, "ratios": ratios, "aims_met": aims, "models": info,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"seconds_median": sec, "ratios": ratios, "aims_met": aims}, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
