"""The LSR-failure test (P1 §4): one baseline run predicts ``B*``; a linear-scaling sweep checks it.

The baseline ``(η0, B0)`` logs ``G`` and ``N`` along the run (see :mod:`svag.runner`). Over its
**equilibrium window**, by default the last sixth of the first constant-LR phase, numerators and
denominators are averaged separately (weighted by the number of per-step estimates behind each
record), giving ``r0 = G0/N0`` and ``B* = B0·τ/r0``. The sweep runs ``(κB0, κη0)`` for the
same number of epochs, which is the same continuous time, and measures each run's ``G/N`` over the
same window of continuous time at its own batch size.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

from ..config import RunConfig
from ..lsr import (
    MaxBatchPrediction,
    envelope_batch,
    error_rise_batch,
    predict_max_batch,
    predict_max_batch_with_se,
    verdicts,
)
from ..noise import pool_window
from ..records import write_csv, write_json, write_text
from ..runfolder import Run, RunFolder
from ..schedules import Warmup, schedule_from_dict
from ..stats import fit_loglog_slope
from .compare import check_jobs
from .parallel import Job, run_jobs

__all__ = ["equilibrium_window", "equilibrium_window_epochs", "lsr_table", "run_sweep", "window_ratio"]


def _last_fraction(end: float, fraction: float) -> tuple[float, float]:
    """``(end·(1 − fraction), end)``: the last ``fraction`` of ``[0, end]``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"window fraction must be in (0, 1], got {fraction!r}")
    return end * (1 - fraction), end


def _constant_phase(kind: str, where: str) -> None:
    """Refuse a schedule without a constant-LR phase: P1's G/N test reads its equilibrium."""
    if kind not in ("constant", "multistep"):
        raise ValueError(
            f"{where} has schedule {kind!r}, which has no constant-LR phase; the G/N test (P1 §4) reads the "
            "equilibrium of one: use --schedule constant or multistep"
        )


def _after_warmup(window: tuple[float, float], warmup: float, unit: str) -> tuple[float, float]:
    if window[0] < warmup:
        raise ValueError(
            f"the equilibrium window ({window[0]:.4g}, {window[1]:.4g}] {unit} starts inside the warm-up "
            f"(until {warmup:.4g}), where the LR is not yet constant: use a shorter --warmup or a smaller --window"
        )
    return window


def equilibrium_window_epochs(cfg: RunConfig, fraction: float = 1 / 6) -> tuple[float, float]:
    """:func:`equilibrium_window` of a run not yet trained, in SGD-equivalent epochs (the unit of
    ``cfg.noise_window``): the last ``fraction`` of the epochs before the first milestone.
    Refuses a schedule without a constant-LR phase and a window that starts inside the warm-up."""
    _constant_phase(cfg.schedule, "the run")
    end = cfg.milestones[0] if cfg.schedule == "multistep" and cfg.milestones else cfg.epochs
    return _after_warmup(_last_fraction(end, fraction), cfg.warmup, "epochs")


def equilibrium_window(run_dir: str | os.PathLike, fraction: float = 1 / 6) -> tuple[float, float]:
    """``(t_start, t_end)``: the last ``fraction`` of the first constant-LR phase, in SDE time.
    Refuses a run whose schedule has no constant-LR phase or whose window starts inside its warm-up."""
    derived = RunFolder(run_dir).derived()
    sched = schedule_from_dict(derived["schedule"])
    warmup = 0.0
    while isinstance(sched, Warmup):
        warmup = max(warmup, sched.warmup_time)
        sched = sched.inner
    _constant_phase(sched.kind, str(run_dir))
    milestones = getattr(sched, "milestones", ())
    return _after_warmup(
        _last_fraction(milestones[0] if milestones else derived["end_time"], fraction), warmup, "in SDE time"
    )


def window_ratio(run_dir: str | os.PathLike, window: tuple[float, float]) -> dict:
    """:func:`svag.noise.pool_window` of the records inside ``window``: ``G`` and ``N`` averaged apart
    over every per-step estimate in the window, SEs, their covariance ``GN_cov`` and the ratio's
    delta-method SE (covariance included)."""
    rows = [
        r
        for r in RunFolder(run_dir).records()
        if window[0] < r["sde_time"] <= window[1] * (1 + 1e-9) and r.get("noise_count")
    ]
    if not rows:
        raise ValueError(
            f"{run_dir}: no G/N records in the window t ∈ ({window[0]:.4g}, {window[1]:.4g}]; "
            "run with --noise pairs, an eval interval shorter than the window and a --noise-window covering it"
        )
    res = pool_window(rows)
    keys = ("G", "N", "G_se", "N_se", "GN_cov", "ratio", "ratio_se")
    return {**{k: getattr(res, k) for k in keys}, "records": len(rows)}


def _final_errors(run: Run) -> tuple[float, float, str]:
    """Final train and test error (1 − accuracy of the last record) and the run's status."""
    last = run.records[-1]
    return 1 - last["train_acc"], 1 - last["test_acc"], run.status.status


def run_sweep(
    base: RunConfig,
    batch_sizes: list[int],
    out_dir: str | os.PathLike,
    *,
    resume: bool,
    progress: bool,
    jobs: int = 1,
    log=None,
) -> list[Path]:
    """Run the LSR family ``(κB0, κη0)`` for each batch size in ``batch_sizes``; the baseline
    is ``base`` itself (B0 = base.batch_size). Returns the run folders (baseline first)."""
    out = Path(out_dir)
    sizes = [base.batch_size] + [b for b in batch_sizes if b != base.batch_size]
    work = []
    for B in sizes:
        kappa = B / base.batch_size
        cfg = replace(base, batch_size=int(B), lr=base.lr * kappa).validate()
        work.append(Job(cfg, [cfg.seed], [out / f"B{B}"], [f"B{B} (lr {cfg.lr:g}, κ={kappa:g})"]))
    check_jobs(work, resume)  # every B's batches, steps, memory and folder, before anything runs
    run_jobs(work, jobs, resume=resume, progress=progress, log=log)
    return [job.folders[0] for job in work]


def lsr_table(run_dirs: list[Path], *, tau: float, fraction: float, rise: float = 0.2) -> dict:
    """The verdict table and the predictions from a baseline (first) and the sweep runs."""
    base_dir = run_dirs[0]
    base_cfg = RunFolder(base_dir).config()
    window = equilibrium_window(base_dir, fraction)
    base_gn = window_ratio(base_dir, window)
    if math.isfinite(base_gn["G_se"]) and math.isfinite(base_gn["N_se"]):
        pred = predict_max_batch_with_se(
            base_cfg["batch_size"], base_gn["G"], base_gn["N"], tau=tau, ratio_se=base_gn["ratio_se"]
        )  # the window estimator's delta-method SE, with cov(G, N) (svag.noise.pool_window)
    else:
        pred = MaxBatchPrediction(predict_max_batch(base_cfg["batch_size"], base_gn["G"], base_gn["N"], tau), math.nan)
    result = {
        "baseline": {"dir": str(base_dir), "batch_size": base_cfg["batch_size"], "lr": base_cfg["lr"], **base_gn},
        "window": list(window),
        "tau": tau,
        "B_star": pred.B_star,
        "B_star_se": pred.B_star_se,
        "B_simple": base_cfg["batch_size"] / base_gn["ratio"] if base_gn["ratio"] > 0 else math.inf,
    }
    rows = []
    for d in run_dirs:
        folder = RunFolder(d)
        run = folder.load() if folder.exists() else None
        if run is None or not run.records:  # not started, or killed before its first record
            continue
        try:
            gn = window_ratio(d, window)
        except ValueError:
            gn = {"ratio": math.nan, "ratio_se": math.nan, "G": math.nan, "N": math.nan}
        train_err, test_err, status = _final_errors(run)
        rows.append(
            {"B": run.config["batch_size"], "lr": run.config["lr"], "status": status, "train_error": train_err,
             "test_error": test_err, **{k: gn[k] for k in ("G", "N", "ratio", "ratio_se")}}
        )  # fmt: skip
    ok = [r for r in rows if r["status"] == "completed" and math.isfinite(r["ratio"])]
    if ok:
        bs = [r["B"] for r in ok]
        table = verdicts(bs, [r["lr"] for r in ok], [r["ratio"] for r in ok], [r["test_error"] for r in ok],
                         tau=tau, rise=rise, baseline_batch=base_cfg["batch_size"])  # fmt: skip
        extra = {r["B"]: r for r in ok}
        for row in table:
            src = extra[row["batch_size"]]
            row.update(train_error=src["train_error"], ratio_se=src["ratio_se"], G=src["G"], N=src["N"])
        result["verdicts"] = table
        positive = [(r["B"], r["ratio"]) for r in ok if r["ratio"] > 0]
        holding = [(b, g) for b, g in positive if g <= tau]
        if len(holding) >= 3:
            fit = fit_loglog_slope([b for b, _ in holding], [g for _, g in holding])
            result["slope_below_tau"] = {"slope": fit.slope, "slope_se": fit.slope_se, "n": fit.n}
        if len(positive) >= 3:
            fit = fit_loglog_slope([b for b, _ in positive], [g for _, g in positive])
            result["slope_all"] = {"slope": fit.slope, "slope_se": fit.slope_se, "n": fit.n}
        if positive:
            result["B_star_envelope"] = envelope_batch([b for b, _ in positive], [g for _, g in positive], tau)
        result["error_rise_batch"] = error_rise_batch(
            bs, [r["test_error"] for r in ok], rise=rise, baseline_batch=base_cfg["batch_size"]
        )
    result["runs"] = rows
    return result


def write_lsr_outputs(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``lsr.json`` (everything), ``verdicts.md`` and ``verdicts.csv``."""
    out = Path(out_dir)
    write_json(out / "lsr.json", result)
    rows = result.get("verdicts", [])
    cols = ["batch_size", "lr", "ratio", "ratio_se", "train_error", "test_error", "condition_holds",
            "relative_error_rise", "error_rose"]  # fmt: skip
    write_csv(out / "verdicts.csv", rows, cols)
    lines = [
        f"Baseline B0={result['baseline']['batch_size']}, η0={result['baseline']['lr']:g}: "
        f"G/N = {result['baseline']['ratio']:.4g} ± {result['baseline']['ratio_se']:.2g} over t ∈ "
        f"({result['window'][0]:.4g}, {result['window'][1]:.4g}]; τ = {result['tau']:g}",
        f"Predicted B* = {result['B_star']:.4g} ± {result['B_star_se']:.2g}; "
        f"B_simple = B0/(G/N) = {result['B_simple']:.4g}"
        + (
            " (no B*: the baseline's G estimate is < 0, below its noise floor; measure over a longer window)"
            if math.isnan(result["B_star"])
            else ""
        ),
        "",
        "| B | η | G/N | train error | test error | G/N ≤ τ? | error rose ≥ 20%? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        yes = {True: "yes", False: "no"}
        lines.append(
            f"| {r['batch_size']} | {r['lr']:.4g} | {r['ratio']:.4g} ± {r['ratio_se']:.2g} | {r['train_error']:.4f} | "
            f"{r['test_error']:.4f} | {yes[r['condition_holds']]} | {yes[r['error_rose']]} |"
        )
    for key, label in (("slope_below_tau", "log-log slope of G/N vs B (G/N ≤ τ)"), ("slope_all", "(all runs)")):
        if key in result:
            lines.append(
                f"\n{label}: {result[key]['slope']:.3f} ± {result[key]['slope_se']:.3f} ({result[key]['n']} runs)"
            )
    if "B_star_envelope" in result:
        lines.append(f"\nB* from the slope-1 envelope of the sweep: {result['B_star_envelope']:.4g}")
    if "verdicts" in result:
        rb = result.get("error_rise_batch")
        lines.append(f"first B with test error ≥ 20% above baseline: {rb if rb is not None else 'none'}")
    failed = [r for r in result["runs"] if r["status"] != "completed"]
    for r in failed:
        lines.append(f"run B={r['B']} is {r['status']}")
    md = out / "verdicts.md"
    write_text(md, "\n".join(lines) + "\n")
    return out / "lsr.json", md, out / "verdicts.csv"
