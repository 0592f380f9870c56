r"""Is my SGD its SDE? The verdict of a folder of runs, per metric and evaluation time.

A comparison (``svag compare``) holds SGD (``l = 1``) and SVAG at a ladder of ``l`` for several
seeds, and optionally NGD runs (``gradient_noise="gaussian"`` at ``l = 1``: full-batch gradient plus
Gaussian noise with SGD's covariance). For every metric of the records and every evaluation time
this module builds ``values[l, seed]`` (:func:`ladder_values`; ``NaN`` = missing or diverged) and
asks :mod:`svag.analysis.richardson` and :mod:`svag.analysis.equivalence` for

* the SDE's value ``μ̂_∞``: Richardson extrapolation over the ladder, by default weighted least
  squares of the per-``l`` means on ``1/l`` over every ``l`` (``μ_l = μ_∞ + c/l``, P1 Thm 4.3), with
  its 95% t-interval (:func:`svag.analysis.richardson.extrapolate`);
* the gap ``Δ = μ_1 − μ_∞`` with its 90% and 95% intervals (:func:`svag.analysis.equivalence.gap`) and, with NGD
  runs, its two parts SGD − NGD (non-Gaussian noise) and NGD − SDE (discretization at step η)
  (:func:`svag.analysis.equivalence.decompose`);
* the verdict against the margin δ of the metric (:data:`svag.analysis.equivalence.DEFAULT_MARGINS`, or a
  ``--margin`` override): *follows* when the 90% interval of Δ lies inside ``(−δ, δ)`` (two one-sided
  tests at 5%), *departs* when the 95% interval excludes 0 and ``|Δ̂| > δ``, else *inconclusive*, with
  the seeds per ``l`` at which the 90% interval's half-width would fall below ``δ/2`` at the observed
  spread (:func:`svag.analysis.equivalence.verdict`);
* the check that the ladder looks like weak order 1 (successive differences halve,
  :func:`svag.analysis.richardson.order_check`).

**Pairing.** Runs with the same seed at different ``l`` share their initialization (one seed tree,
:mod:`svag.seeds`), so when every ``l`` has the same seeds each contrast is taken per seed (each
seed's own ladder, a t-interval over seeds with ``n − 1`` degrees of freedom, over the seeds finite on
every row used); otherwise the ``l`` are independent groups (Welch–Satterthwaite). The outputs say
which, and give the width of the gap's interval both ways.

Runs are read through :mod:`svag.runfolder` only. They must be of one config (fields other than
:data:`FREE_FIELDS` equal) and share the evaluation grid; record ``j`` is placed at the last grid time
its ``sde_time`` reached. Outputs (:func:`write_verdicts`): ``verdicts.md`` (mid-run and end),
``verdicts.csv`` (every metric × time), both written from the report by
:mod:`svag.analysis.report_text`, and ``verdicts.json`` (everything, read back by
:func:`read_verdicts` for the figure :func:`svag.analysis.plotting.plot_verdicts`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from svag import sweepfolder
from svag.analysis import equivalence as E
from svag.analysis import richardson as V
from svag.analysis.report_text import CSV_COLUMNS, csv_rows, markdown, verdict_lines
from svag.analysis.summary import model_options, report_points
from svag.clock import TIME_RTOL
from svag.records import read_json, write_csv, write_json, write_text
from svag.runfolder import Run, RunFolder, load_runs

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
FILES = (sweepfolder.VERDICTS_MD, sweepfolder.VERDICTS_CSV, sweepfolder.VERDICTS_JSON)
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
UNPAIRED_ASKED = (
    "unpaired as asked: each l is an independent group of seeds (Welch–Satterthwaite t-intervals), although "
    "seed s shares its initialization across l"
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
    grid = _shared_grid(runs)
    notes: list[str] = []
    ladder, ngd = _sort_runs(runs, notes)
    ls = tuple(sorted({l for l, _ in ladder}))
    seeds = tuple(sorted({s for _, s in ladder} | set(ngd)))
    paired, ngd_paired = _pairing(ladder, ngd, ls, notes)
    notes += _incomplete(runs, ngd, grid.size)
    if "eval_epochs" in ref.derived:
        epochs = np.asarray(ref.derived["eval_epochs"], dtype=np.float64)
    else:  # release 0.1.0 at a constant LR (svag.runfolder fills the others): t/τ is the simulated run's epoch
        epochs = np.asarray(ref.derived["eval_times"], dtype=np.float64) / float(ref.derived["time_per_epoch"])
    return _Index(ladder, ngd, ls, seeds, grid, epochs, paired, ngd_paired, tuple(notes))


def _shared_grid(runs: Sequence[Run]) -> np.ndarray:
    """The evaluation times of ``runs[0]``, which every run must share, with its config but :data:`FREE_FIELDS`."""
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
    return grid


def _sort_runs(runs: Sequence[Run], notes: list[str]) -> tuple[dict[tuple[float, int], Run], dict[int, Run]]:
    """``(ladder, ngd)``: minibatch-noise runs by ``(l, seed)``, NGD by seed; Gaussian ``l > 1`` noted, left out."""
    ladder: dict[tuple[float, int], Run] = {}
    ngd: dict[int, Run] = {}
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
    return ladder, ngd


def _pairing(ladder: dict, ngd: dict, ls: tuple[float, ...], notes: list[str]) -> tuple[bool, bool]:
    """``(paired, ngd_paired)``: every ``l`` has the same seeds; the NGD runs have exactly those (noted if not)."""
    by_l = {l: {s for (m, s) in ladder if m == l} for l in ls}
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
    return paired, ngd_paired


def _incomplete(runs: Sequence[Run], ngd: dict[int, Run], size: int) -> list[str]:
    """A note for each run that did not complete all ``size`` evaluations: its status and why."""
    notes = []
    for run in runs:
        st, n = run.status, len(run.records)
        if st.status == "completed" and n == size:
            continue
        what = "NGD" if any(run is r for r in ngd.values()) else f"l = {run.config['l']:g}"
        why = f" ({st.message.splitlines()[0]})" if st.message else ""
        notes.append(
            f"{_name(run)} ({what}, seed {run.config['seed']}): {st.status}{why}, {n} of {size} evaluations; "
            "its later values are missing"
        )
    return notes


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
    g = E.gap(ls, v, paired=paired, fit=fit, use=use, alpha=alpha)
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
        row["gap_interval_unpaired"] = _interval(E.gap(ls, v, paired=False, fit=fit, use=use, alpha=alpha), LEVEL)
    if margin is not None:
        try:
            delta = E.resolve_margin(metric, g.sgd_mean, margin)
        except ValueError as err:
            row["reason"] = str(err)
        else:
            vd = E.verdict(g, delta, alpha)
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
            d = E.decompose(ls, v, ngd, paired=ngd_paired, fit=fit, use=use, alpha=alpha)
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
    if metric in E.DEFAULT_MARGINS:
        m = E.DEFAULT_MARGINS[metric]
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
    paired: bool | None = None,
) -> dict:
    """The verdicts of a comparison, as one JSON-ready dict (what ``verdicts.json`` holds).

    Args:
        runs: the runs of one comparison (:func:`svag.runfolder.load_runs`): SGD and SVAG at ≥ 2 values
            of ``l`` including 1, ≥ 2 seeds, and optionally NGD runs (gaussian noise, ``l = 1``).
        metrics: the metrics (default :data:`METRICS`, those the records have).
        margins: overrides of :data:`svag.analysis.equivalence.DEFAULT_MARGINS`, ``{metric: "0.02" | "2%" | number |
            Margin}`` (:func:`svag.analysis.equivalence.resolve_margin`); a metric with neither gets no verdict.
        fit, use: the Richardson fit (``"wls"`` or ``"two_point"``) and the ``l`` it uses (default all).
        alpha: the test level (intervals of 1 − 2α for *follows*, 1 − α for *departs*).
        paired: ``None`` pairs the seeds when every ``l`` has the same ones (:class:`Ladder`); ``False``
            treats the values of ``l`` as independent groups even then (Welch intervals: more degrees of
            freedom at few seeds, and conservative for the gaps when the seeds are positively correlated,
            since their weights sum to 0); ``True`` insists on pairing.

    Raises:
        ValueError: what :func:`ladder_values` refuses, fewer than 2 values of ``l``, no ``l = 1``,
            fewer than 2 seeds per ``l``, or an unknown metric.
    """
    index = _index(runs)
    pairing = PAIRED if index.paired else UNPAIRED
    if paired is True and not index.paired:
        why = next(n for n in index.notes if "different seeds" in n)
        raise ValueError(f"paired intervals need the same seeds at every l, but {why}")
    if paired is False and index.paired:
        pairing = UNPAIRED_ASKED
        index = replace(index, paired=False, ngd_paired=False)
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
        "pairing": pairing,
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
    return {**{k: cfg.get(k) for k in keys}, "names": names, "model_options": model_options(cfg, sgd.derived)}


# ---------------------------------------------------------------------------------------------- writing


def write_verdicts(runs_dir: str | os.PathLike, report: Mapping) -> tuple[Path, Path, Path]:
    """Write ``verdicts.md``, ``verdicts.csv`` and ``verdicts.json`` into ``runs_dir`` (atomically)."""
    md, csv, js = (Path(runs_dir) / name for name in FILES)
    write_json(js, report)
    write_csv(csv, csv_rows(report), CSV_COLUMNS)
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
