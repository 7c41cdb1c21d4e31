"""Comparing the float32 outputs of two code paths that compute the same function.

A parametrized weight and a plain one, or a model rebuilt from a state dict and the one in
memory, run the same arithmetic, but the CPU kernels (MKL/oneDNN GEMM blocking, vector width,
thread split) may sum in a different order depending on the processor, the thread count and the
memory layout, so the outputs agree to rounding, not bit for bit (issue 16: bit-equal here,
unequal on another machine of the same kind). Reordering a float32 sum of n terms changes it by
at most about n * eps * sum|terms| (Higham, Accuracy and Stability of Numerical Algorithms, 2nd
ed., section 3.1) and typically by sqrt(n) * eps of the sum's scale; through the tiny test models
(7 convs, 2 Transformer layers, sums of at most a few hundred terms) that stays well below
``ULPS`` float32 ulps of the output's largest magnitude. A real defect (one weight kept or dropped
by mistake, a mis-sliced unit) moves outputs by orders of magnitude more: each test that uses this
was checked to fail with one wrong weight.
"""
from __future__ import annotations

import torch

ULPS = 128  # 1.5e-5 relative to the output's largest magnitude
EPS32 = torch.finfo(torch.float32).eps


def assert_same_function(actual: torch.Tensor, expected: torch.Tensor, ulps: int = ULPS) -> None:
    """Equal shapes and max |actual - expected| <= ulps * eps32 * max|expected|."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(expected.abs().max())
    diff = float((actual - expected).abs().max())
    tol = ulps * EPS32 * max(scale, EPS32)
    assert diff <= tol, (f"max |diff| {diff:.3g} > {tol:.3g} ({ulps} float32 ulps of the output "
                         f"scale {scale:.3g})")
