"""Does any CPU sparse kernel installable here beat dense matmul on wav2vec2-base's Linear shapes?

For each weight shape of a wav2vec2-base Transformer layer (q/k/v/out 768x768, fc1 3072x768,
fc2 768x3072) and 10 s of audio (499 frames), ``y = x W^T`` is timed with:
  dense        torch.nn.functional.linear (MKL sgemm): the reference
  torch_csr    W as torch CSR (``to_sparse_csr``), ``W @ x^T`` (MKL sparse BLAS on this build)
  torch_bsr    W as torch BSR with 16x16 blocks (a block is skipped only when all its 256
               weights are zero: unstructured sparsity leaves almost none empty)
  scipy_csr    W as scipy.sparse CSR, ``W @ x^T`` (scipy's own single-threaded kernel)
at 65 %, 80 % and 90 % unstructured sparsity (the smallest |w| of a random matrix zeroed, as
magnitude pruning leaves it), 2 threads, median of ``--repeats`` interleaved runs. ONNX Runtime
has no sparse MatMul for CPU (sparse initializers are densified at load), and PyTorch's 2:4
semi-structured kernels are CUDA only: neither is a candidate here.

Every path is checked to compute the same product (max |difference| recorded).

Usage: tools/venv/bin/python benchmarks/sparse_kernels.py [--repeats 20] [--threads 2]
Writes benchmarks/results/sparse_kernels.json; ratio = dense seconds / path seconds (> 1: faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/deploy.py
import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402
import torch  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"attn q/k/v/out (768x768)": (768, 768), "fc1 (3072x768)": (3072, 768), "fc2 (768x3072)": (768, 3072)}
FRAMES = 499  # 10 s at 20 ms per frame


def sparse_weight(shape, sparsity: float, gen) -> torch.Tensor:
    w = torch.randn(shape, generator=gen)
    k = int(sparsity * w.numel())
    w[w.abs() <= w.abs().flatten().kthvalue(k).values] = 0.0
    return w


def paths(w: torch.Tensor, x: torch.Tensor) -> dict:
    csr = w.to_sparse_csr()
    bsr = w.to_sparse_bsr((16, 16))
    sp = scipy.sparse.csr_matrix(w.numpy())
    xt = x.t().contiguous()
    xt_np = xt.numpy()
    return {
        "dense": lambda: torch.nn.functional.linear(x, w),
        "torch_csr": lambda: (csr @ xt).t(),
        "torch_bsr": lambda: (bsr @ xt).t(),
        "scipy_csr": lambda: torch.from_numpy(np.asarray(sp @ xt_np)).t(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.65, 0.8, 0.9])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/sparse_kernels.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for shape_name, shape in SHAPES.items():
        x = torch.randn(FRAMES, shape[1], generator=gen)
        for s in args.sparsities:
            w = sparse_weight(shape, s, gen)
            fns = paths(w, x)
            ref = fns["dense"]()
            diffs = {k: float((f() - ref).abs().max()) for k, f in fns.items()}
            times = {k: [] for k in fns}
            with torch.no_grad():
                for i in range(args.repeats + 2):
                    for k, f in fns.items():
                        t0 = time.perf_counter()
                        f()
                        if i >= 2:
                            times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"shape": shape_name, "sparsity": s, "frames": FRAMES,
                   "seconds": {k: round(v * 1e3, 4) for k, v in med.items()},  # milliseconds
                   "speedup_vs_dense": {k: round(med["dense"] / v, 3) for k, v in med.items() if k != "dense"},
                   "max_abs_diff": diffs}
            rows.append(row)
            print(f"{shape_name} at {s:.0%}: dense {row['seconds']['dense']:.3f} ms; "
                  + ", ".join(f"{k} {v}x" for k, v in row["speedup_vs_dense"].items()), flush=True)
    best = max((v, r["shape"], r["sparsity"], k) for r in rows for k, v in r["speedup_vs_dense"].items())
    res = {"threads": args.threads, "repeats": args.repeats, "unit": "milliseconds per product",
           "torch": torch.__version__, "scipy": scipy.__version__, "rows": rows,
           "any_path_beats_dense": best[0] > 1.0,
           "best": {"speedup_vs_dense": best[0], "shape": best[1], "sparsity": best[2], "path": best[3]},
           "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["best"]), "any path beats dense:", res["any_path_beats_dense"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
