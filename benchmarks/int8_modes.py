"""Which dynamic-int8 settings make ONNX Runtime fastest on wav2vec2-base? (decides
``espnet_pinch.export.onnx.quantize_int8``'s defaults)

The dense wav2vec2-base architecture of ``benchmarks/deploy.py`` (random weights, linear encoder,
CTC head), exported by stage 10's exporter, then quantized with ONNX Runtime's
``quantize_dynamic`` in each of these ways and timed on one 10 s utterance, 2 threads, median of
5 interleaved rounds after one warm-up:
  A  MatMul/Gemm, weight scales per output channel
  B  as A after ONNX Runtime's ``quant_pre_process`` (its recommended pre-processing)
  C  MatMul/Gemm and Conv, per channel
  D  MatMul/Gemm, one weight scale per tensor
  E  as D after ``quant_pre_process``
with the largest |log-prob| difference to the fp32 model.

Usage: tools/venv/bin/python benchmarks/int8_modes.py   (writes benchmarks/results/int8_modes.json)
"""
import os, sys, statistics, tempfile, time, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np, torch
torch.set_num_threads(2)
import deploy
from speedup import frontend
from espnet_pinch.export.onnx import CtcGraph, ort_session, to_onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

m = deploy.CtcModel(frontend("wav2vec2_base")).eval()
wav = 0.1 * torch.randn(1, 160000, generator=torch.Generator().manual_seed(1))
tmp = tempfile.mkdtemp()
fp32 = f"{tmp}/m.onnx"; to_onnx(CtcGraph(m).eval(), __import__("pathlib").Path(fp32))
pre = f"{tmp}/pre.onnx"; quant_pre_process(fp32, pre, skip_symbolic_shape=True)
variants = {
  "fp32": fp32,
  "A_matmul_perchan": (fp32, dict(per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])),
  "B_pre_matmul_perchan": (pre, dict(per_channel=True, op_types_to_quantize=["MatMul", "Gemm"])),
  "C_matmul_conv_perchan": (fp32, dict(per_channel=True, op_types_to_quantize=["MatMul", "Gemm", "Conv"])),
  "D_matmul_pertensor": (fp32, dict(per_channel=False, op_types_to_quantize=["MatMul", "Gemm"])),
  "E_pre_matmul_pertensor": (pre, dict(per_channel=False, op_types_to_quantize=["MatMul", "Gemm"])),
}
sess = {}
for k, v in variants.items():
    if isinstance(v, tuple):
        out = f"{tmp}/{k}.onnx"; quantize_dynamic(v[0], out, weight_type=QuantType.QInt8, **v[1]); v = out
    sess[k] = ort_session(__import__("pathlib").Path(v), 2)
x = wav.numpy()
ref = sess["fp32"].run(None, {"speech": x})[0]
times = {k: [] for k in sess}
for i in range(6):
    for k, s in sess.items():
        t = time.perf_counter(); o = s.run(None, {"speech": x})[0]; dt = time.perf_counter() - t
        if i: times[k].append(dt)
res = {k: {"s": round(statistics.median(v), 4), "speedup_vs_fp32": round(statistics.median(times["fp32"]) / statistics.median(v), 3),
           "max_diff": float(np.abs(sess[k].run(None, {"speech": x})[0] - ref).max())} for k, v in times.items()}
print(json.dumps(res, indent=1))
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "int8_modes.json")
json.dump({**res, "date": time.strftime("%Y-%m-%d %H:%M"), "threads": 2, "audio_seconds": 10}, open(out, "w"), indent=1)
