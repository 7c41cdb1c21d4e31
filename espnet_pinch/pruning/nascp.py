"""NAS-CP: NAS-based channel-wise pruning (the channel-search baseline of the SPG paper).

Search space: for every unit group (``compaction.units``: conv channels, attention heads, FFN
units) a fixed list of candidate widths, chosen before the search as fractions of the group's
units (``width_fractions``, default 25/50/75/100 %). Candidate j keeps the k_j units of largest
magnitude (``units.ranked_units``, re-ranked every step as the weights train).

Search (one ESPnet training run): each group has architecture logits alpha_g (one per
candidate, the method's only extra parameters). Every training forward draws Gumbel-softmax
weights y_g = softmax((alpha_g + G) / T) and masks the group's units with
  m_g = sum_j y_gj * 1[unit among the top k_j]
(a soft, monotone mask: the highest-ranked units are kept by every candidate). Evaluation
forwards (validation) use the argmax candidate, i.e. the architecture that would be kept.
Size term: the expected sparsity under p_g = softmax(alpha_g) is exact for independent groups
(``structured.StructuredPruner``), and the loss adds lambda1 * gap + penalty * gap^2 with
gap = E[s] - target, lambda1 by dual ascent (``pruning/lagrangian.py``, shared with SPG). T anneals geometrically from
``tau_start`` to ``tau_end`` over ``tau_steps`` training steps.

Then (``finalize``): the argmax candidate of each group is kept; if that misses the target by more
than ``finalize_tolerance``, groups are moved one candidate at a time (smaller while under the
target, larger while over), always the move that costs the least log-probability, so the
search's preferences decide. ``bin.finalize`` removes the channels physically and the recipe
fine-tunes the compact model (our choices: the paper gives no schedule).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch

from espnet_pinch.compaction.units import KINDS
from espnet_pinch.pruning.lagrangian import (NEEDS_BUDGETLR, init_term, sparsity_term,
                                              straight_through, warmed_up_target)
from espnet_pinch.pruning.structured import StructuredPruner, keeps_band
from espnet_pinch.train.schedule import steps_of, unbound_budget


class NASCPPruner(StructuredPruner):
    """Args (``pruner_conf``):
        target_sparsity: fraction of the prunable weights to remove, in [0, 1).
        width_fractions: candidate widths as fractions of each group's units, in (0, 1].
        units: which unit kinds to search: conv, heads, ffn.
        tau_start, tau_end, tau_steps: Gumbel-softmax temperature schedule; ``tau_steps`` in
            (0, 1) is that share of the whole compression's steps (``train.schedule.steps_of``),
            so the anneal keeps its shape on any budget (0.75: the 3 search epochs of 4); a whole
            number is that many steps on every budget.
        arch_lr_scale: learning-rate multiplier of the architecture logits (> 0).
        warmup_steps: steps over which the target ramps up linearly from 0
            (a value in (0, 1): that fraction of the whole compression's steps, ``lagrangian.py``).
        dual_lr, penalty, budget_ref_steps, dual_gap_clip: the size term (as in SPG, ``lagrangian.py``).
        finalize_tolerance: largest |sparsity - target| that finalize leaves as it is.
        finetune_epochs: epochs of fine-tuning the compact model after the search (the recipe
            reads it; the search itself runs for the config's max_epoch).
        hard_gap: the size term's value is the argmax architecture's sparsity, its gradient the
            expectation's (straight-through, as SPG's hard sparsity); false: the expectation.
        gap_on_argmax (ours, with ``hard_gap``): the term's value is the plain argmax
            architecture's sparsity (the logits' own choice), not the held one's
            (``argmax_margin``, ``max_switches``, ``move_band``). With ``move_band`` the held
            architecture sits in the band, so a term on it stops pulling the logits and they can
            drift from it: on AN4, in 3 of 14 band runs the argmax ended 0.15-0.2 from the target
            and from the held architecture (README, "NAS-CP's move band"). On the argmax, the
            term keeps the logits at the target while the band holds what is kept. On AN4
            (nascp_argmax.yaml, every setting, 2 seeds) it keeps them together (at most 8 % of
            the units apart) but test WER is worse at 0.5 and at 1-2 epochs, better at 0.9: not
            the default. false: the held architecture's.
        argmax_margin (ours): hysteresis of the chosen candidate. A group keeps the candidate it
            chose at the last training step until another one's logit beats it by more than
            this margin (logit units, after ``arch_lr_scale``); 0: the plain argmax. On AN4 one
            move of a group is 0.019 of the prunable weights, and with the plain argmax several
            groups near a tie flip in the same step, so the argmax sparsity chatters around
            the target (README, "NAS-CP holds its target").
        max_switches (ours): at most this many groups change their chosen candidate in one
            training step, those whose argmax leads their held candidate by the most logit, and
            each by one candidate towards its argmax (the first step sets them all); 0: no
            limit. One step of the chosen architecture is then at most max_switches moves.
            With ``budget_ref_steps`` it is a rate like the controller's others: a budget of N
            steps allows round(max_switches x R / N) moves a step, at least one (on AN4 at 0.65
            the one-move rate tuned on 188 steps overshot to 0.786 on 47 steps; README).
        move_band (ours, with ``max_switches``): a move is made only if it leaves the chosen
            architecture's sparsity within this distance of the step's (ramped) target, or
            closer to it than before; a refused move does not use up the step's moves. Once in
            the band the architecture stays in it (one move is 0.019 on AN4, the band 2 x this
            wide), so the search cannot swing through the target; inside it the logits decide
            freely. 0: off. Our controller for NAS-CP's late swing at short budgets (README).
        hard_tail (ours): the search's steps in the last ``hard_tail`` share of the whole
            compression's budget train the architecture that would be kept (the held one, else
            the argmax) with hard masks, the logits out of the forward (no gradient, so they
            stay), the size term off. The recipe's fine-tuning epoch is that share at 4 epochs
            (1 of 4), so 0.25 changes nothing there; at 1-2 epochs, where there is no
            fine-tuning epoch, the kept architecture otherwise is decoded with weights trained
            only under the Gumbel-softmax mixture. On AN4 (nascp_tail.yaml, 1 and 2 epochs,
            2 seeds) it did not remove the band's 1-epoch cost (README, "NAS-CP's move band").
            0: off.
            Under DDP the tail leaves the logits out of the graph: train with ESPnet's
            ``unused_parameters: true``.
    """

    def __init__(
        self,
        prunable: "OrderedDict[str, torch.nn.Module]",
        ssl_model: torch.nn.Module,
        target_sparsity: float = 0.5,
        width_fractions: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        units: Sequence[str] = KINDS,
        tau_start: float = 1.0,
        tau_end: float = 0.1,
        tau_steps: int = 1000,
        arch_lr_scale: float = 20.0,
        warmup_steps: int = 0,
        dual_lr: float = 0.5,
        penalty: float = 50.0,
        finalize_tolerance: float = 0.01,
        finetune_epochs: int = 1,
        hard_gap: bool = False,
        budget_ref_steps: Optional[int] = None,
        dual_gap_clip: Optional[float] = None,
        argmax_margin: float = 0.0,
        max_switches: int = 0,
        move_band: float = 0.0,
        gap_on_argmax: bool = False,
        hard_tail: float = 0.0,
    ):
        fr = [float(f) for f in width_fractions]
        if not fr or any(not 0 < f <= 1 for f in fr):
            raise ValueError(f"pruner_conf.width_fractions must be in (0, 1], got {width_fractions!r}")
        if not (tau_start > 0 and tau_end > 0 and tau_steps >= 0):
            raise ValueError("pruner_conf: tau_start, tau_end must be > 0 and tau_steps >= 0")
        if not arch_lr_scale > 0:
            raise ValueError(f"pruner_conf.arch_lr_scale must be > 0, got {arch_lr_scale!r}")
        if not argmax_margin >= 0:
            raise ValueError(f"pruner_conf.argmax_margin must be >= 0, got {argmax_margin!r}")
        if isinstance(max_switches, bool) or not (isinstance(max_switches, int) and max_switches >= 0):
            raise ValueError(f"pruner_conf.max_switches must be an int >= 0, got {max_switches!r}")
        if not move_band >= 0 or (move_band and not max_switches):
            raise ValueError(f"pruner_conf.move_band must be >= 0 and needs max_switches > 0, got "
                             f"move_band {move_band!r}, max_switches {max_switches!r}")
        if gap_on_argmax and not hard_gap:
            raise ValueError("pruner_conf.gap_on_argmax needs hard_gap: true (it says which "
                             "architecture's sparsity the term's value is)")
        if not 0 <= hard_tail < 1:
            raise ValueError(f"pruner_conf.hard_tail must be in [0, 1), got {hard_tail!r}")
        super().__init__(prunable, ssl_model, target_sparsity, units, finalize_tolerance,
                         finetune_epochs)
        self.hard_tail = float(hard_tail)
        self.tail_from: Optional[int] = None  # first step of the hard tail, from the budget
        self.gap_on_argmax = bool(gap_on_argmax)
        self.tau_steps = float(tau_steps)  # resolved against the budget if a share
        self.tau = (float(tau_start), float(tau_end), steps_of(self.tau_steps, None))
        self.hard_gap = bool(hard_gap)
        self.arch_lr_scale = float(arch_lr_scale)
        init_term(self, warmup_steps, dual_lr, penalty, budget_ref_steps=budget_ref_steps,
                  dual_gap_clip=dual_gap_clip)
        # Candidate widths per group (distinct, increasing; conv keeps at least one channel).
        self.candidates: Dict[str, list] = {}
        for name, g in self.groups.items():
            lo = 1 if g.kind == "conv" else 0
            ks = sorted({min(g.num_units, max(lo, round(f * g.num_units))) for f in fr})
            self.candidates[name] = ks
        self.alpha = torch.nn.ParameterDict({
            self._key(n): torch.nn.Parameter(torch.zeros(len(ks))) for n, ks in self.candidates.items()})
        self.argmax_margin = float(argmax_margin)
        self.max_switches = max_switches
        self.move_band = float(move_band)
        self.holds = self.argmax_margin > 0 or max_switches > 0
        if self.holds:  # the candidate each group holds (-1: none yet); resumed
            self.register_buffer("held", torch.full((len(self.candidates),), -1, dtype=torch.long))
        self._expected = None
        self.attach()

    def logits(self, name: str) -> torch.Tensor:
        return self.alpha[self._key(name)] * self.arch_lr_scale

    def temperature(self) -> float:
        t0, t1, n = self.tau
        if n is None:
            raise unbound_budget("pruner_conf.tau_steps", NEEDS_BUDGETLR)
        frac = min(1.0, float(self.step) / n) if n else 1.0
        return t0 * (t1 / t0) ** frac

    def bind_budget(self, total_steps: int) -> None:
        super().bind_budget(total_steps)
        self.tau = self.tau[:2] + (steps_of(self.tau_steps, total_steps),)
        if self.hard_tail:
            self.tail_from = int(total_steps) - steps_of(self.hard_tail, total_steps)
            logging.info(f"pruner: steps from {self.tail_from} of {total_steps} train the kept "
                         "architecture with hard masks (hard_tail)")
        if self.max_switches:
            logging.info(f"pruner: at most {self.switches_per_step} architecture moves a step")

    @property
    def in_tail(self) -> bool:
        """This training forward is one of ``hard_tail``'s (the step counts after its loss)."""
        return self.training and self.tail_from is not None and int(self.step) >= self.tail_from

    @property
    def switches_per_step(self) -> int:
        """``max_switches`` scaled with the bound budget (``lagrangian.bind_budget``); 0: none."""
        return max(1, round(self.max_switches * self.budget_factor)) if self.max_switches else 0

    def chosen_widths(self, hold: bool = False) -> Dict[str, int]:
        """Argmax candidate per group; ties go to the wider one (all widths start tied). A group
        holding a candidate (``argmax_margin`` or ``max_switches``) keeps it unless the argmax
        beats it by more than the margin, and only the ``max_switches`` largest such leads
        move, one candidate each (with ``move_band``, the largest whose move keeps the band);
        ``hold`` (a training step) makes this choice the held one.
        Evaluation forwards and finalize see the held architecture: what training last used."""
        held = self.held.tolist() if self.holds else [-1] * len(self.candidates)
        if not hold and held and min(held) >= 0:
            return {n: ks[j] for (n, ks), j in zip(self.candidates.items(), held)}
        choice, leads = [], []
        for i, (n, ks) in enumerate(self.candidates.items()):
            logit = self.logits(n)
            j, h = self.argmax_index(logit), held[i]
            if h >= 0 and j != h:
                lead = float(logit[j] - logit[h])
                if lead <= self.argmax_margin:
                    j = h
                else:
                    leads.append((lead, i, 1 if j > h else -1))
            choice.append(j)
        limit = self.switches_per_step
        if limit:  # the largest leads move one candidate towards their argmax
            for _, i, _ in leads:
                choice[i] = held[i]
            if self.move_band and leads:  # distance of the held architecture to this step's target
                target = warmed_up_target(self.target_sparsity, self.step, self.warmup_steps)
                gap = self._gap_at(choice, target)
            for _, i, step in sorted(leads, reverse=True):
                if limit == 0:
                    break
                move = list(choice)
                move[i] += step
                if self.move_band:
                    new = self._gap_at(move, target)
                    if not keeps_band(new, gap, self.move_band):
                        continue
                    gap = new
                choice, limit = move, limit - 1
        if hold and self.holds:
            self.held.copy_(torch.tensor(choice))
        return {n: ks[j] for (n, ks), j in zip(self.candidates.items(), choice)}

    @staticmethod
    def argmax_index(logit: torch.Tensor) -> int:
        """A group's argmax candidate index; ties go to the wider one (all widths start tied)."""
        return len(logit) - 1 - int(logit.flip(0).argmax())

    @staticmethod
    def expected_width(logit: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
        """A group's width expected under the softmax of its logits."""
        return torch.softmax(logit, 0) @ torch.tensor(ks, dtype=logit.dtype, device=logit.device)

    def expected_widths(self) -> Dict[str, torch.Tensor]:
        """Each group's width expected under the softmax of its logits (as HJ's under its gates)."""
        return {n: self.expected_width(self.logits(n), ks) for n, ks in self.candidates.items()}

    def unheld_widths(self) -> Dict[str, int]:
        """The logits' own architecture: the argmax candidate of every group."""
        return {n: ks[self.argmax_index(self.logits(n))] for n, ks in self.candidates.items()}

    def _sparsity_at(self, idx: Dict[str, int]) -> float:
        """The sparsity of the architecture with candidate index ``idx[group]`` in each group."""
        return float(self.sparsity_of({n: self.candidates[n][j] for n, j in idx.items()}))

    def _gap_at(self, idx: list, target: float) -> float:
        """|sparsity - target| of the architecture with candidate index ``idx[i]`` in group i."""
        return abs(self._sparsity_at(dict(zip(self.candidates, idx))) - target)

    # -- forward --------------------------------------------------------------------------
    def before_forward(self) -> None:
        if not self.training or self.in_tail:  # the kept architecture, hard (the tail: logits out of the graph)
            self.set_hard_widths(self.chosen_widths())
            self._expected = None
            return
        tau = self.temperature()
        for name, ks in self.candidates.items():
            y = torch.nn.functional.gumbel_softmax(self.logits(name), tau=tau, hard=False)
            self.column_mask(name).soft = y @ self.keep_masks(name, ks).to(y)
        self._expected = self.expected_widths()

    def loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        if self.in_tail:
            return self._tail_loss()
        training = self._expected is not None and torch.is_grad_enabled()
        chosen = float(self.sparsity_of(self.chosen_widths(hold=training)))
        if self._expected is None:  # evaluation: report only
            zero = self.lambda1.new_zeros(())
            return zero, {"sparsity": torch.tensor(chosen), "loss_sparsity": zero}
        expected = s = self.sparsity_of(self._expected)
        argmax = float(self.sparsity_of(self.unheld_widths())) if self.gap_on_argmax else None
        if self.hard_gap:  # the argmax architecture's value, the expectation's gradient
            # with gap_on_argmax the logits' own argmax, not the held architecture
            s = straight_through(s, chosen if argmax is None else argmax)
        target = warmed_up_target(self.target_sparsity, self.step, self.warmup_steps)
        term = sparsity_term(s - target, self.lambda1, self.step, self.penalty, self.dual_lr,
                             update=torch.is_grad_enabled(), gap_clip=self.dual_gap_clip)
        for name in self.candidates:  # each forward's soft masks are used once
            self.column_mask(name).soft = None
        self._expected = None
        return term, self._step_stats(term, chosen, expected, target, argmax)

    def _tail_loss(self) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """A hard-tail step (``hard_tail``): no term, the step counted, the stats a search step
        logs (the trace's columns stay filled)."""
        zero = self.lambda1.new_zeros(())
        target = warmed_up_target(self.target_sparsity, self.step, self.warmup_steps)
        if torch.is_grad_enabled():
            self.step.add_(1)
        with torch.no_grad():
            expected = self.sparsity_of(self.expected_widths())
        argmax = float(self.sparsity_of(self.unheld_widths())) if self.gap_on_argmax else None
        return zero, self._step_stats(zero, float(self.sparsity_of(self.chosen_widths())),
                                      expected, target, argmax)

    def _step_stats(self, term, chosen: float, expected, target: float,
                    argmax: Optional[float]) -> Dict[str, torch.Tensor]:
        """What a training step logs (train.log, trace.tsv)."""
        stats = {"loss_sparsity": term.detach(), "sparsity": torch.tensor(chosen),
                 "expected_sparsity": expected.detach(), "target_sparsity": torch.tensor(target),
                 "lambda1": self.lambda1.clone(), "gumbel_tau": torch.tensor(self.temperature())}
        if argmax is not None:
            stats["argmax_sparsity"] = torch.tensor(argmax)
        return stats

    # -- finalize -------------------------------------------------------------------------
    @torch.no_grad()
    def snap_widths(self, widths: Dict[str, int]) -> Dict[str, int]:
        idx = {n: self.candidates[n].index(w) for n, w in widths.items()}
        logp = {n: torch.log_softmax(self.logits(n), 0) for n in self.candidates}
        tol, target, s_of = self.finalize_tolerance, self.target_sparsity, self._sparsity_at
        while True:
            gap = s_of(idx) - target
            if abs(gap) <= tol:
                break
            step = -1 if gap < 0 else 1  # smaller widths raise the sparsity
            moves = [(float(logp[n][j + step] - logp[n][j]), n) for n, j in idx.items()
                     if 0 <= j + step < len(self.candidates[n])]
            if not moves:
                break
            nxt = dict(idx)
            nxt[max(moves)[1]] += step
            new_gap = s_of(nxt) - target
            if new_gap * gap < 0:  # crossed the target: keep whichever side is closer
                if abs(new_gap) < abs(gap):
                    idx = nxt
                break
            idx = nxt
        return {n: self.candidates[n][j] for n, j in idx.items()}
