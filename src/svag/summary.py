"""Aggregate runs over seeds: the data behind figures and tables.

Runs come from :func:`svag.runfolder.load_runs` (re-exported here with :class:`~svag.runfolder.Run`);
this module reads no file itself. Runs of one comparison share the evaluation grid in continuous
time, so record ``j`` of every run is at the same ``sde_time``; aggregation is over seeds at each
grid point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .runfolder import Run, load_runs

__all__ = ["METRICS", "Curve", "Run", "aggregate", "load_runs", "markdown_table", "summary_rows"]

METRICS = ("test_acc", "test_loss", "train_acc", "train_loss", "weight_norm_sq", "grad_norm_sq")


@dataclass
class Curve:
    """Mean and std over seeds of one metric for one value of ``l``, on the shared time grid."""

    l: float
    metric: str
    sde_time: np.ndarray
    effective_step: np.ndarray
    epoch: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_seeds: int


def _group_by_l(runs: list[Run]) -> dict[float, list[Run]]:
    groups: dict[float, list[Run]] = {}
    for r in runs:
        groups.setdefault(float(r.config["l"]), []).append(r)
    return dict(sorted(groups.items()))


def aggregate(runs: list[Run], metric: str) -> list[Curve]:
    """One :class:`Curve` per ``l``; runs cut short (diverged) are truncated to the shortest."""
    curves = []
    for l, group in _group_by_l(runs).items():
        n = min(len(r.records) for r in group)
        if n == 0:
            continue

        def col(key: str, n: int = n, group: list[Run] = group) -> np.ndarray:
            return np.array([[float(r.records[j][key]) for j in range(n)] for r in group])

        values = col(metric)
        curves.append(
            Curve(
                l=l,
                metric=metric,
                sde_time=col("sde_time").mean(0),
                effective_step=col("effective_step").mean(0),
                epoch=col("epoch").mean(0),
                mean=values.mean(0),
                std=values.std(0, ddof=1) if len(group) > 1 else np.zeros(n),
                n_seeds=len(group),
            )
        )
    return curves


def summary_rows(runs: list[Run], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Per ``l``: final and mid-run value of each metric (mean ± std over seeds) and the
    distance of each mean to the largest ``l``'s mean (the l → ∞ proxy)."""
    table: dict[float, dict] = {}
    for metric in metrics:
        curves = aggregate(runs, metric)
        if not curves:
            continue
        ref = curves[-1]
        for c in curves:
            row = table.setdefault(c.l, {"l": c.l, "seeds": c.n_seeds})
            for where, j in (("mid", (len(c.mean) - 1) // 2), ("final", len(c.mean) - 1)):
                row[f"{metric}_{where}"] = float(c.mean[j])
                row[f"{metric}_{where}_std"] = float(c.std[j])
                k = min(j if where == "mid" else len(ref.mean) - 1, len(ref.mean) - 1)
                row[f"{metric}_{where}_dist"] = abs(float(c.mean[j]) - float(ref.mean[k]))
            row["sde_time_final"] = float(c.sde_time[-1])
            row["epoch_final"] = float(c.epoch[-1])
    return [table[l] for l in sorted(table)]


def markdown_table(rows: list[dict], metrics: tuple[str, ...]) -> str:
    """Markdown: one line per l, ``mean ± std`` at mid-run and end, and |Δ| to the largest l."""
    head = ["l", "seeds"]
    for m in metrics:
        head += [f"{m} mid", f"{m} final", f"|Δ {m}| to l_max"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['l']:g}", str(r["seeds"])]
        for m in metrics:
            if f"{m}_final" not in r:
                cells += ["", "", ""]
                continue
            cells += [
                f"{_fmt(r[f'{m}_mid'])} ± {_fmt(r[f'{m}_mid_std'])}",
                f"{_fmt(r[f'{m}_final'])} ± {_fmt(r[f'{m}_final_std'])}",
                _fmt(r[f"{m}_final_dist"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}" if abs(x) < 1000 else f"{x:.4g}"
