"""Aggregate runs over seeds: the data behind figures and tables.

Runs come from :func:`svag.runfolder.load_runs` (re-exported here with :class:`~svag.runfolder.Run`);
this module reads no file itself. Runs of one comparison share the evaluation grid in continuous
time, so record ``j`` of every run is at the same ``sde_time``; aggregation is over seeds at each
grid point. Runs are grouped by ``l`` and by their gradient noise: Gaussian-noise runs
(``gradient_noise="gaussian"``: NGD at ``l = 1``, Euler–Maruyama at ``l > 1``) form groups of their
own, after the minibatch (SGD/SVAG) ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from svag.plugins import MODEL_OPTIONS, is_spec
from svag.runfolder import Run, load_runs

__all__ = [
    "METRICS",
    "Curve",
    "Run",
    "aggregate",
    "compact_table",
    "l_label",
    "load_runs",
    "markdown_table",
    "model_options",
    "model_text",
    "report_points",
    "summary_rows",
]

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
    gradient_noise: str = "minibatch"  # the runs' config field: "gaussian" is NGD (l = 1) or Euler–Maruyama

    @property
    def label(self) -> str:
        return l_label(self.l, self.gradient_noise)


def l_label(l: float, gradient_noise: str = "minibatch") -> str:
    """``l`` as tables and legends show it: ``2``, or ``1 (NGD)`` / ``2 (EM)`` for Gaussian-noise runs."""
    if gradient_noise != "gaussian":
        return f"{l:g}"
    return "1 (NGD)" if l == 1 else f"{l:g} (EM)"


def _noise(run: Run) -> str:
    return run.config.get("gradient_noise", "minibatch")


def _group_by_l(runs: list[Run]) -> dict[tuple[str, float], list[Run]]:
    """Runs by ``(gradient_noise, l)``: the minibatch groups by ``l``, then the Gaussian-noise ones."""
    groups: dict[tuple[str, float], list[Run]] = {}
    for r in runs:
        groups.setdefault((_noise(r), float(r.config["l"])), []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0] == "gaussian", kv[0][1])))


def aggregate(runs: list[Run], metric: str) -> list[Curve]:
    """One :class:`Curve` per ``l`` (and per gradient noise); runs cut short (diverged) are truncated
    to the shortest."""
    curves = []
    for (noise, l), group in _group_by_l(runs).items():
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
                gradient_noise=noise,
            )
        )
    return curves


def report_points(n: int) -> dict[str, int]:
    """The evaluations that tables report, as indices into ``n`` records of the grid: ``"mid"``, the
    record at or just before half the run (``(n − 1) // 2``; with an evaluation at ``t = 0`` and every
    ``T/(n − 1)``, exactly half when ``n`` is odd), and ``"end"``, the last."""
    if n < 1:
        raise ValueError(f"need at least one evaluation, got n={n}")
    return {"mid": (n - 1) // 2, "end": n - 1}


def summary_rows(runs: list[Run], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """Per ``l`` (and gradient noise): final and mid-run value of each metric (mean ± std over seeds, and the
    standard error of the mean ``std/√n``, NaN for one seed) and the distance of each mean to the largest SVAG
    ``l``'s mean (the l → ∞ proxy)."""
    table: dict[tuple[str, float], dict] = {}
    for metric in metrics:
        curves = aggregate(runs, metric)
        if not curves:
            continue
        ref = [c for c in curves if c.gradient_noise != "gaussian"][-1:] or curves[-1:]
        ref = ref[0]
        for c in curves:
            row = table.setdefault((c.gradient_noise, c.l), {"l": c.l, "seeds": c.n_seeds})
            points = report_points(len(c.mean))
            for where, j in (("mid", points["mid"]), ("final", points["end"])):
                row[f"{metric}_{where}"] = float(c.mean[j])
                row[f"{metric}_{where}_std"] = float(c.std[j])
                row[f"{metric}_{where}_se"] = float(c.std[j]) / math.sqrt(c.n_seeds) if c.n_seeds > 1 else math.nan
                k = min(j if where == "mid" else len(ref.mean) - 1, len(ref.mean) - 1)
                row[f"{metric}_{where}_dist"] = abs(float(c.mean[j]) - float(ref.mean[k]))
            row["sde_time_final"] = float(c.sde_time[-1])
            row["epoch_final"] = float(c.epoch[-1])
            row["gradient_noise"] = c.gradient_noise
    return list(table.values())


def markdown_table(rows: list[dict], metrics: tuple[str, ...]) -> str:
    """Markdown: one line per l, ``mean ± std`` at mid-run and end, and |Δ| to the largest l."""
    head = ["l", "seeds"]
    for m in metrics:
        head += [f"{m} mid", f"{m} final", f"|Δ {m}| to l_max"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        noise = r.get("gradient_noise", "minibatch")
        cells = [l_label(r["l"], noise), str(r["seeds"])]
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


def compact_table(rows: list[dict], metrics: tuple[str, ...]) -> str:
    """The final value of each metric per l, ``mean ± SE`` over seeds, as plain aligned text that fits an
    80-column terminal for the four metrics of the comparison's summary (:func:`markdown_table` holds the rest:
    mid-run values, standard deviations, distances). A column shows its SEs to two significant figures (the
    smallest SE's) and its means to as many decimals; past 4 decimals or 15 characters a cell shows 3
    significant figures of the mean and 1 of the SE; one seed (no SE) shows the mean alone."""
    epoch = next((r["epoch_final"] for r in rows if "epoch_final" in r), math.nan)
    columns = []
    for m in metrics:
        pairs = [(r[f"{m}_final"], r.get(f"{m}_final_se", math.nan)) if f"{m}_final" in r else None for r in rows]
        ses = [se for p in pairs if p is not None for se in p[1:] if math.isfinite(se) and se > 0]
        decimals = max(0, 1 - math.floor(math.log10(min(ses)))) if ses else 4  # no spread: as markdown_table
        columns.append([_mean_se(*p, decimals) if p is not None else "" for p in pairs])
    head = ["l", "n", *metrics]
    body = [[l_label(r["l"], r.get("gradient_noise", "minibatch")), str(r["seeds"]), *(c[i] for c in columns)]
            for i, r in enumerate(rows)]  # fmt: skip
    widths = [max(len(line[k]) for line in (head, *body)) for k in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in (head, *body)]
    return "\n".join([f"final values (epoch {epoch:g}): mean ± SE over n seeds; full table: summary.md", *lines]) + "\n"


def _mean_se(mean: float, se: float, decimals: int) -> str:
    """``mean ± se`` with ``decimals`` decimals for :func:`compact_table` (its fallbacks: see there)."""
    if not math.isfinite(mean):
        return str(mean)
    if not math.isfinite(se):
        return f"{mean:.4g}"
    text = f"{mean:.{decimals}f} ± {se:.{decimals}f}"
    return text if decimals <= 4 and len(text) <= 15 else f"{mean:.3g} ± {se:.1g}"


def model_options(config: dict, derived: dict) -> dict:
    """The model options (:data:`svag.plugins.MODEL_OPTIONS`: norm, width, scale_invariant) that reached a
    run's model: those the runner recorded (``derived["model_options"]``: a plug-in's factory takes only those
    its signature names); for a folder from before that record, the config's for a built-in model (which takes
    them all) and none for a plug-in (which may have taken none)."""
    if "model_options" in derived:
        return dict(derived["model_options"])
    if is_spec(config.get("model")):
        return {}
    return {k: config[k] for k in MODEL_OPTIONS if k in config}


def model_text(config: dict, derived: dict) -> str:
    """``data / model`` as figures and verdicts show them, with ``(norm=...)`` where the norm reached the model
    (:func:`model_options`)."""
    norm = model_options(config, derived).get("norm")
    return f"{config['data']} / {config['model']}" + (f" (norm={norm})" if norm is not None else "")


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}" if abs(x) < 1000 else f"{x:.4g}"
