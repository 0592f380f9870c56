"""Figures. Plotting only reads aggregated records (:mod:`svag.summary`); it never trains or
recomputes a statistic."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .summary import Run, aggregate

__all__ = ["plot_compare"]

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
