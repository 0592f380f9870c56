"""The LSR-failure test (P1 §4): one baseline run predicts ``B*``; a linear-scaling sweep checks it.

The baseline ``(η0, B0)`` logs ``G`` and ``N`` along the run (see :mod:`svag.runner`). Over its
**equilibrium window**, by default the last sixth of the first constant-LR phase, numerators and
denominators are averaged separately (weighted by the number of per-step estimates behind each
record), giving ``r0 = G0/N0`` and ``B* = B0·τ/r0``. The sweep runs ``(κB0, κη0)`` for the
same number of epochs, which is the same continuous time, and measures each run's ``G/N`` over the
same window of continuous time at its own batch size. With several seeds per batch size the
table pools ``G/N`` over the seeds (:func:`svag.noise.pool_window`), reports the final errors as
mean ± SD over seeds, and gives each error rise a Welch t-interval, so a ``≥ 20%`` rise is judged
against seed noise. Every run gets the equilibrium check of :mod:`svag.analysis.equilibrium` over the
window; the baseline's prediction is printed next to the slope of ``G/N`` in ``B`` below ``τ``.

**Adam, AdamW, RMSprop** (issue: where P2's square-root rule breaks). The baseline's ratio is the
*preconditioned* ``G/N`` of :mod:`svag.noise` (record fields ``gn_ratio_pre``, ...: ``Σ w Ĝ²/Σ w σ²/B`` with
the update's own weights ``w = 1/(√v̂ + ε)``), which grows like κ along the square-root rule, so
``κ* = τ/R0`` and ``B* = κ*·B0``; the sweep runs :func:`svag.scaling.sqrt_rule` (``η·√κ``,
``1 − β → κ(1 − β)``, ``ε/√κ``, AdamW's ``λ·√κ``), which itself needs ``κ(1 − β1) < 1``
(:func:`svag.scaling.rule_limit`): the result says which limit binds first.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from svag import sweepfolder
from svag.analysis.equilibrium import equilibrium_check, summary_line
from svag.analysis.stats import fit_loglog_slope, t_interval, welch_df
from svag.clock import TIME_RTOL
from svag.config import RunConfig
from svag.experiments.compare import check_jobs, ensemble_note, seed_jobs, use_ensemble
from svag.experiments.executors import run_jobs
from svag.lsr import envelope_batch, error_rise_batch, predict_from_window, suggest_batch_sizes, verdicts
from svag.models.plugin import passed_options
from svag.noise import pool_window
from svag.noise_window import PRECONDITIONED
from svag.plugins import MODEL_OPTIONS, is_spec
from svag.records import write_csv, write_json, write_text
from svag.runfolder import Run, RunFolder
from svag.scaling import RULES, reaches, rule_limit, sde_rule
from svag.schedules import OnSteps, Warmup, schedule_from_dict

__all__ = [
    "Measure",
    "equilibrium_window",
    "equilibrium_window_epochs",
    "lsr_table",
    "plugin_model_defaults",
    "run_sweep",
    "slope_statement",
    "window_ratio",
]

LEVEL = 0.95  # the intervals of the slope and of the error rises


class Measure:
    """What the test measures and which rule its sweep follows, for one optimizer: P1's ``G/N`` and the linear
    rule (SGD), or the preconditioned ``G/N`` and P2's square-root rule (:data:`svag.scaling.ADAPTIVE`)."""

    def __init__(self, optimizer: str) -> None:
        self.rule = sde_rule(optimizer)
        adaptive = self.rule == "sqrt"
        self.suffix = PRECONDITIONED if adaptive else ""
        self.ratio_name = "preconditioned G/N" if adaptive else "G/N"
        self.rule_name = "square-root" if adaptive else "linear-scaling"

    def config(self, base: RunConfig, kappa: float) -> RunConfig:
        """The sweep's run at ``κ``: ``rule(base, κ)``, refused in one line past the rule's own limit."""
        if not reaches(base, self.rule, kappa):
            limit = rule_limit(base, self.rule)
            raise ValueError(
                f"--verify {round(base.batch_size * kappa)}: κ = {kappa:g} is past the {self.rule_name} rule's own "
                f"limit κ(1 − β1) < 1 (betas {tuple(base.betas)}): batch sizes below {base.batch_size * limit:.4g} only"
            )
        return RULES[self.rule](base, kappa).validate()

    @classmethod
    def of_run(cls, run_dir) -> Measure:
        return cls(RunFolder(run_dir).config().get("optimizer", "sgd"))


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


def plugin_model_defaults(cfg: RunConfig) -> tuple[RunConfig, str | None]:
    """The LSR test's config for a plug-in model, and a line saying which of its defaults apply to it.

    ``svag lsr``'s defaults (:data:`svag.experiments.defaults.LSR_CONFIG`) were tuned for the built-in
    scale-invariant CNN on MNIST-1D. Its model options (``norm=bn``, ``scale_invariant=True``) reach a plug-in's
    factory only where its signature names them (:func:`svag.models.plugin.passed_options`); the options it does
    not take are put back to :class:`RunConfig`'s defaults, so that the runs record only what reached the model.
    The other defaults (learning rate, batch size, weight decay, epochs and LR decay, evaluation and G/N
    settings) apply as they are. A built-in model: ``(cfg, None)``.
    """
    if not is_spec(cfg.model):
        return cfg, None
    options = {k: getattr(cfg, k) for k in MODEL_OPTIONS}
    taken = passed_options(cfg.model, options)
    default = RunConfig()
    unused = {k: v for k, v in options.items() if k not in taken and v != getattr(default, k)}
    line = f"the plug-in model {cfg.model} takes " + (
        f"{', '.join(taken)} of {', '.join(MODEL_OPTIONS)}" if taken else f"none of {', '.join(MODEL_OPTIONS)}"
    )
    if unused:
        line += (f": {', '.join(f'{k}={v}' for k, v in unused.items())} do not reach it and are not recorded (its "
                 "factory does not name them)")  # fmt: skip
    line += (
        "; svag lsr's other defaults (learning rate, batch size, weight decay, epochs and LR decay, evaluation and "
        "G/N settings) apply as they are, but were tuned for the built-in scale-invariant CNN on MNIST-1D: check "
        "the baseline's equilibrium line and set them with the flags"
    )
    return replace(cfg, **{k: getattr(default, k) for k in unused}).validate(), line


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
    on_steps = sched if isinstance(sched, OnSteps) else None  # milestones and warm-up in the run's steps
    if on_steps:
        sched = on_steps.inner
    warmup = 0.0
    while isinstance(sched, Warmup):
        warmup = max(warmup, sched.warmup_time)
        sched = sched.inner
    _constant_phase(sched.kind, str(run_dir))
    milestones = getattr(sched, "milestones", ())
    if on_steps:  # the times of the first step at full LR and of the first decayed step
        warmup = on_steps.time_at(min(math.ceil(warmup * (1 - TIME_RTOL)), on_steps.steps)) if warmup else 0.0
        milestones = tuple(on_steps.time_at(min(math.ceil(m), on_steps.steps)) for m in milestones)
    return _after_warmup(
        _last_fraction(milestones[0] if milestones else derived["end_time"], fraction), warmup, "in SDE time"
    )


def window_ratio(run_dir: str | os.PathLike | list, window: tuple[float, float], suffix: str = "") -> dict:
    """:func:`svag.noise.pool_window` of the records inside ``window``: ``G`` and ``N`` averaged apart
    over every per-step estimate in the window, SEs, their covariance ``GN_cov`` and the ratio's
    delta-method SE (covariance included). A list of run folders (the seeds of one batch size) pools
    the estimates of all of them (independent runs: independent estimates). ``suffix="_pre"`` pools the
    preconditioned fields of an adaptive run instead (:class:`Measure`)."""
    dirs = run_dir if isinstance(run_dir, list) else [run_dir]
    rows = [
        r
        for d in dirs
        for r in RunFolder(d).records()
        if window[0] < r["sde_time"] <= window[1] * (1 + 1e-9) and r.get(f"noise_count{suffix}")
    ]
    if not rows:
        what = "preconditioned G/N" if suffix else "G/N"
        raise ValueError(
            f"{run_dir}: no {what} records in the window t ∈ ({window[0]:.4g}, {window[1]:.4g}]; "
            "run with --noise pairs, an eval interval shorter than the window and a --noise-window covering it"
        )
    res = pool_window(rows, suffix=suffix)
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
    seeds: int = 1,
    ensemble: str = "auto",
    log=None,
    sinks: Sequence = (),
) -> list[Path]:
    """Run the LSR family ``(κB0, κη0)`` (Adam/AdamW/RMSprop: the square-root rule's, :class:`Measure`) for each
    batch size in ``batch_sizes``; the baseline is ``base`` itself (B0 = base.batch_size). ``seeds`` runs of
    each batch size, seeds ``base.seed, base.seed + 1, …``, trained together as one stacked ensemble where
    :func:`svag.experiments.compare.use_ensemble` says so (``ensemble``: auto, on, off).
    Returns the run folders, the baseline (B0, first seed) first."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
    out = Path(out_dir)
    sizes = [base.batch_size] + [b for b in batch_sizes if b != base.batch_size]
    seed_list = [base.seed + i for i in range(seeds)]
    together = use_ensemble(base, seeds, ensemble)
    measure = Measure(base.optimizer)
    work = []
    for B in sizes:
        kappa = B / base.batch_size
        cfg = measure.config(base, kappa)
        names = [sweepfolder.lsr_run(B, s, base.seed) for s in seed_list]
        for job in seed_jobs(cfg, seed_list, out, names, together):
            job.names = [f"{n} (lr {cfg.lr:g}, κ={kappa:g})" for n in job.names]
            work.append(job)
    if together:
        say = log or (lambda m: print(m, flush=True))
        say(ensemble_note(seeds, "B"))
    with sweepfolder.hold(out):  # the sweep's one driver (a second one is refused in one line)
        check_jobs(work, resume, jobs)  # every B's batches, steps, memory and folder, before anything runs
        if resume:
            sweepfolder.remove_temporaries(out)  # what a killed write of its JSON, tables or figure left
        run_jobs(work, jobs, resume=resume, progress=progress, log=log, sinks=sinks)
    return [folder for job in work for folder in job.folders]


def _spread(values: list[float]) -> float:
    """Sample SD over seeds (``nan`` for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _rise_interval(mean: float, sd: float, n: int, base_mean: float, base_sd: float, base_n: int) -> list[float]:
    r"""Welch t-interval of the relative rise ``(ē_B − ē_0)/ē_0`` over seeds (``ē_0`` taken as known):

    .. math::  \frac{ē_B − ē_0 ± t_{ν}\sqrt{s_B^2/n_B + s_0^2/n_0}}{ē_0},\qquad ν \text{ Welch–Satterthwaite}

    ``[nan, nan]`` with fewer than 2 seeds on either side (no spread to judge against)."""
    if n < 2 or base_n < 2 or not base_mean > 0:
        return [math.nan, math.nan]
    terms = [sd**2 / n, base_sd**2 / base_n]
    low, high = t_interval(mean - base_mean, math.sqrt(sum(terms)), welch_df(terms, [n, base_n]), LEVEL)
    return [low / base_mean, high / base_mean]


def slope_statement(slope: dict, B_star: float, B_envelope: float | None) -> str:
    """One line setting the slope of ``G/N`` in ``B`` below ``τ`` (with its interval) beside the
    baseline's ``B*``, and, when the interval excludes the SDE's slope 1, what that does to it:
    the sweep's slope-1 envelope and the baseline's line give ``B*`` values a factor apart."""
    head = (
        f"slope of log G/N vs log B below τ: {slope['slope']:.2f} [{slope['low']:.2f}, {slope['high']:.2f}] "
        f"({LEVEL:.0%}, {slope['n']} batch sizes; the SDE predicts 1) beside the baseline's B* = {B_star:.4g}"
    )
    if not (math.isfinite(slope["low"]) and math.isfinite(B_star)):
        return head
    if slope["low"] <= 1 <= slope["high"]:
        return head + ": consistent with 1, the baseline's slope-1 prediction stands"
    steeper = slope["low"] > 1
    tail = (
        f": {'steeper' if steeper else 'shallower'} than 1, so G/N reaches τ "
        f"{'sooner' if steeper else 'later'} than the baseline's slope-1 line says"
    )
    if B_envelope is not None and math.isfinite(B_envelope):
        factor = B_envelope / B_star
        tail += f"; the sweep's slope-1 envelope puts B* at {B_envelope:.4g}, {factor:.2g}× the baseline's"
    if math.isfinite(slope.get("B_cross", math.nan)):
        tail += f", the fitted line crosses τ at B ≈ {slope['B_cross']:.4g}"
    return head + tail


def _fit_slope(points: list[tuple[int, float]], tau: float) -> dict:
    """:func:`svag.analysis.stats.fit_loglog_slope` of ``G/N`` on ``B`` with its t-interval (``n − 2`` df) and the
    batch size where the fitted line reaches ``τ``: ``B = exp((log τ − c)/s)``."""
    fit = fit_loglog_slope([b for b, _ in points], [g for _, g in points])
    low, high = (
        t_interval(fit.slope, fit.slope_se, fit.n - 2, LEVEL) if math.isfinite(fit.slope_se) else (math.nan, math.nan)
    )
    cross = math.exp((math.log(tau) - fit.intercept) / fit.slope) if fit.slope > 0 else math.nan
    return {"slope": fit.slope, "slope_se": fit.slope_se, "n": fit.n, "low": low, "high": high, "B_cross": cross}


def lsr_table(run_dirs: list[Path], *, tau: float, fraction: float, rise: float = 0.2) -> dict:
    """The verdict table and the predictions from a baseline (first) and the sweep runs (one or
    more seeds per batch size: runs are grouped by their config's batch size)."""
    window = equilibrium_window(run_dirs[0], fraction)
    measure = Measure.of_run(run_dirs[0])
    result, base_check = _baseline_prediction(run_dirs[0], window, tau, measure)
    warnings = []
    if base_check["warning"]:
        warnings.append(f"baseline: {base_check['warning'].replace('the run is', 'the baseline is')}")
    rows, dirs_of = _run_rows(run_dirs, window, base_check, warnings, measure.suffix)
    result["warnings"] = warnings
    per_b = _per_batch_size(rows, dirs_of, window, result["baseline"]["batch_size"], measure.suffix)
    if per_b:
        result.update(_sweep_verdicts(per_b, result["baseline"]["batch_size"], tau, rise, result["B_star"]))
    result["runs"] = rows
    return result


def _baseline_prediction(
    base_dir: Path, window: tuple[float, float], tau: float, measure: Measure
) -> tuple[dict, dict]:
    """The baseline's G/N (preconditioned for Adam) over ``window``, its equilibrium check and ``B* = B0·τ/(G/N)``
    with its SE (:func:`svag.lsr.predict_from_window`), and the rule's own limit; returns the result's head and
    the check."""
    base_cfg = RunFolder(base_dir).config()
    base_gn = window_ratio(base_dir, window, measure.suffix)
    # the window estimator's delta-method SE, with cov(G, N) (svag.noise.pool_window; one owner: svag.lsr)
    pred = predict_from_window(base_cfg["batch_size"], base_gn, tau)
    base_check = equilibrium_check(RunFolder(base_dir).records(), window)
    result = {
        "baseline": {
            "dir": str(base_dir),
            "batch_size": base_cfg["batch_size"],
            "lr": base_cfg["lr"],
            **base_gn,
            "equilibrium": base_check,
        },
        "window": list(window),
        "tau": tau,
        "B_star": pred.B_star,
        "B_star_se": pred.B_star_se,
        "B_simple": base_cfg["batch_size"] / base_gn["ratio"] if base_gn["ratio"] > 0 else math.inf,
        "suggested_verify": suggest_batch_sizes(base_cfg["batch_size"], pred.B_star),
        "optimizer": base_cfg.get("optimizer", "sgd"),
        "rule": measure.rule,
        "ratio_name": measure.ratio_name,
    }
    limit = rule_limit(RunConfig.from_dict(base_cfg), measure.rule)
    if math.isfinite(limit):  # the square-root rule's own reach: κ(1 − β1) < 1
        B_limit = base_cfg["batch_size"] * limit
        result["B_rule_limit"] = B_limit
        result["suggested_verify"] = [b for b in result["suggested_verify"] if b < B_limit]
        result["binding_limit"] = "noise" if pred.B_star < B_limit else "momentum"
    return result, base_check


def _run_rows(
    run_dirs: list[Path], window: tuple[float, float], base_check: dict, warnings: list[str], suffix: str = ""
) -> tuple[list[dict], dict[int, list[Path]]]:
    """One row per run with records (``run_dirs[0]`` the baseline): G/N over ``window``, final errors, status,
    equilibrium (its warning appended to ``warnings``); and the completed runs with a G/N, by batch size."""
    base_dir = run_dirs[0]
    rows, dirs_of = [], defaultdict(list)
    for d in run_dirs:
        folder = RunFolder(d)
        run = folder.load() if folder.exists() else None
        if run is None or not run.records:  # not started, or killed before its first record
            continue
        try:
            gn = window_ratio(d, window, suffix)
        except ValueError:
            gn = {"ratio": math.nan, "ratio_se": math.nan, "G": math.nan, "N": math.nan}
        train_err, test_err, status = _final_errors(run)
        check = base_check if Path(d) == Path(base_dir) else equilibrium_check(run.records, window)
        B, seed = run.config["batch_size"], run.config["seed"]
        rows.append(
            {"B": B, "seed": seed, "lr": run.config["lr"], "status": status, "train_error": train_err,
             "test_error": test_err, **{k: gn[k] for k in ("G", "N", "ratio", "ratio_se")},
             "at_equilibrium": check["at_equilibrium"], "equilibrium_warning": check["warning"]}
        )  # fmt: skip
        if check["warning"] and Path(d) != Path(base_dir):
            warnings.append(f"B={B} seed {seed}: {check['warning']}")
        if status == "completed" and math.isfinite(gn["ratio"]):
            dirs_of[B].append(Path(d))
    return rows, dirs_of


def _per_batch_size(
    rows: list[dict], dirs_of: dict[int, list[Path]], window: tuple[float, float], b0: int, suffix: str = ""
) -> dict:
    """``{B: pooled G/N, mean ± SD of the final errors over its seeds}`` of the completed runs with a G/N; empty
    when the baseline ``b0`` did not complete (no rise to measure against)."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "completed" and math.isfinite(r["ratio"]):
            groups[r["B"]].append(r)
    if b0 not in groups:
        return {}
    per_b = {}
    for B, runs in sorted(groups.items()):
        pooled = window_ratio(dirs_of[B], window, suffix) if len(runs) > 1 else runs[0]
        tests, trains = [r["test_error"] for r in runs], [r["train_error"] for r in runs]
        per_b[B] = {"lr": runs[0]["lr"], "ratio": pooled["ratio"], "ratio_se": pooled["ratio_se"],
                    "G": pooled["G"], "N": pooled["N"], "n_seeds": len(runs),
                    "test_error": float(np.mean(tests)), "test_error_sd": _spread(tests),
                    "train_error": float(np.mean(trains)), "train_error_sd": _spread(trains)}  # fmt: skip
    return per_b


def _sweep_verdicts(per_b: dict, b0: int, tau: float, rise: float, B_star: float) -> dict:
    """The sweep's part of the result: the verdict per batch size (:func:`svag.lsr.verdicts`) with each error
    rise's Welch interval, the slopes of G/N in B, the slope-1 envelope's ``B*`` and the first B whose error rose."""
    out: dict = {}
    bs = sorted(per_b)
    table = verdicts(bs, [per_b[b]["lr"] for b in bs], [per_b[b]["ratio"] for b in bs],
                     [per_b[b]["test_error"] for b in bs], tau=tau, rise=rise, baseline_batch=b0)  # fmt: skip
    base = per_b[b0]
    for row in table:
        src = per_b[row["batch_size"]]
        row.update({k: src[k] for k in ("train_error", "ratio_se", "G", "N", "n_seeds", "test_error_sd",
                                        "train_error_sd")})  # fmt: skip
        row["rise_interval"] = _rise_interval(src["test_error"], src["test_error_sd"], src["n_seeds"],
                                              base["test_error"], base["test_error_sd"], base["n_seeds"])  # fmt: skip
    out["verdicts"] = table
    positive = [(b, per_b[b]["ratio"]) for b in bs if per_b[b]["ratio"] > 0]
    holding = [(b, g) for b, g in positive if g <= tau]
    if len(holding) >= 3:
        out["slope_below_tau"] = _fit_slope(holding, tau)
    if len(positive) >= 3:
        out["slope_all"] = _fit_slope(positive, tau)
    if positive:
        out["B_star_envelope"] = envelope_batch([b for b, _ in positive], [g for _, g in positive], tau)
    if "slope_below_tau" in out:
        out["slope_statement"] = slope_statement(out["slope_below_tau"], B_star, out.get("B_star_envelope"))
    out["error_rise_batch"] = error_rise_batch(bs, [per_b[b]["test_error"] for b in bs], rise=rise, baseline_batch=b0)
    return out


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.4f}" if not math.isfinite(sd) else f"{mean:.4f} ± {sd:.4f}"


def _rise_cell(row: dict) -> str:
    rel = row["relative_error_rise"]
    low, high = row.get("rise_interval", [math.nan, math.nan])
    if not math.isfinite(low):
        return f"{rel:+.0%}"
    return f"{rel:+.0%} [{low:+.0%}, {high:+.0%}]"


def write_lsr_outputs(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``lsr.json`` (everything), ``verdicts.md`` and ``verdicts.csv``."""
    out = Path(out_dir)
    write_json(out / sweepfolder.LSR_JSON, result)
    rows = result.get("verdicts", [])
    cols = ["batch_size", "lr", "ratio", "ratio_se", "n_seeds", "train_error", "train_error_sd", "test_error",
            "test_error_sd", "condition_holds", "relative_error_rise", "rise_low", "rise_high",
            "error_rose"]  # fmt: skip
    csv_rows = [{**r, "rise_low": r["rise_interval"][0], "rise_high": r["rise_interval"][1]} for r in rows]
    write_csv(out / sweepfolder.VERDICTS_CSV, csv_rows, cols)
    seeds = max((r["n_seeds"] for r in rows), default=1)
    lines = (
        _prediction_lines(result, rows)
        + _verdict_table(rows, seeds, result.get("ratio_name", "G/N"))
        + _sweep_lines(result, rows, seeds)
    )
    md = out / sweepfolder.VERDICTS_MD
    write_text(md, "\n".join(lines) + "\n")
    return out / sweepfolder.LSR_JSON, md, out / sweepfolder.VERDICTS_CSV


def _prediction_lines(result: dict, rows: list[dict]) -> list[str]:
    """The baseline's G/N and ``B*``, its equilibrium, the warnings, and the sweep to run when there is none."""
    base = result["baseline"]
    name = result.get("ratio_name", "G/N")  # lsr.json of release 0.2.0: G/N
    lines = [
        f"Baseline B0={base['batch_size']}, η0={base['lr']:g}: "
        f"{name} = {base['ratio']:.4g} ± {base['ratio_se']:.2g} over t ∈ "
        f"({result['window'][0]:.4g}, {result['window'][1]:.4g}]; τ = {result['tau']:g}",
        f"Predicted B* = {result['B_star']:.4g} ± {result['B_star_se']:.2g}; "
        f"B_simple = B0/(G/N) = {result['B_simple']:.4g}"
        + (
            " (no B*: the baseline's G estimate is < 0, below its noise floor; measure over a longer window)"
            if math.isnan(result["B_star"])
            else ""
        ),
    ]
    if "B_rule_limit" in result:
        noise = result["binding_limit"] == "noise"
        lines.append(
            f"The square-root rule itself needs κ(1 − β1) < 1: B < {result['B_rule_limit']:.4g}; "
            + ("the noise condition binds first (B* below that)" if noise else
               "that limit binds first: the rule cannot reach B* (a larger β1, or a rule defined for every κ, "
               "e.g. svag scale --rule beta_halflife)")
        )  # fmt: skip
    if "equilibrium" in base:
        lines.append(f"Baseline equilibrium, {summary_line(base['equilibrium'])}")
    lines += [f"WARNING {w}" for w in result.get("warnings", [])]
    if len(rows) <= 1 and result.get("suggested_verify"):  # the baseline alone: no sweep yet
        sizes = ",".join(str(b) for b in result["suggested_verify"])
        rule = "square-root" if result.get("rule") == "sqrt" else "linear-scaling"
        lines.append(f"To check the prediction, run the {rule} sweep: --verify {sizes}")
    return lines


def _verdict_table(rows: list[dict], seeds: int, name: str = "G/N") -> list[str]:
    """One row per batch size: η, G/N (``name``), the final errors (mean ± SD over ``seeds``), the rise, the two
    checks."""
    lines = []
    if rows:
        err = "train error | test error" if seeds == 1 else f"train error (mean ± SD, {seeds} seeds) | test error"
        rise_head = "test error rise" if seeds == 1 else f"test error rise [{LEVEL:.0%} Welch]"
        lines += [
            "",
            f"| B | η | {name} | {err} | {rise_head} | {name} ≤ τ? | error rose ≥ 20%? |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for r in rows:
        yes = {True: "yes", False: "no"}
        lines.append(
            f"| {r['batch_size']} | {r['lr']:.4g} | {r['ratio']:.4g} ± {r['ratio_se']:.2g} | "
            f"{_pm(r['train_error'], r['train_error_sd'])} | {_pm(r['test_error'], r['test_error_sd'])} | "
            f"{_rise_cell(r)} | {yes[r['condition_holds']]} | {yes[r['error_rose']]} |"
        )
    return lines


def _sweep_lines(result: dict, rows: list[dict], seeds: int) -> list[str]:
    """The slope of G/N in B, the envelope's ``B*``, the first B whose error rose, and the runs that failed."""
    lines = []
    if "slope_statement" in result:
        lines.append(f"\n{result['slope_statement']}")
    if "slope_all" in result:
        fit = result["slope_all"]
        lines.append(f"(all runs: {fit['slope']:.3f} ± {fit['slope_se']:.3f}, {fit['n']} batch sizes)")
    if "B_star_envelope" in result:
        lines.append(f"B* from the slope-1 envelope of the sweep: {result['B_star_envelope']:.4g}")
    if "verdicts" in result:
        rb = result.get("error_rise_batch")
        which = "test error" if seeds == 1 else f"mean test error over {seeds} seeds"
        text = f"first B with {which} ≥ 20% above baseline: {rb if rb is not None else 'none'}"
        if rb is not None and seeds > 1:
            row = next(r for r in rows if r["batch_size"] == rb)
            low = row["rise_interval"][0]
            text += f" ({_rise_cell(row)}: {'beyond' if low > 0 else 'within'} seed noise)"
        if rb is not None and math.isfinite(result["B_star"]):
            text += f"; {rb / result['B_star']:.2g}× the baseline's B*"
        lines.append(text)
    failed = [r for r in result["runs"] if r["status"] != "completed"]
    several = len({r["seed"] for r in result["runs"]}) > 1
    for r in failed:
        which = f"B={r['B']} seed {r['seed']}" if several else f"B={r['B']}"
        lines.append(f"run {which} is {r['status']}")
    return lines
