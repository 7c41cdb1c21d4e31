"""SPG: sparsity-aware self-pinching gates (Xu et al., Interspeech 2025, arXiv 2505.22608).

One learnable threshold t_l per gated layer (the only extra parameters), fine-grained masks:
  soft mask  M = sigmoid((W^2 - t^2) / (2 * tau * s_l))
  hard mask  H = 1[W^2 >= t^2]              (used in every forward pass, training and inference)
where s_l = mean(W_l^2) at calibration makes tau scale-free across layers (our choice: layers
differ in weight scale by orders of magnitude, and one tau should mean the same for all).
The threshold is stored as t_l = theta_l * gain * sqrt(s_l) with theta_l the learned parameter:
in units of the layer's RMS weight, and with ``threshold_gain`` acting as a learning-rate
multiplier (Adam moves theta by about lr per step, and t_l must travel ~0.7 RMS for 50% sparsity
within the warm-up; at lr 5e-4 and gain 1 that would take ~1,400 steps).

Variant (``parametrization: raw``, the paper's form): the learned threshold is t_l = theta_l *
gain * u on W^2 itself, M = sigmoid((W^2 - t_l) / (2 * tau * u)) with one temperature for every
layer, and no per-layer RMS scaling; it starts from the same masks as ``rms``. u is ONE unit for
the whole model, the median over the gated layers of their mean W^2 at calibration (ours: the
paper's t_l and tau are absolute, which ties a config to one model's weight scale; with u the same
tau and gain mean the same on any upstream, and layers are still compared on one absolute scale).

Which form is the default, by the measured frontier (AN4, 4 epochs = 188 steps, greedy CTC,
controller dual_lr 20 / penalty 500, seeds 0 and 1, RESULTS.md "Over seeds", README "SPG: the
controller and the variants", 2026-12-03): test WER mean over the seeds at 0.65 / 0.8 / 0.9:
rms 26.20 / 30.40 / 44.11, raw 24.77 / 28.59 / 44.56, variant (c) with the trust region (below)
25.94 / 29.18 / 42.43; UMP 28.79 / 42.37 / 95.73; dense_cont 23.36. Frontier (highest target not
significantly above dense_cont, paired bootstrap pooled over seeds): raw 0.65 (p = 0.15), rms
0.5 (0.65: p < 0.002), (c) none of 0.65-0.9. By that rule ``raw`` is the default
(``conf/pruner/spg.yaml`` since 2026-12-06; ``rms`` is ``spg_rms.yaml``, and the comparison's
earlier ``spg`` rows are its runs, renamed); the seeds' spread (raw at 0.65: +-1.19) is as large
as the gap to rms (1.43), so the choice rests on the frontier rule, not on a separated difference.
The default's controller is penalty-dominant (dual_lr 5, penalty 20000; 2026-12-06). The
thresholds' Adam steps are rate-limited (about lr x gain a step, whatever the pull), so while they
lag the ramp an integral-dominant controller winds lambda1 up, and that windup overshoots once they
arrive: with dual_lr 60 / penalty 500 (``spg_d60.yaml``, the default before; its rows are the
``spg_d60_*`` records) lambda1 reached -250 at 0.9, the sparsity rose past the target at step ~115
and held 0.908-0.911 to the end (finalize's snap then changed 8-12 % of the kept weights), and
0.8 seed 0 overshot to 0.822 until step 105. With dual_lr 20 the raw form reached 0.9 only at
step 165-177 of 188, and a doubled threshold_gain did not help (0.860 at step 96). A quadratic
term that dominates pulls with 2 x penalty x gap from the first step, so the sparsity tracks the
ramp and rests where that pull balances the ASR loss's, within F / (2 x penalty) of the target;
lambda1 only removes the rest, slowly. Trials (seed 0, 4 epochs, 2026-12-06): penalty 20000 at
0.9 within 0.02 from step ~81, 0.898 at the end; at 0.65 within 0.02 from step 57 (peak 0.670),
0.650 at the end; penalty 5000 left 0.9 at 0.892 (outside finalize's tolerance, 0.005). HJ-Pruning's
configs moved to the same kind of controller (penalty 5000, ``conf/pruner/hj_size.yaml``).
spg_d60's rows (seeds 0 and 1): test WER 23.67 / 25.04 / 28.13 / 41.85 at 0.5 / 0.65 / 0.8 / 0.9
(p against dense_cont 0.70 / 0.052 / < 0.002 / < 0.002). The default's rows with this controller:
README "Measured on AN4" and RESULTS.md.

The controller decides more than the form. With dual_lr 5 / penalty 50, SPG ended 0.778 of 0.8
and 0.823 of 0.9 before the snap (test WER 31.69 / 72.96); a larger Adam step (threshold_gain
120 instead of 60) did not help (0.819 of 0.9), because the thresholds were not speed-limited
but held back by the ASR loss while lambda1 integrated the gap. With dual_lr 20 / penalty 500
every rms run ends within 0.02 of its target before the snap at 0.5, 0.65 and 0.8 (0.500-0.501,
0.652, 0.804-0.805) and at 0.886 of 0.9, where the ASR loss still holds it 0.014 short and the
target is reached late (25-31 % of the steps within 0.02 of it: stage 9 flags those runs).

Variant (``threshold_step: sgd``, ours): the thresholds leave the model's optimizer and take
plain SGD steps on their own gradient (``train/optim.py``; same schedule, same clipping). With
Adam every threshold moves about lr per step whatever its gradient, so under the ramping target
the layers move in lockstep in RMS units (on the toy MLP of ``tests/pruning/test_spg.py``, 20
steps of the sparsity term alone: 0.2094 / 0.2094 / 0.2094). Plain SGD follows the gradient of
the Lagrangian itself: the sparsity term pulls each threshold in proportion to the layer's share
of the gated weights and to its weight density at the threshold, the ASR loss pushes back as hard
as the layer matters, and a threshold rests where the two balance, i.e. where removing one more
weight costs every layer the same loss (the stationarity condition of min loss s.t. sparsity).
On the toy, the same 20 steps move the three thresholds 0.136 / 0.969 / 0.032. That pull is
proportional to layer size, so plain SGD lets the large layers take the target first and the
small ones lag (AN4 at 0.9, ``conf/pruner/spg_sgd.yaml``: 0.76 at step 88 of 188, while the FFN
matrices sat at 0.88 and the median layer at 0.01). ``threshold_precondition: size`` divides
each threshold's step by its layer's size relative to the mean (the gradient per weight of the
layer: same stationary points, comparable speeds; on the toy 0.859 / 0.603 / 1.008 RMS),
``conf/pruner/spg_psgd.yaml``. Measured on AN4 at 0.9 (one seed): plain SGD reached 0.851 before
the snap (rms 0.823) and test WER 64.04 (rms 72.96); the preconditioned form pruned the first
conv layer whole at step 11 (one noisy ASR gradient times its large gain moved its threshold to
3.4 RMS) and ended at WER 100. ``threshold_max_step`` bounds each step (a trust region,
``conf/pruner/spg_psgd_tr.yaml``): on AN4 (seed 0, dual_lr 20) it trained to 0.802 of 0.8 and
0.883 of 0.9, test WER 29.50 / 42.30, no layer pruned whole; not separated from rms (above), so
not the default.

Estimator (ours; the paper's is not public): straight-through. The effective weight is
W * (H + M - stopgrad(M)): its value is exactly W * H, its gradient is that of W * M, so the ASR
loss reaches both W and t_l through the soft mask.

Sparsity-aware term (ours; an augmented Lagrangian, i.e. the form METHODS.md suggests with a
fixed quadratic weight):
  s      = 1 - sum_l sum(H_l) / N     (overall parameter-weighted sparsity of the gated layers; in
                                        the backward pass its gradient is that of the soft masks)
  s*(k)  = target * min(1, k / warmup_steps)                    (linear warm-up of the target)
  L_sp   = lambda1 * (s - s*) + penalty * (s - s*)^2
lambda1 is updated by dual ascent after every training step, lambda1 += dual_lr * (s - s*): it
integrates the gap until the pull towards the target balances the ASR loss. The fixed quadratic
term damps the overshoot that plain dual ascent shows once the warm-up ends (with lambda2 also
learned by ascent, as in HJ-Pruning, a toy MLP ended 2 points off a 0.5 target and 7 points off
0.8 after 120 steps; with penalty=50 it ended within 0.3 points of 0.3 and 0.5 and 2 points off
0.8, where the toy's loss fights hardest; tests/pruning/test_spg.py holds the toy). Only the
overall sparsity is constrained, so layers end at different sparsities. Using the hard sparsity
as the value (not the soft estimate) is what makes the final zero count land on the target.

Finalize: the dual dynamics leave the sparsity oscillating around the target by up to about a
point (on AN4 at 0.65: 0.655 to 0.660 in the last epochs). If the hard sparsity is further than
``finalize_tolerance`` from the target, finalize scales every threshold by one common factor,
found by bisection, until it is on the target: the split between layers that training learned is
kept, and only weights at the margin of their layer's threshold change.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch

from espnet_pinch.pruning.lagrangian import init_term, sparsity_term, warmed_up_target
from espnet_pinch.pruning.masked import MaskPruner

PARAMETRIZATIONS = ("rms", "raw")
THRESHOLD_STEPS = ("shared", "sgd")
THRESHOLD_PRECONDITIONS = ("none", "size")


class _STEMask(torch.autograd.Function):
    """(W, t2) -> (W * H, sum(H)) with the gradients of (W * M, sum(M)) (straight-through), where
    t2 is the threshold on W^2: H = 1[W^2 >= t2], M = sigmoid((W^2 - t2) / denom).

    Fused so that the forward pass needs no sigmoid and no extra full-size tensors kept for
    backward beyond W; the soft mask is computed once, in backward.
    """

    @staticmethod
    def forward(ctx, w, t2, denom):
        hard = w * w >= t2
        ctx.save_for_backward(w, t2)
        ctx.denom = denom
        # where(), not w * hard: a pruned negative weight becomes +0.0 (w * 0 would be -0.0),
        # bit-identical to the zeros of the sparse export (issue 16)
        return torch.where(hard, w, w.new_zeros(())), hard.sum().to(w.dtype)

    @staticmethod
    def backward(ctx, g_out, g_kept):
        w, t2 = ctx.saved_tensors
        inv = 1.0 / ctx.denom
        w2 = w * w
        soft = torch.sigmoid((w2 - t2).mul_(inv))
        # d soft / d u, times the upstream gradient of the soft surrogate W * M and of sum(M);
        # in-place steps keep the number of full-size temporaries (and memory passes) small.
        common = soft.mul_(1 - soft).mul_(g_out * w + g_kept).mul_(inv)
        grad_t2 = -common.sum()
        grad_w = torch.addcmul(common.mul_(2.0 * w), g_out, (w2 >= t2).to(w.dtype))
        return grad_w, grad_t2, None


class SPGGate(torch.nn.Module):
    """Parametrization of one layer's weight: W -> W * hard mask (straight-through soft mask).

    Each forward also leaves ``kept``: the number of kept weights (value: sum of the hard mask;
    gradient: that of the soft mask), which the pruner's sparsity term uses for this step.
    """

    def __init__(self, tau: float, gain: float = 1.0, parametrization: str = "rms"):
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"pruner_conf.parametrization must be one of {PARAMETRIZATIONS}, "
                             f"got {parametrization!r}")
        self.tau = tau
        self.gain = gain
        self.parametrization = parametrization
        self.threshold = torch.nn.Parameter(torch.zeros(()))  # theta_l
        # rms: s_l = this layer's mean W^2 at calibration; raw: u, one unit for the whole model
        self.register_buffer("scale", torch.ones(()))
        self.kept = None

    def t2(self) -> torch.Tensor:
        """The threshold on W^2: rms (theta * gain)^2 * s_l; raw theta * gain * u (the paper's t_l)."""
        if self.parametrization == "raw":
            return self.threshold * self.gain * self.scale
        return (self.threshold * self.gain) ** 2 * self.scale

    def t(self) -> torch.Tensor:
        """The threshold on |W| (same units as the weights)."""
        return self.t2().clamp_min(0).sqrt()

    def denom(self) -> float:
        """The soft mask's temperature on W^2: 2 tau s_l (rms: per layer; raw: one for all)."""
        return float(2 * self.tau * self.scale)

    def soft(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((w * w - self.t2()) / self.denom())

    def hard(self, w: torch.Tensor) -> torch.Tensor:
        return (w * w >= self.t2().detach()).to(w.dtype)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        out, self.kept = _STEMask.apply(w, self.t2(), self.denom())
        return out


class SPGPruner(MaskPruner):
    """Args (``pruner_conf``; ``prunable`` comes from the model):
        target_sparsity: overall fraction of gated weights to remove, in [0, 1).
        tau: soft-mask temperature (> 0), relative to each layer's mean squared weight (rms) or
            to the model's unit u, the median gated layer's mean squared weight (raw).
        warmup_steps: training steps over which the target ramps up linearly from 0
            (a value in (0, 1): that fraction of the whole compression's steps, ``lagrangian.py``).
        layers: glob patterns of layers to gate (``pruning/layers.py``; default: the upstream
            family's ``default_patterns``, ``espnet_pinch.adapters``); add ``ctc.ctc_lo`` to gate
            the CTC head.
        dual_lr: dual-ascent step size of the Lagrange multiplier lambda1 (> 0).
        penalty: weight of the quadratic term (>= 0).
        budget_ref_steps: the compression steps the controller (dual_lr, the thresholds' rate)
            was tuned on; a budget of N steps scales both by this / N (``lagrangian.py``);
            None: no scaling.
        dual_gap_clip: largest |gap| lambda1 integrates in one step (anti-windup,
            ``lagrangian.py``); None: no clip.
        init_threshold: initial t_l as a fraction of the layer's RMS weight (>= 0).
        threshold_gain: learning-rate multiplier of the thresholds (> 0), see the module doc.
        finalize_tolerance: largest |sparsity - target| that finalize leaves as it is (>= 0).
        parametrization: rms (default): theta_l in units of the layer's RMS weight and a soft
            mask whose temperature is tau x the layer's mean W^2; raw (the paper's): a threshold
            t_l = theta_l x threshold_gain x u on W^2 itself and one temperature 2 tau u for every
            layer (u: the median over the gated layers of their mean W^2, one number per model).
        probe_interval: every this many training steps, record each layer's threshold and
            sparsity and the two parts of its threshold's gradient, from the ASR loss and from
            the sparsity term (``take_probe``; the trainer writes them to ``layers.jsonl``
            beside ``trace.tsv``); 0 = never.
        threshold_step: shared (default): the thresholds are parameters of the model's optimizer
            like any other (Adam: each threshold moves about lr per step whatever its gradient's
            size); sgd: plain SGD steps of ``threshold_lr`` x the schedule's factor on the
            gradient itself (``train/optim.py``), so that a threshold moves as fast as the ASR
            loss and the sparsity term pull it and the layers settle where their marginal costs
            meet, not in lockstep.
        threshold_lr: the base learning rate of ``threshold_step: sgd`` (> 0); unused otherwise.
        threshold_precondition: with ``threshold_step: sgd``: none (default): every threshold
            takes lr x its gradient; size: lr x its gradient x (mean layer size / this layer's
            size), i.e. the gradient per weight of the layer: the sparsity term's pull becomes
            comparable across layers of 256 and 262,144 weights, and each layer's ASR and
            sparsity pulls keep their ratio (done as a per-layer threshold gain, sqrt of that
            factor, fixed by the layer shapes).
        threshold_max_step: with ``threshold_step: sgd``, the largest change of a threshold in one
            step, in its own units (rms: the layer's RMS weight; raw: u on W^2): a trust region, so
            that one noisy batch cannot move a small layer's threshold past all its weights;
            None (default): no bound.
    """

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        target_sparsity: float = 0.5,
        tau: float = 0.05,
        warmup_steps: int = 1000,
        layers: Optional[Sequence[str]] = None,
        dual_lr: float = 0.5,
        penalty: float = 50.0,
        init_threshold: float = 0.01,
        threshold_gain: float = 20.0,
        finalize_tolerance: float = 0.005,
        probe_interval: int = 10,
        parametrization: str = "rms",
        threshold_step: str = "shared",
        threshold_lr: float = 1.0,
        threshold_precondition: str = "none",
        threshold_max_step: Optional[float] = None,
        budget_ref_steps: Optional[int] = None,
        dual_gap_clip: Optional[float] = None,
    ):
        if threshold_max_step is not None and not (threshold_step == "sgd" and threshold_max_step > 0):
            raise ValueError("pruner_conf.threshold_max_step must be > 0 and needs threshold_step: sgd, "
                             f"got {threshold_max_step!r}")
        if threshold_precondition not in THRESHOLD_PRECONDITIONS:
            raise ValueError(f"pruner_conf.threshold_precondition must be one of "
                             f"{THRESHOLD_PRECONDITIONS}, got {threshold_precondition!r}")
        if threshold_precondition != "none" and threshold_step != "sgd":
            raise ValueError("pruner_conf.threshold_precondition needs threshold_step: sgd")
        if threshold_step not in THRESHOLD_STEPS:
            raise ValueError(f"pruner_conf.threshold_step must be one of {THRESHOLD_STEPS}, "
                             f"got {threshold_step!r}")
        if not threshold_lr > 0:
            raise ValueError(f"pruner_conf.threshold_lr must be > 0, got {threshold_lr!r}")
        if not tau > 0:
            raise ValueError(f"pruner_conf.tau must be > 0, got {tau!r}")
        if not threshold_gain > 0:
            raise ValueError(f"pruner_conf.threshold_gain must be > 0, got {threshold_gain!r}")
        if finalize_tolerance < 0:
            raise ValueError(f"pruner_conf.finalize_tolerance must be >= 0, got {finalize_tolerance!r}")
        if init_threshold < 0:
            raise ValueError(f"pruner_conf.init_threshold must be >= 0, got {init_threshold!r}")
        if int(probe_interval) != probe_interval or probe_interval < 0:
            raise ValueError(f"pruner_conf.probe_interval must be an integer >= 0, got {probe_interval!r}")
        super().__init__(prunable, target_sparsity, layers)
        self.tau = float(tau)
        init_term(self, warmup_steps, dual_lr, penalty, budget_ref_steps=budget_ref_steps,
                  dual_gap_clip=dual_gap_clip)
        self.init_threshold = float(init_threshold)
        self.threshold_gain = float(threshold_gain)
        self.finalize_tolerance = float(finalize_tolerance)
        self.probe_interval = int(probe_interval)
        self.parametrization = parametrization  # checked by each SPGGate (attach, below)
        self.threshold_step = threshold_step
        self.threshold_lr = float(threshold_lr)
        self.threshold_precondition = threshold_precondition
        sizes = [m.weight.numel() for m in self.layers.values()]
        self._mean_size = sum(sizes) / len(sizes)  # fixed by the shapes: a resume gets the same gains
        self.threshold_max_step = None if threshold_max_step is None else float(threshold_max_step)
        self._probe: Dict[str, object] = {}
        self._probe_hooks: list = []
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        self.attach()

    # -- gates ---------------------------------------------------------------------------
    def make_gate(self, layer: torch.nn.Module) -> SPGGate:
        gain = self.threshold_gain
        if self.threshold_precondition == "size":  # SGD's step scales with gain^2
            gain *= math.sqrt(self._mean_size / layer.weight.numel())
        return SPGGate(self.tau, gain, self.parametrization)

    def zeros(self, gate: SPGGate, w: torch.Tensor) -> int:
        return int((gate.hard(w) == 0).sum())

    @torch.no_grad()
    def calibrate(self) -> None:
        """Set per-layer scales and initial thresholds from the current (starting) weights.

        Done once, lazily, at the first forward pass, so that weights loaded after the model was
        built (``--init_param``) are the ones measured; on resume ``calibrated`` is already set.
        """
        gates = [(gate, w.pow(2).mean().clamp_min(1e-12)) for _, gate, w in self.gates()]
        unit = torch.stack([ms for _, ms in gates]).median()  # raw's one unit for the model
        for gate, ms in gates:
            if self.parametrization == "raw":  # the same starting mask as rms: t_l = (init * RMS)^2
                gate.scale.copy_(unit)
                gate.threshold.fill_(float(self.init_threshold ** 2 * ms / unit) / self.threshold_gain)
            else:
                gate.scale.copy_(ms)
                gate.threshold.fill_(self.init_threshold / self.threshold_gain)
        self.calibrated.fill_(True)

    def before_forward(self) -> None:
        if not bool(self.calibrated):
            self.calibrate()

    def plain_sgd_parameters(self):
        if self.threshold_step != "sgd":
            return [], 0.0, None
        gates = [g for _, g, _ in self.gates()]
        caps = None if self.threshold_max_step is None else [self.threshold_max_step / g.gain for g in gates]
        return [g.threshold for g in gates], self.threshold_lr, caps

    # -- sparsity -------------------------------------------------------------------------
    def current_target(self) -> float:
        return warmed_up_target(self.target_sparsity, self.step, self.warmup_steps)

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        update = self.training and torch.is_grad_enabled()
        probe = update and self.probe_interval > 0 and int(self.step) % self.probe_interval == 0
        step = int(self.step) + 1  # this training step (1-based)
        kept, total, per_layer = 0.0, 0, {}
        for name, gate, w in self.gates():
            if gate.kept is None:  # layer not run since the last loss(): evaluate its gate now
                gate(w)
            kept = kept + gate.kept
            if probe:  # a host sync per layer: only on probe steps
                per_layer[name] = 1.0 - float(gate.kept) / w.numel()
            gate.kept = None  # each forward's graph is used once
            total += w.numel()
        s = 1.0 - kept / total
        target = self.current_target()
        term = sparsity_term(s - target, self.lambda1, self.step, self.penalty, self.dual_lr,
                             update=update, gap_clip=self.dual_gap_clip)
        if probe:
            self._start_probe(step, term, per_layer)
        stats = {"loss_sparsity": term.detach(), "sparsity": s.detach(),
                 "target_sparsity": torch.tensor(target), "lambda1": self.lambda1.clone()}
        return term, stats

    # -- instrumentation ---------------------------------------------------------------------
    def _start_probe(self, step: int, term: torch.Tensor, per_layer: Dict[str, float]) -> None:
        """Record this step's thresholds, per-layer sparsities and the sparsity term's gradient on
        each threshold (autograd.grad on the term alone), and hook every threshold so that the
        coming backward pass leaves its total gradient; the ASR loss's part is the difference."""
        self._drop_probe_hooks()
        gates = [(n, g) for n, g, _ in self.gates()]
        g_term = torch.autograd.grad(term, [g.threshold for _, g in gates], retain_graph=True,
                                     allow_unused=True)
        layers = {}
        for (name, gate), g in zip(gates, g_term):
            rec = {"theta": float(gate.threshold), "t": float(gate.t()), "sparsity": per_layer[name],
                   "grad_sparsity": 0.0 if g is None else float(g), "grad_total": None}
            layers[name] = rec
            self._probe_hooks.append(gate.threshold.register_hook(
                lambda grad, rec=rec: rec.__setitem__("grad_total", float(grad))))
        self._probe = {"step": step, "lambda1": float(self.lambda1), "layers": layers}

    def _drop_probe_hooks(self) -> None:
        for h in self._probe_hooks:
            h.remove()
        self._probe_hooks = []

    def take_probe(self) -> Dict[str, object]:
        """The last probe, once its backward pass has run (else {}): {"step", "lambda1", "layers":
        {layer: {theta, t, sparsity, grad_sparsity, grad_asr, grad_total}}}, gradients with respect
        to theta_l before clipping; cleared when taken."""
        probe = self._probe
        if not probe or any(r["grad_total"] is None for r in probe["layers"].values()):
            return {}
        self._drop_probe_hooks()
        self._probe = {}
        for r in probe["layers"].values():
            r["grad_asr"] = r["grad_total"] - r["grad_sparsity"]
        return probe

    @torch.no_grad()
    def snap_to_target(self, iters: int = 40) -> Dict[str, float]:
        """Scale all thresholds by one factor so that the hard sparsity meets the target."""
        before = self.sparsity()["overall"]
        if abs(before - self.target_sparsity) <= self.finalize_tolerance:
            return {"sparsity_before_snap": before, "snap_factor": 1.0}
        gates = [g for _, g, _ in self.gates()]
        theta0 = [g.threshold.clone() for g in gates]

        def sparsity_at(c: float) -> float:
            for g, t in zip(gates, theta0):
                g.threshold.copy_(t * c)
            return self.sparsity()["overall"]

        lo, hi = 0.0, 1.0
        while sparsity_at(hi) < self.target_sparsity and hi < 1e3:
            lo, hi = hi, hi * 2
        for _ in range(iters):  # sparsity is non-decreasing in the factor
            mid = (lo + hi) / 2
            if sparsity_at(mid) < self.target_sparsity:
                lo = mid
            else:
                hi = mid
        sparsity_at(hi)
        return {"sparsity_before_snap": before, "snap_factor": hi}

    def snap(self) -> Dict[str, float]:
        return {"snap_factor": self.snap_to_target()["snap_factor"]}
