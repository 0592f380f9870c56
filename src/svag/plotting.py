"""Figures. Plotting only reads aggregated records (:mod:`svag.summary`); it never trains or
recomputes a statistic."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .summary import Run, aggregate

__all__ = ["plot_compare", "plot_lsr"]

LABELS = {
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "weight_norm_sq": r"$\|x\|^2$",
    "grad_norm_sq": r"$\|\nabla L\|^2$",
}


def plot_compare(
    runs: list[Run],
    path: str | os.PathLike,
    metrics: tuple[str, ...] = ("train_loss", "test_loss", "test_acc", "weight_norm_sq"),
    x: str = "effective_step",
) -> Path:
    """The paper-style figure: each metric vs effective steps (= SVAG steps / l), one line per
    ``l`` (SGD is ``l = 1``), mean over seeds with a ±1 std band."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, metric in zip(axes[0], metrics):
        curves = aggregate(runs, metric)
        for i, c in enumerate(curves):
            color = "black" if c.l == 1 else cmap(i / max(1, len(curves) - 1) * 0.85)
            xs = getattr(c, x)
            label = "SGD" if c.l == 1 else f"SVAG l={c.l:g}"
            ax.plot(xs, c.mean, color=color, lw=1.6 if c.l == 1 else 1.2, label=f"{label} (n={c.n_seeds})")
            ax.fill_between(xs, c.mean - c.std, c.mean + c.std, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("effective steps" if x == "effective_step" else x.replace("_", " "))
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    cfg = runs[0].config
    fig.suptitle(
        f"{cfg['data']} / {cfg['model']} (norm={cfg['norm']}), η={cfg['lr']:g}, B={cfg['batch_size']}, "
        f"λ={cfg['weight_decay']:g}: SGD vs SVAG, mean ± std over seeds",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_lsr(result: dict, path: str | os.PathLike) -> Path:
    """P1's LSR figure from an ``lsr.json`` result (see :mod:`svag.experiments.lsr_sweep`).

    Top: G/N vs B in log–log, slope-1 lines through each run, the threshold τ, runs above τ in
    red, the predicted ``B*`` as a red dashed line. Bottom: final train and test error vs B, with
    the region where the test error rose ≥ 20% above the baseline shaded.
    """
    import math

    rows = result.get("verdicts", [])
    tau = result["tau"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True)
    bs = [r["batch_size"] for r in rows if r["ratio"] > 0]
    gs = [r["ratio"] for r in rows if r["ratio"] > 0]
    if bs:
        span = [*bs, result["B_star"]] if math.isfinite(result["B_star"]) else bs
        lo, hi = min(span) / 1.5, max(span) * 1.5
        for b, g in zip(bs, gs):
            top.plot([lo, hi], [g * lo / b, g * hi / b], color="0.8", lw=0.8, zorder=1)
        errs = [r.get("ratio_se", 0.0) or 0.0 for r in rows if r["ratio"] > 0]
        colors = ["tab:red" if g > tau else "tab:blue" for g in gs]
        top.errorbar(bs, gs, yerr=[e if math.isfinite(e) else 0 for e in errs], fmt="none", ecolor="0.4", zorder=2)
        top.scatter(bs, gs, c=colors, zorder=3)
        top.set_xlim(lo, hi)
    top.axhline(tau, color="k", ls=":", lw=1, label=f"τ = {tau:g}")
    if math.isfinite(result["B_star"]):
        top.axvline(result["B_star"], color="tab:red", ls="--", label=f"predicted B* ≈ {result['B_star']:.0f}")
    top.set_xscale("log", base=2)
    top.set_yscale("log")
    top.set_ylabel("G/N at the run's own B")
    top.legend(fontsize=8)
    top.grid(alpha=0.3, which="both")
    all_b = [r["batch_size"] for r in rows]
    bottom.plot(all_b, [r["train_error"] for r in rows], "o-", label="train error")
    bottom.plot(all_b, [r["test_error"] for r in rows], "s-", label="test error")
    risen = [r["batch_size"] for r in rows if r["error_rose"]]
    if risen:
        bottom.axvspan(min(risen) / 1.2, max(all_b) * 1.5, color="tab:red", alpha=0.1, label="test error ≥ +20%")
    if math.isfinite(result["B_star"]):
        bottom.axvline(result["B_star"], color="tab:red", ls="--")
    bottom.set_xscale("log", base=2)
    bottom.set_xlabel("batch size B (LSR: η = κη0)")
    bottom.set_ylabel("final error")
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    base = result["baseline"]
    fig.suptitle(f"LSR test: baseline B0={base['batch_size']}, η0={base['lr']:g}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
