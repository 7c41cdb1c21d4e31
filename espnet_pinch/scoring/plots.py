"""Figures of the results report, drawn from ``results.json`` rows and seed groups
(``results_summary.json``; see ``results.py``).

matplotlib is imported inside each function (Agg backend) so the other ``results``
subcommands do not pay for it.
"""
from __future__ import annotations

from pathlib import Path

from espnet_pinch.utils.atomic import atomic_file


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_wer_axes(plt, fig, ax, path, xlabel: str, test_set: str, title: str) -> bool:
    """Label a WER plot, write it atomically as PNG, close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"WER on {test_set} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return True


def plot_per_layer(rows: list[dict], path: str | Path) -> bool:
    """Grouped bar chart of per-layer sparsity, one colour per pruned model; False if none."""
    pruned = [r for r in rows if r.get("per_layer_sparsity")]
    if not pruned:
        return False
    plt = _pyplot()
    # union in first-seen order: structured and fine-grained methods may report different layers
    names = list(dict.fromkeys(n for r in pruned for n in r["per_layer_sparsity"]))
    width = 0.8 / len(pruned)
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(names)), 4.5))
    for i, r in enumerate(pruned):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [r["per_layer_sparsity"].get(n, 0) for n in names], width,
               label=f"{r['tag']} (overall {r['sparsity']:.3f})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))])
    ax.set_xticklabels([n.replace("encoder.layers.", "L").replace("self_attn.", "")
                        .replace("feature_extractor.conv_layers.", "conv") for n in names],
                       rotation=90, fontsize=7)
    ax.set_ylabel("sparsity (fraction of zeros)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Per-layer sparsity of the pruned models")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return True


def plot_wer_vs_sparsity(groups: list[dict], test_set: str, path: str | Path,
                         front: dict | None = None) -> bool:
    """WER on ``test_set`` against achieved sparsity from ``seed_groups`` entries: per pruning
    method its mean over seeds with the seed spread (± std) as error bars and its frontier
    (``results.frontier``) circled; dense_cont as a band (mean ± std over seeds), the starting
    dense model as a dashed line. False (nothing written) if no entry has that WER."""
    scored = [g for g in groups if g["wer_mean"].get(test_set) is not None
              and g.get("budget_epochs") is None]
    if not scored:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for g in scored:
        mean, std = g["wer_mean"][test_set], g["wer_std"][test_set]
        if g["method"] == "dense_cont":
            ax.axhspan(mean - std, mean + std, color="gray", alpha=0.25)
            ax.axhline(mean, color="gray", label=f"dense_cont ({mean:.2f}% ± {std:.2f})")
        elif g["method"] == "dense":
            ax.axhline(mean, color="gray", linestyle="--", label=f"dense start ({mean:.2f}%)")
    front = front or {}
    for method in sorted({g["method"] for g in scored} - {"dense", "dense_cont"}):
        pts = sorted((g["sparsity_mean"], g["wer_mean"][test_set], g["wer_std"][test_set],
                      g["target_sparsity"]) for g in scored if g["method"] == method)
        line = ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                           marker="o", capsize=3, label=method)
        for x, y, _, t in pts:
            if front.get(method) is not None and t == front[method]:
                ax.plot([x], [y], marker="o", markersize=14, markerfacecolor="none",
                        color=line[0].get_color())
    return _save_wer_axes(plt, fig, ax, path, "achieved sparsity of the prunable weights", test_set,
                          f"WER vs sparsity ({test_set}; circled: each method's lossless frontier)")


def plot_wer_vs_time(groups: list[dict], test_set: str, path: str | Path) -> bool:
    """The budget sweep: WER on ``test_set`` (mean ± std over seeds) against compression wall
    seconds, one line per method over its budgets, dense_cont included. False if no sweep."""
    sweep = [g for g in groups if g.get("budget_epochs") is not None
             and g["wer_mean"].get(test_set) is not None and g.get("compression_seconds_mean")]
    if not sweep:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({g["method"] for g in sweep}):
        pts = sorted((g["compression_seconds_mean"], g["wer_mean"][test_set], g["wer_std"][test_set],
                      g["budget_epochs"]) for g in sweep if g["method"] == method)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                    capsize=3, label=method, color="gray" if method == "dense_cont" else None)
        for x, y, _, b in pts:
            ax.annotate(f"{b}ep", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    return _save_wer_axes(plt, fig, ax, path, "compression wall seconds (all training runs and finalize)",
                          test_set, f"Compression time vs quality ({test_set}; labels: budget in epochs)")


def plot_layer_trajectories(runs: list[tuple[str, list[dict]]], path: str | Path) -> bool:
    """Per-layer sparsity against the training step, one panel per run (``(tag, probes)`` from
    each run's ``layers.jsonl``): CNN layers in blues, Transformer matrices in reds, others in
    grey. Shows whether the layers' thresholds move apart or in lockstep. False if no run."""
    runs = [(tag, probes) for tag, probes in runs if probes]
    if not runs:
        return False
    plt = _pyplot()
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (tag, probes) in zip(axes.flat, runs):
        names = list(probes[-1]["layers"])
        steps = [p["step"] for p in probes]
        for n in names:
            kind = "conv" if "conv" in n else "encoder" if n.startswith("encoder") else "other"
            colour = {"conv": "tab:blue", "encoder": "tab:red", "other": "tab:gray"}[kind]
            ys = [p["layers"].get(n, {}).get("sparsity") for p in probes]
            ax.plot(steps, ys, color=colour, alpha=0.55, lw=1)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel("layer sparsity")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, label=l) for c, l in
               (("tab:blue", "CNN conv"), ("tab:red", "Transformer matrix"), ("tab:gray", "other"))]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("Per-layer sparsity during training (one line per gated layer)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return True
