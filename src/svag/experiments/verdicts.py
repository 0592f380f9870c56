r"""Is my SGD its SDE? The verdict of a folder of runs, per metric and evaluation time.

A comparison (``svag compare``) holds SGD (``l = 1``) and SVAG at a ladder of ``l`` for several
seeds, and optionally NGD runs (``gradient_noise="gaussian"`` at ``l = 1``: full-batch gradient plus
Gaussian noise with SGD's covariance). For every metric of the records and every evaluation time
this module builds ``values[l, seed]`` (:func:`ladder_values`; ``NaN`` = missing or diverged) and
asks :mod:`svag.verdict` for

* the SDE's value ``μ̂_∞``: Richardson extrapolation over the ladder, by default weighted least
  squares of the per-``l`` means on ``1/l`` over every ``l`` (``μ_l = μ_∞ + c/l``, P1 Thm 4.3), with
  its 95% t-interval (:func:`svag.verdict.extrapolate`);
* the gap ``Δ = μ_1 − μ_∞`` with its 90% and 95% intervals (:func:`svag.verdict.gap`) and, with NGD
  runs, its two parts SGD − NGD (non-Gaussian noise) and NGD − SDE (discretization at step η)
  (:func:`svag.verdict.decompose`);
* the verdict against the margin δ of the metric (:data:`svag.verdict.DEFAULT_MARGINS`, or a
  ``--margin`` override): *follows* when the 90% interval of Δ lies inside ``(−δ, δ)`` (two one-sided
  tests at 5%), *departs* when the 95% interval excludes 0 and ``|Δ̂| > δ``, else *inconclusive*, with
  the seeds per ``l`` at which the 90% interval's half-width would fall below ``δ/2`` at the observed
  spread (:func:`svag.verdict.verdict`);
* the check that the ladder looks like weak order 1 (successive differences halve,
  :func:`svag.verdict.order_check`).

**Pairing.** Runs with the same seed at different ``l`` share their initialization (one seed tree,
:mod:`svag.seeds`), so when every ``l`` has the same seeds each contrast is taken per seed (each
seed's own ladder, a t-interval over seeds with ``n − 1`` degrees of freedom, over the seeds finite on
every row used); otherwise the ``l`` are independent groups (Welch–Satterthwaite). The outputs say
which, and give the width of the gap's interval both ways.

Runs are read through :mod:`svag.runfolder` only. They must be of one config (fields other than
:data:`FREE_FIELDS` equal) and share the evaluation grid; record ``j`` is placed at the last grid time
its ``sde_time`` reached. Outputs (:func:`write_verdicts`): ``verdicts.md`` (mid-run and end),
``verdicts.csv`` (every metric × time), ``verdicts.json`` (everything, read back by
:func:`read_verdicts` for the figure :func:`svag.plotting.plot_verdicts`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import verdict as V
from ..clock import TIME_RTOL
from ..records import read_json, write_csv, write_json, write_text
from ..runfolder import Run, RunFolder, load_runs
from ..summary import report_points

__all__ = [
    "FREE_FIELDS",
    "METRICS",
    "Ladder",
    "compute_verdicts",
    "ladder_values",
    "markdown",
    "missing_requirement",
    "read_verdicts",
    "run_verdicts",
    "verdict_lines",
    "write_verdicts",
]

# the metrics a verdict is drawn for, where the records have them (gn_ratio has no default margin)
METRICS = ("test_loss", "test_acc", "train_loss", "train_acc", "weight_norm_sq", "grad_norm_sq", "gn_ratio")
# config fields runs of one comparison may differ in: what each run is, not what is simulated
FREE_FIELDS = ("l", "seed", "gradient_noise", "gaussian_chunk", "device", "checkpoint_every", "data_root")
FILES = ("verdicts.md", "verdicts.csv", "verdicts.json")
LEVEL = 0.95  # the level of the intervals shown next to estimates (the verdict's α is separate)
SCHEMA = 1  # of verdicts.json

PAIRED = (
    "paired: seed s starts from the same initialization at every l (one seed tree), so each contrast is "
    "taken per seed, over the seeds finite at every l it uses (t-interval over seeds, n − 1 df)"
)
UNPAIRED = (
    "unpaired: the values of l do not all have the same seeds, so they are independent groups "
    "(Welch–Satterthwaite t-intervals)"
)


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Ladder:
    """One metric of a comparison as arrays over (time, l, seed).

    Attributes:
        metric: the record key.
        ls: the SVAG ladder (ascending; ``1`` is SGD), minibatch-noise runs.
        seeds: the seed of each column (the union over the ladder and NGD, ascending).
        times, epochs: the evaluation grid: continuous time and SGD-equivalent epochs.
        values: ``values[t, l, seed]``; NaN where a run is missing, stopped or diverged, or the record
            lacks the metric (non-finite values are read as NaN).
        ngd: ``ngd[t, seed]`` of the NGD runs (gaussian noise, ``l = 1``), ``None`` without them.
        paired: every ``l`` (and NGD, when present) has the same set of seeds.
        ngd_paired: the NGD runs have exactly the ladder's seeds (their decomposition is paired).
        notes: what was missing, stopped or diverged, one sentence each.
    """

    metric: str
    ls: tuple[float, ...]
    seeds: tuple[int, ...]
    times: np.ndarray
    epochs: np.ndarray
    values: np.ndarray
    ngd: np.ndarray | None
    paired: bool
    ngd_paired: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Index:
    """The runs of a comparison sorted into the ladder and NGD, on one grid."""

    ladder: dict[tuple[float, int], Run]
    ngd: dict[int, Run]
    ls: tuple[float, ...]
    seeds: tuple[int, ...]
    times: np.ndarray
    epochs: np.ndarray
    paired: bool
    ngd_paired: bool
    notes: tuple[str, ...]


def _name(run: Run) -> str:
    return run.path.name


def _index(runs: Sequence[Run]) -> _Index:
    if not runs:
        raise ValueError("no runs to compare: a verdict needs SGD (l = 1) and SVAG runs of one config")
    ref = runs[0]
    fixed = [k for k in ref.config if k not in FREE_FIELDS]
    grid = np.asarray(ref.derived["eval_times"], dtype=np.float64)
    for run in runs[1:]:
        differ = [k for k in fixed if run.config.get(k) != ref.config.get(k)]
        if differ:
            k = differ[0]
            raise ValueError(
                f"runs of one comparison must share their config apart from {', '.join(FREE_FIELDS)}: "
                f"{_name(run)} differs from {_name(ref)} in {differ} "
                f"({k}: {run.config.get(k)!r} vs {ref.config.get(k)!r})"
            )
        other = np.asarray(run.derived["eval_times"], dtype=np.float64)
        if other.shape != grid.shape or not np.allclose(other, grid, rtol=TIME_RTOL, atol=0.0):
            raise ValueError(
                f"runs of one comparison must share the evaluation grid: {_name(ref)} has {grid.size} times up to "
                f"t={grid[-1]:g}, {_name(run)} has {other.size} up to t={other[-1]:g}"
            )
    ladder: dict[tuple[float, int], Run] = {}
    ngd: dict[int, Run] = {}
    notes: list[str] = []
    for run in runs:
        l, seed = float(run.config["l"]), int(run.config["seed"])
        gaussian = run.config.get("gradient_noise", "minibatch") == "gaussian"
        if gaussian and l != 1.0:
            notes.append(f"{_name(run)}: Gaussian noise at l = {l:g} (Euler–Maruyama) is not used by the verdict")
            continue
        where, key = (ngd, seed) if gaussian else (ladder, (l, seed))
        if key in where:
            what = f"NGD seed {seed}" if gaussian else f"l = {l:g}, seed {seed}"
            raise ValueError(f"two runs of {what}: {where[key].path} and {run.path}; keep one")
        where[key] = run
    ls = tuple(sorted({l for l, _ in ladder}))
    by_l = {l: {s for (m, s) in ladder if m == l} for l in ls}
    seeds = tuple(sorted({s for _, s in ladder} | set(ngd)))
    paired = len({frozenset(v) for v in by_l.values()}) == 1
    if not paired:
        notes.append(
            "the values of l have different seeds ("
            + "; ".join(f"l = {l:g}: {sorted(v)}" for l, v in by_l.items())
            + "): unpaired intervals"
        )
    ngd_paired = bool(ngd) and paired and set(ngd) == next(iter(by_l.values()), set())
    if ngd and not ngd_paired:
        notes.append(f"NGD runs have seeds {sorted(ngd)}, not the ladder's: the decomposition is unpaired")
    for run in runs:
        st, n = run.status, len(run.records)
        if st.status == "completed" and n == grid.size:
            continue
        what = "NGD" if any(run is r for r in ngd.values()) else f"l = {run.config['l']:g}"
        why = f" ({st.message.splitlines()[0]})" if st.message else ""
        notes.append(
            f"{_name(run)} ({what}, seed {run.config['seed']}): {st.status}{why}, {n} of {grid.size} evaluations; "
            "its later values are missing"
        )
    epochs = np.asarray(ref.derived["eval_times"], dtype=np.float64) / float(ref.derived["time_per_epoch"])
    return _Index(ladder, ngd, ls, seeds, grid, epochs, paired, ngd_paired, tuple(notes))


def _column(run: Run, metric: str, grid: np.ndarray) -> np.ndarray:
    """The run's ``metric`` on the grid: record ``j`` goes to the last grid time its ``sde_time`` reached."""
    out = np.full(grid.size, np.nan)
    for row in run.records:
        j = int(np.searchsorted(grid, float(row["sde_time"]) * (1.0 + TIME_RTOL), side="right")) - 1
        if j < 0 or np.isfinite(out[j]):
            where = "before the first evaluation time" if j < 0 else f"a second time at t={grid[j]:g}"
            raise ValueError(f"{run.path}: a record at sde_time={row['sde_time']!r} is {where}")
        value = row.get(metric)
        out[j] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def _values(index: _Index, metric: str) -> Ladder:
    col = {s: i for i, s in enumerate(index.seeds)}
    values = np.full((index.times.size, len(index.ls), len(index.seeds)), np.nan)
    for (l, s), run in index.ladder.items():
        values[:, index.ls.index(l), col[s]] = _column(run, metric, index.times)
    ngd = None
    if index.ngd:
        ngd = np.full((index.times.size, len(index.seeds)), np.nan)
        for s, run in index.ngd.items():
            ngd[:, col[s]] = _column(run, metric, index.times)
    return Ladder(metric, index.ls, index.seeds, index.times, index.epochs, values, ngd, index.paired,
                  index.ngd_paired, index.notes)  # fmt: skip


def ladder_values(runs: Sequence[Run], metric: str) -> Ladder:
    """``values[t, l, seed]`` of ``metric`` from the runs of one comparison (see :class:`Ladder`).

    Raises:
        ValueError: no runs, runs of different configs or evaluation grids, two runs of the same
            ``(l, seed)``, or a record off the grid.
    """
    return _values(_index(runs), metric)


def missing_requirement(ls: Sequence[float], n_seeds: int) -> str | None:
    """Why no verdict can be drawn from ``ls`` and ``n_seeds`` seeds per ``l`` (``None``: it can)."""
    ls = sorted(float(l) for l in ls)
    if len(ls) < 2 or 1.0 not in ls or n_seeds < 2:
        shown = ", ".join(f"{l:g}" for l in ls) or "none"
        return (
            "the verdict needs at least 2 values of l with l = 1 (SGD) among them and at least 2 seeds per l; "
            f"got l = {shown} and {n_seeds} seed{'s' if n_seeds != 1 else ''}"
        )
    return None


# ---------------------------------------------------------------------------------------------- statistics


def _interval(est: V.Estimate, level: float) -> list[float]:
    return list(est.interval(level))


def _part(est: V.Estimate | None, alpha: float) -> dict | None:
    if est is None:
        return None
    return {"estimate": est.estimate, "low": est.interval(1 - alpha)[0], "high": est.interval(1 - alpha)[1],
            "se": est.se, "df": est.df}  # fmt: skip


def _too_few(ls: np.ndarray, v: np.ndarray, paired: bool, fit_ls: Sequence[float]) -> str | None:
    """Why the gap has no interval here (fewer than 2 seeds with a value), or ``None``."""
    rows = np.isin(ls, [1.0, *fit_ls])
    finite = np.isfinite(v[rows])
    if paired and finite.all(0).sum() < 2:
        return f"fewer than 2 seeds have a value at every l = {', '.join(f'{l:g}' for l in ls[rows])}"
    if not paired and (finite.sum(1) < 2).any():
        l = ls[rows][int(np.argmin(finite.sum(1)))]
        return f"fewer than 2 seeds have a value at l = {l:g}"
    return None


def _cell(ls, v, ngd, ngd_paired, paired, metric, margin, fit, use, fit_ls, alpha) -> dict:
    """Everything about one metric at one time: SDE, gap, verdict, decomposition, order check."""
    row: dict = {"means": [float(np.nanmean(r)) if np.isfinite(r).any() else math.nan for r in v],
                 "n": [int(np.isfinite(r).sum()) for r in v]}  # fmt: skip
    short = _too_few(ls, v, paired, fit_ls)
    if short:
        row["error"] = short
        return row
    g = V.gap(ls, v, paired=paired, fit=fit, use=use, alpha=alpha)
    sde = V.extrapolate(ls, v, paired=paired, fit=fit, use=use, level=LEVEL)
    row.update(
        sgd=g.sgd_mean,
        sde=sde.estimate,
        sde_interval=[sde.low, sde.high],
        coefficients=list(sde.coefficients),
        slope=sde.slope,
        gap=g.estimate,
        gap_se=g.se,
        gap_df=g.df,
        gap_interval=list(g.interval_alpha),
        gap_equivalence_interval=list(g.interval_2alpha),
        seeds=min(g.n_seeds),
    )
    if paired and not _too_few(ls, v, False, fit_ls):
        row["gap_interval_unpaired"] = _interval(V.gap(ls, v, paired=False, fit=fit, use=use, alpha=alpha), LEVEL)
    if margin is not None:
        try:
            delta = V.resolve_margin(metric, g.sgd_mean, margin)
        except ValueError as err:
            row["reason"] = str(err)
        else:
            vd = V.verdict(g, delta, alpha)
            row.update(delta=delta, outcome=vd.outcome, seeds_needed=vd.seeds_needed, reason=vd.reason)
    if ngd is not None:
        with_ngd = np.vstack([v, ngd])
        if ngd_paired:  # the NGD row rides along as an extra "l = 1" row of the complete-seed check
            short = _too_few(np.append(ls, 1.0), with_ngd, True, fit_ls)
        else:
            few = None if np.isfinite(ngd).sum() >= 2 else "fewer than 2 NGD seeds have a value"
            short = _too_few(ls, v, False, fit_ls) or few
        if short:
            row["decomposition_error"] = short
        else:
            d = V.decompose(ls, v, ngd, paired=ngd_paired, fit=fit, use=use, alpha=alpha)
            row["ngd"] = float(np.nanmean(ngd))
            row["non_gaussian"] = _part(d.non_gaussian, alpha)
            row["discretization"] = _part(d.discretization, alpha)
            row["total"] = _part(d.total, alpha)
    if len(ls) >= 3 and not _too_few(ls, v, paired, ls):
        oc = V.order_check(ls, v, paired=paired, level=LEVEL)
        row["order"] = {"ratios": list(oc.ratios), "expected": list(oc.expected), "flags": list(oc.flags)}
    return row


def _margin_entry(metric: str, overrides: Mapping[str, object]) -> tuple[object | None, dict | None]:
    """(the margin to pass to resolve_margin, its description) or (None, None) when the metric has none."""
    if metric in overrides:
        given = overrides[metric]
        text = given if isinstance(given, str) else repr(given)
        relative = isinstance(given, str) and given.strip().endswith("%")
        return given, {"given": text, "relative": relative, "source": "--margin"}
    if metric in V.DEFAULT_MARGINS:
        m = V.DEFAULT_MARGINS[metric]
        return m, {"value": m.value, "relative": m.relative, "source": "default", "rationale": m.rationale}
    return None, None


def compute_verdicts(
    runs: Sequence[Run],
    *,
    metrics: Sequence[str] | None = None,
    margins: Mapping[str, object] | None = None,
    fit: str = "wls",
    use: Sequence[float] | None = None,
    alpha: float = 0.05,
) -> dict:
    """The verdicts of a comparison, as one JSON-ready dict (what ``verdicts.json`` holds).

    Args:
        runs: the runs of one comparison (:func:`svag.runfolder.load_runs`): SGD and SVAG at ≥ 2 values
            of ``l`` including 1, ≥ 2 seeds, and optionally NGD runs (gaussian noise, ``l = 1``).
        metrics: the metrics (default :data:`METRICS`, those the records have).
        margins: overrides of :data:`svag.verdict.DEFAULT_MARGINS`, ``{metric: "0.02" | "2%" | number |
            Margin}`` (:func:`svag.verdict.resolve_margin`); a metric with neither gets no verdict.
        fit, use: the Richardson fit (``"wls"`` or ``"two_point"``) and the ``l`` it uses (default all).
        alpha: the test level (intervals of 1 − 2α for *follows*, 1 − α for *departs*).

    Raises:
        ValueError: what :func:`ladder_values` refuses, fewer than 2 values of ``l``, no ``l = 1``,
            fewer than 2 seeds per ``l``, or an unknown metric.
    """
    index = _index(runs)
    n_seeds = min(sum(1 for (l, _) in index.ladder if l == m) for m in index.ls) if index.ls else 0
    reason = missing_requirement(index.ls, n_seeds)
    if reason:
        raise ValueError(reason)
    # checks fit and use, and names the l the fit uses
    fit_ls = V.extrapolate(index.ls, np.zeros((len(index.ls), 2)), paired=True, fit=fit, use=use).ls
    margins = dict(margins or {})
    present = {k for run in runs for row in run.records for k in row}
    asked = tuple(metrics) if metrics is not None else METRICS
    unknown = [m for m in (*asked, *margins) if m not in METRICS]
    if unknown:
        raise ValueError(f"no verdict for metric {unknown[0]!r}; valid: {', '.join(METRICS)}")
    points = report_points(index.times.size)
    out: dict = {
        "schema": SCHEMA,
        "ls": list(index.ls),
        "seeds": list(index.seeds),
        "ngd_seeds": sorted(index.ngd) or None,
        "paired": index.paired,
        "pairing": PAIRED if index.paired else UNPAIRED,
        "fit": fit,
        "fit_ls": list(fit_ls),
        "weights": "seeds",
        "alpha": alpha,
        "level": LEVEL,
        "times": index.times.tolist(),
        "epochs": index.epochs.tolist(),
        "points": points,
        "notes": list(index.notes),
        "setting": _setting(index),
        "metrics": {},
    }
    for metric in asked:
        if metric not in present:
            continue
        lad = _values(index, metric)
        if not np.isfinite(lad.values).any():
            continue
        margin, described = _margin_entry(metric, margins)
        rows = []
        for j in range(index.times.size):
            ngd = None if lad.ngd is None else lad.ngd[j]
            cell = _cell(np.asarray(index.ls), lad.values[j], ngd, index.ngd_paired, index.paired, metric, margin,
                         fit, use, fit_ls, alpha)  # fmt: skip
            rows.append({"time": float(index.times[j]), "epoch": float(index.epochs[j]), **cell})
        out["metrics"][metric] = {"margin": described, "rows": rows}
    return out


def _setting(index: _Index) -> dict:
    sgd = next(r for (l, _), r in sorted(index.ladder.items()) if l == 1.0)
    cfg, names = sgd.config, sgd.derived.get("optimizer_names", {})
    keys = ("data", "model", "norm", "optimizer", "lr", "batch_size", "weight_decay", "epochs", "sampling")
    return {**{k: cfg.get(k) for k in keys}, "names": names}


# ---------------------------------------------------------------------------------------------- writing


def _fmt(x: float | None, digits: int) -> str:
    """``x`` with ``digits`` decimals and a true minus sign (for text; the CSV keeps plain numbers)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}".replace("-", "−")


def _digits(scale: float) -> int:
    """Decimals that show ``scale`` (a margin or a width) to two significant figures."""
    if not math.isfinite(scale) or scale <= 0:
        return 3
    return max(0, 1 - math.floor(math.log10(scale)))


def _signed(x: float, digits: int) -> str:
    s = _fmt(x, digits)
    return s if s.startswith("−") or s == "—" else f"+{s}"


def _pair(iv: Sequence[float], digits: int) -> str:
    return f"[{_fmt(iv[0], digits)}, {_fmt(iv[1], digits)}]"


OUTCOME_TEXT = {"follows": "follows its SDE", "departs": "departs from its SDE", "inconclusive": "inconclusive"}


def verdict_lines(report: Mapping, where: str = "end") -> list[str]:
    """One line per metric with a verdict at ``where`` (``"mid"`` or ``"end"``), e.g.
    ``test_loss: follows its SDE — gap +0.004 [−0.010, 0.018] (δ = 0.021, 3 seeds)``, the interval at
    95%; with NGD runs a second line splits the gap."""
    j = report["points"][where]
    lines = []
    for metric, entry in report["metrics"].items():
        row = entry["rows"][j]
        if "outcome" not in row:
            continue
        d = _digits(row["delta"])
        text = (
            f"{metric}: {OUTCOME_TEXT[row['outcome']]} — gap {_signed(row['gap'], d)} {_pair(row['gap_interval'], d)} "
            f"(δ = {_fmt(row['delta'], d)}, {row['seeds']} seeds"
        )
        if row["outcome"] == "inconclusive":
            text += f"; about {row['seeds_needed']} seeds per l would decide"
        lines.append(text + ")")
        if row.get("non_gaussian"):
            ng, di = row["non_gaussian"], row["discretization"]
            lines.append(
                f"  = non-Gaussian noise (SGD − NGD) {_signed(ng['estimate'], d)} {_pair([ng['low'], ng['high']], d)}"
                f" + discretization (NGD − SDE) {_signed(di['estimate'], d)} {_pair([di['low'], di['high']], d)}"
            )
    return lines


def _margin_text(entry: dict | None, delta: float | None, digits: int) -> str:
    if entry is None:
        return "none"
    value = _fmt(delta, digits)
    if entry["source"] == "--margin":
        return f"{value} (--margin {entry['given']})"
    return f"{value} ({entry['value']:.0%} of SGD)" if entry["relative"] else value


def markdown(report: Mapping) -> str:
    """``verdicts.md``: the setting, the verdict table at mid-run and at the end, the decomposition
    (with NGD runs), pairing widths, the weak-order check and the notes."""
    level, alpha = report["level"], report["alpha"]
    eq = 1 - 2 * alpha
    ls = ", ".join(f"{l:g}" for l in report["ls"])
    fit_ls = ", ".join(f"{l:g}" for l in report["fit_ls"])
    fit = (
        f"weighted least squares of the per-l means on 1/l over l = {fit_ls} (weights: seeds per l)"
        if report["fit"] == "wls"
        else f"two-point Richardson on l = {fit_ls}"
    )
    s = report["setting"]
    names = s.get("names") or {}
    lines = [
        "# Does SGD follow its SDE? The verdict",
        "",
        f"{s['data']} / {s['model']} (norm={s['norm']}), {names.get('simulated', s['optimizer'])} η={s['lr']:g}, "
        f"B={s['batch_size']}, λ={s['weight_decay']:g}, {s['epochs']:g} epochs, sampling {s['sampling']}.",
        "",
        f"SGD is the l = 1 run; its SDE (l → ∞) is extrapolated from SVAG at l = {ls}: Richardson, μ_l = μ_∞ + c/l, "
        f"{fit}. Seeds {', '.join(map(str, report['seeds']))}; {report['pairing']}.",
        "",
        f"*follows*: the {eq:.0%} interval of the gap SGD − SDE lies inside ±δ (two one-sided tests at "
        f"{alpha:.0%}); *departs*: the {1 - alpha:.0%} interval excludes 0 and |gap| > δ; otherwise *inconclusive*, "
        f"with the seeds per l at which the {eq:.0%} interval's half-width would fall below δ/2 at the observed "
        f"spread. Intervals shown: {level:.0%} (t over seeds).",
        "",
        f"| metric | when | SGD | SDE ({level:.0%}) | gap SGD − SDE ({level:.0%}) | {eq:.0%} interval | δ | verdict "
        "| seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for metric, entry in report["metrics"].items():
        for where, j in report["points"].items():
            row = entry["rows"][j]
            when = f"{where} (epoch {row['epoch']:g})"
            if "gap" not in row:
                lines.append(f"| {metric} | {when} | — | — | — | — | — | no interval: {row.get('error', '')} | — |")
                continue
            width = row["gap_interval"][1] - row["gap_interval"][0]
            d = _digits(row.get("delta") or width / 4)
            dm = _digits(abs(row["sde_interval"][1] - row["sde_interval"][0]) / 4)
            outcome = row.get("outcome")
            if outcome == "inconclusive":
                outcome += f" ({row['seeds_needed']} seeds per l would decide)"
            elif outcome is None:
                outcome = f"no margin (--margin {metric}=VALUE)" if entry["margin"] is None else row.get("reason", "")
            cells = [
                metric,
                when,
                _fmt(row["sgd"], dm),
                f"{_fmt(row['sde'], dm)} {_pair(row['sde_interval'], dm)}",
                f"{_signed(row['gap'], d)} {_pair(row['gap_interval'], d)}",
                _pair(row["gap_equivalence_interval"], d),
                _margin_text(entry["margin"], row.get("delta"), d),
                outcome,
                str(row["seeds"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if report.get("ngd_seeds"):
        lines += [
            "",
            "## The gap in two parts (NGD runs)",
            "",
            "NGD: full-batch gradient plus Gaussian noise with SGD's covariance, at l = 1 (P1's NGD; Euler–Maruyama "
            f"of the SDE with step η). SGD − NGD is the effect of SGD's non-Gaussian noise, NGD − SDE the "
            f"discretization error at step η; the two add up to the gap. {level:.0%} intervals.",
            "",
            "| metric | when | NGD | SGD − SDE | SGD − NGD (non-Gaussian) | NGD − SDE (discretization) |",
            "|---|---|---|---|---|---|",
        ]
        for metric, entry in report["metrics"].items():
            for where, j in report["points"].items():
                row = entry["rows"][j]
                if not row.get("non_gaussian"):
                    continue
                d = _digits(row.get("delta") or (row["gap_interval"][1] - row["gap_interval"][0]) / 4)
                parts = [row["total"], row["non_gaussian"], row["discretization"]]
                cells = " | ".join(f"{_signed(p['estimate'], d)} {_pair([p['low'], p['high']], d)}" for p in parts)
                lines.append(f"| {metric} | {where} | {_fmt(row['ngd'], d)} | {cells} |")
    if report["paired"]:
        lines += [
            "",
            "## Pairing",
            "",
            f"Width of the gap's {level:.0%} interval at the end, paired (as above) and with the same runs treated as "
            "independent groups (unpaired):",
            "",
            "| metric | paired | unpaired | paired / unpaired |",
            "|---|---|---|---|",
        ]
        j = report["points"]["end"]
        for metric, entry in report["metrics"].items():
            row = entry["rows"][j]
            if "gap_interval_unpaired" not in row:
                continue
            wp = row["gap_interval"][1] - row["gap_interval"][0]
            wu = row["gap_interval_unpaired"][1] - row["gap_interval_unpaired"][0]
            d = _digits(wp / 4)
            lines.append(f"| {metric} | {_fmt(wp, d)} | {_fmt(wu, d)} | {wp / wu:.2f} |" if wu > 0 else
                         f"| {metric} | {_fmt(wp, d)} | {_fmt(wu, d)} | — |")  # fmt: skip
    flagged = []
    for metric, entry in report["metrics"].items():
        for where, j in report["points"].items():
            order = entry["rows"][j].get("order")
            if order and any(order["flags"]):
                ratios = ", ".join(f"{r:.2f}" for r in order["ratios"])
                flagged.append(f"- {metric} ({where}): ratios {ratios} (expected {order['expected'][0]:.2f})")
    lines += ["", "## Weak order 1", ""]
    if len(report["ls"]) < 3:
        lines.append("Checking that successive differences μ_l − μ_{2l} halve needs at least 3 values of l.")
    elif flagged:
        lines.append(
            "The successive differences μ_l − μ_{2l} of these metrics do not shrink like 1/l (the contrast "
            f"d_(j+1) − ρ d_j excludes 0 at {level:.0%}): the extrapolation's O(1/l²) bias may not be small. "
            "A two-point fit on the largest l (`--fit two_point`) or a fit without l = 1 (`--fit-ls`) is less exposed."
        )
        lines += ["", *flagged]
    else:
        lines.append(f"Successive differences μ_l − μ_{{2l}} are consistent with 1/l ({level:.0%}) for every metric "
                     "at mid-run and at the end.")  # fmt: skip
    lines += ["", "## Margins", ""]
    for metric, entry in report["metrics"].items():
        m = entry["margin"]
        if m is None:
            lines.append(f"- {metric}: none (no default; give one with --margin {metric}=VALUE or PERCENT%)")
        elif m["source"] == "--margin":
            lines.append(f"- {metric}: {m['given']} (--margin)")
        else:
            size = f"{m['value']:.0%} of SGD's value" if m["relative"] else f"{m['value']:g}"
            lines.append(f"- {metric}: {size}, {m['rationale']}")
    if report["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "metric", "where", "sde_time", "epoch", "sgd", "sde", "sde_low", "sde_high", "gap", "gap_se", "gap_df",
    "gap_low", "gap_high", "gap_eq_low", "gap_eq_high", "delta", "outcome", "seeds", "seeds_needed",
    "width_paired", "width_unpaired", "ngd", "non_gaussian", "non_gaussian_low", "non_gaussian_high",
    "discretization", "discretization_low", "discretization_high",
)  # fmt: skip


def _csv_rows(report: Mapping) -> list[dict]:
    where = {j: w for w, j in report["points"].items()}
    out = []
    for metric, entry in report["metrics"].items():
        for j, row in enumerate(entry["rows"]):
            r = {"metric": metric, "where": where.get(j, ""), "sde_time": row["time"], "epoch": row["epoch"]}
            if "gap" in row:
                r.update(
                    sgd=row["sgd"], sde=row["sde"], sde_low=row["sde_interval"][0], sde_high=row["sde_interval"][1],
                    gap=row["gap"], gap_se=row["gap_se"], gap_df=row["gap_df"], gap_low=row["gap_interval"][0],
                    gap_high=row["gap_interval"][1], gap_eq_low=row["gap_equivalence_interval"][0],
                    gap_eq_high=row["gap_equivalence_interval"][1], seeds=row["seeds"],
                )  # fmt: skip
                width = row["gap_interval"][1] - row["gap_interval"][0]
                if report["paired"]:
                    r["width_paired"] = width
                    if "gap_interval_unpaired" in row:
                        r["width_unpaired"] = row["gap_interval_unpaired"][1] - row["gap_interval_unpaired"][0]
                else:
                    r["width_unpaired"] = width
            for key in ("delta", "outcome", "seeds_needed", "ngd"):
                if row.get(key) is not None:
                    r[key] = row[key]
            for part in ("non_gaussian", "discretization"):
                if row.get(part):
                    r[part], r[f"{part}_low"], r[f"{part}_high"] = (row[part][k] for k in ("estimate", "low", "high"))
            out.append(r)
    return out


def write_verdicts(runs_dir: str | os.PathLike, report: Mapping) -> tuple[Path, Path, Path]:
    """Write ``verdicts.md``, ``verdicts.csv`` and ``verdicts.json`` into ``runs_dir`` (atomically)."""
    md, csv, js = (Path(runs_dir) / name for name in FILES)
    write_json(js, report)
    write_csv(csv, _csv_rows(report), CSV_COLUMNS)
    write_text(md, markdown(report))
    return md, csv, js


def read_verdicts(runs_dir: str | os.PathLike) -> dict:
    """``verdicts.json`` of ``runs_dir`` (NaN restored), checked for its schema."""
    report = read_json(Path(runs_dir) / FILES[2])
    if not isinstance(report, dict) or report.get("schema") != SCHEMA or "metrics" not in report:
        raise ValueError(f"{Path(runs_dir) / FILES[2]} is not a verdicts file of schema {SCHEMA}")
    return report


def run_verdicts(
    runs_dir: str | os.PathLike, *, names: Sequence[str] | None = None, **kwargs
) -> tuple[dict, tuple[Path, Path, Path]]:
    """Load the runs of ``runs_dir`` (``names``: only these sub-folders), compute the verdicts
    (:func:`compute_verdicts`, ``kwargs``) and write them; returns the report and the three paths."""
    if names is None:
        runs = load_runs(runs_dir)
    else:
        runs = [RunFolder(Path(runs_dir) / n).load() for n in names if RunFolder(Path(runs_dir) / n).exists()]
    report = compute_verdicts(runs, **kwargs)
    return report, write_verdicts(runs_dir, report)
