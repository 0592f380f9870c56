"""A batch-size sweep under a scaling rule: one base config, ``B → κB`` with the rule's η, β, ε.

For each batch size ``B`` in the sweep, ``κ = B/B0`` (``B0`` = the base config's batch size; the
base run, ``κ = 1``, is always included) and the config is ``rule(base, κ)``:

- ``linear`` (SGD, P1 §1): ``η → κη``;
- ``sqrt`` (Adam/RMSprop, P2 §5): ``η → √κ·η``, ``1 − β_i → κ(1 − β_i)``, ``ε → ε/√κ``.

Every run keeps the base's number of epochs. Each ``(B, seed)`` writes ``out/B{B}_seed{s}/``;
``out/scale.json`` holds the rule, the base config and each ``B``'s hyperparameters.

**The x-axis** of the curves is the *base run's continuous time at the same epoch*, ``t0(e)``:
with a constant LR ``t0(e) = e·τ0``, ``τ0 = η0·n/B0`` on the SGD clock (time ``η`` per step) and
``τ0 = η0²·n/B0`` on the Adam/RMSprop clock (time ``η²`` per step); with a schedule it is the base
run's own ``sde_time`` at that epoch (its records, interpolated). A run that follows the rule of
its optimizer has the same time per epoch as the base (``κη·n/(κB)`` or ``(√κη)²·n/(κB)``), so
there ``t0(e)`` *is* its own ``sde_time``; under a rule that does not preserve the SDE (e.g. the
linear rule for Adam) the two differ and the curves show what the rule changes at equal epochs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from svag import sweepfolder
from svag.analysis.equivalence import resolve_margin, verdict
from svag.analysis.richardson import contrast
from svag.clock import Clock
from svag.config import RunConfig
from svag.experiments.compare import check_jobs, ensemble_note, seed_jobs, use_ensemble
from svag.experiments.executors import run_jobs
from svag.records import read_json, write_csv, write_json, write_text
from svag.runfolder import Run, RunFolder
from svag.scaling import ADAPTIVE, RULES, reaches, rule_limit, sde_constants, sde_rule

__all__ = [
    "RULES",
    "ScaleCurve",
    "auto_rule",
    "base_run",
    "base_time_at_epoch",
    "reachable",
    "rule_cell",
    "rule_row",
    "rule_summary",
    "rule_verdicts",
    "rules_answer",
    "run_rules",
    "run_scale",
    "scale_curves",
    "scale_markdown",
    "scale_rows",
    "scaled_configs",
    "write_rules",
    "write_scale_summary",
]

TABLE_METRICS = ("train_loss", "test_loss", "test_acc", "weight_norm_sq")


def auto_rule(optimizer: str) -> tuple[str, str]:
    """``(rule, why)``: the rule that keeps ``optimizer``'s SDE when ``B → κB``."""
    if sde_rule(optimizer) == "sqrt":
        return "sqrt", f"{optimizer} follows P2's square-root rule: η·√κ, 1−β → κ(1−β), ε/√κ"
    return "linear", f"{optimizer} follows P1's linear scaling rule: η·κ"


def scaled_configs(base: RunConfig, rule: str, batch_sizes: list[int]) -> list[tuple[int, float, RunConfig]]:
    """``[(B, κ, rule(base, κ))]`` for the base batch size and every ``B`` in ``batch_sizes``, ascending.

    All configs are computed and validated before anything runs: a ``B`` the rule cannot reach
    (the sqrt rule needs ``κ(1 − β) < 1``, i.e. ``B < B0/(1 − β)``, for each β) raises one
    ``ValueError`` line naming ``B`` and the limit. RMSprop uses only ``betas[-1]``; its base is
    reduced to that β first, so an unused β1 sets no limit.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    bad = [b for b in batch_sizes if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    if bad:
        raise ValueError(f"batch sizes must be integers >= 1, got {bad}")
    if base.optimizer == "rmsprop" and len(base.betas) > 1:
        base = replace(base, betas=tuple(base.betas[-1:]))
    b0 = base.batch_size
    out = []
    for b in sorted({b0, *batch_sizes}):
        kappa = b / b0
        try:
            cfg = RULES[rule](base, kappa).validate()
        except ValueError as err:
            limit = ""
            if rule == "sqrt" and "kappa·(1 - " in str(err):
                positive = [x for x in base.betas if x > 0]
                if positive:
                    limit = f", i.e. B < B0/(1 − β) = {min(b0 / (1 - x) for x in positive):.6g} here"
            raise ValueError(
                f"batch size {b} (κ = {b}/{b0} = {kappa:g}) is out of range for the {rule} rule"
                f"{' (it needs κ·(1 − β) < 1 for each β' + limit + ')' if limit else ''}: {err}"
            ) from None
        out.append((b, kappa, cfg))
    return out


def _hyper(cfg: RunConfig) -> dict:
    return {"lr": cfg.lr, "batch_size": cfg.batch_size, "betas": list(cfg.betas), "eps": cfg.eps,
            "weight_decay": cfg.weight_decay}  # fmt: skip


def run_scale(
    base: RunConfig,
    rule: str,
    batch_sizes: list[int],
    seeds: list[int],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    jobs: int = 1,
    ensemble: str = "auto",
    log=None,
    sinks: Sequence = (),
    base_from: str | None = None,
) -> dict[str, str]:
    """Run ``rule(base, B/B0)`` for every ``B`` (plus the base ``B0``) and seed; ``{run_dir: status}``.

    ``base_from``: a folder relative to ``out_dir`` (``"../sqrt"``) whose ``B{B0}_seed{s}`` runs are this sweep's
    base, trained there (by another rule's sweep of the same base config, :func:`run_rules`), not here.

    Writes ``out_dir/scale.json`` first (rule, base config, per-B ``lr``, ``batch_size``, ``betas``,
    ``eps``, ``weight_decay``, the optimizer's SDE constants from :func:`svag.scaling.sde_constants`, which the rule
    that keeps its SDE keeps and the others change, run folders), then the
    runs ``out_dir/B{B}_seed{s}/``; the seeds of one ``B`` train together as an ensemble when
    :func:`svag.experiments.compare.use_ensemble` says so. Bad configs, batch sizes a run cannot
    use (``B`` larger than the training set, :func:`svag.runner.budget.check_budget`) and folders that are
    not empty (without ``resume``) raise ``ValueError`` before anything is written.
    """
    log = log or (lambda m: print(m, flush=True))
    if not seeds:
        raise ValueError("seeds must list at least one seed, got none")
    plan = scaled_configs(base, rule, batch_sizes)
    out = Path(out_dir)
    shared = base_from is not None
    if not resume:
        for b, _, _ in plan:
            if shared and b == base.batch_size:
                continue
            for s in seeds:
                folder = out / sweepfolder.scale_run(b, s)
                if RunFolder(folder).contents():
                    raise ValueError(
                        f"{folder} is not empty; pass --resume to continue the sweep or choose another --out"
                    )
    together = use_ensemble(base, len(seeds), ensemble)
    work = []
    for b, _, cfg in plan:
        if not (shared and b == base.batch_size):
            work += seed_jobs(cfg, seeds, out, [sweepfolder.scale_run(b, s) for s in seeds], together)

    def dirs(b: int) -> list[str]:
        names = [sweepfolder.scale_run(b, s) for s in seeds]
        return [f"{base_from}/{n}" for n in names] if shared and b == base.batch_size else names

    spec = {
        "rule": rule,
        "base_batch_size": base.batch_size,
        "seeds": [int(s) for s in seeds],
        "base": plan[[b for b, _, _ in plan].index(base.batch_size)][2].to_dict(),
        "x_axis": "base run's continuous time at the same epoch (= each run's own sde_time when the rule holds)",
        "runs": [
            {"kappa": kappa, **_hyper(cfg), "invariants": sde_constants(cfg, sde_rule(cfg.optimizer)),
             "dirs": dirs(b)}
            for b, kappa, cfg in plan
        ],
    }  # fmt: skip
    with sweepfolder.hold(out):  # the sweep's one driver (a second one is refused in one line)
        if resume and (out / sweepfolder.SCALE_JSON).is_file():
            old = read_json(out / sweepfolder.SCALE_JSON)
            diff = sorted(k for k in spec["base"] if old.get("base", {}).get(k) != spec["base"][k])
            if old.get("rule") != rule or diff:
                what = f"rule {old.get('rule')!r}" if old.get("rule") != rule else f"a base config differing in {diff}"
                raise ValueError(f"cannot resume {out}: its scale.json has {what}; use the same flags or another --out")
        check_jobs(work, resume, jobs)  # every B's batches, steps, memory and folder, before anything is written
        if resume:
            sweepfolder.remove_temporaries(out)  # what a killed write of its JSON, table or figure left
        if together:
            log(ensemble_note(len(seeds), "B"))
        write_json(out / sweepfolder.SCALE_JSON, spec)
        return run_jobs(work, jobs, resume=resume, progress=progress, log=log, sinks=sinks)


# -- reading the sweep back: curves and table -----------------------------------------------------


@dataclass
class ScaleCurve:
    """Mean and std over seeds of one metric for one batch size, against the base run's time."""

    batch_size: int
    kappa: float
    metric: str
    x: np.ndarray  # t0(epoch): the base run's continuous time at each record's epoch
    sde_time: np.ndarray  # the run's own continuous time (mean over seeds)
    epoch: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_seeds: int


def base_time_at_epoch(
    epoch: np.ndarray, base_epoch: np.ndarray, base_time: np.ndarray, tail_time_per_epoch: float
) -> np.ndarray:
    r"""``t0(e)``: the base run's continuous time at SGD-equivalent epoch ``e``.

    Linear interpolation of the base run's records ``(e_j, t_j)``; past its last record,
    continued at ``tail_time_per_epoch`` (``τ0·(η_last/η0)^p``, p = 1 for SGD, 2 for Adam/RMSprop).
    With a constant LR this is exactly ``t0(e) = e·τ0``, ``τ0 = η0^p·n/B0``.
    """
    epoch = np.asarray(epoch, dtype=float)
    inside = np.interp(epoch, base_epoch, base_time)
    beyond = base_time[-1] + (epoch - base_epoch[-1]) * tail_time_per_epoch
    return np.where(epoch > base_epoch[-1], beyond, inside)


def _load(out_dir: str | os.PathLike) -> tuple[dict, dict[int, list[Run]]]:
    """The sweep's spec and, per batch size, its runs that have records (a seed not started or
    killed before its first record is left out)."""
    out = Path(out_dir)
    spec = read_json(out / sweepfolder.SCALE_JSON)
    groups: dict[int, list[Run]] = {}
    for entry in spec["runs"]:
        folders = [RunFolder(out / name) for name in entry["dirs"]]
        runs = [run for run in (f.load() for f in folders if f.exists()) if run.records]
        if runs:
            groups[int(entry["batch_size"])] = runs
    return spec, groups


def base_run(out_dir: str | os.PathLike) -> Run:
    """A run of the base batch size ``B0`` (the first seed with records): its config and clock."""
    spec, groups = _load(out_dir)
    b0 = int(spec["base_batch_size"])
    if b0 not in groups:
        raise ValueError(f"the base run (B = {b0}) in {out_dir} has no records")
    return groups[b0][0]


def _columns(runs: list[Run], key: str) -> np.ndarray:
    """``[seed, record]`` array of one field, truncated to the shortest run (a diverged seed)."""
    n = min(len(r.records) for r in runs)
    return np.array([[float(r.records[j][key]) for j in range(n)] for r in runs])


def _base_mapping(spec: dict, groups: dict[int, list[Run]]):
    b0 = int(spec["base_batch_size"])
    if b0 not in groups:
        raise ValueError(f"the base run (B = {b0}) has no records; the other runs cannot be placed on its time axis")
    base = groups[b0]
    epochs, times = _columns(base, "epoch").mean(0), _columns(base, "sde_time").mean(0)
    clock = Clock.from_dict(base[0].derived["clock"])  # the base optimizer's clock: time per epoch at each LR
    lr_last = _columns(base, "lr").mean(0)[-1]
    ratio = clock.original_step_time(lr_last) / clock.original_step_time(base[0].config["lr"])
    tail = base[0].derived["time_per_epoch"] * ratio
    return lambda e: base_time_at_epoch(e, epochs, times, tail)


def scale_curves(out_dir: str | os.PathLike, metrics: tuple[str, ...] = TABLE_METRICS) -> dict[str, list[ScaleCurve]]:
    """``{metric: [ScaleCurve per batch size, ascending]}`` from a folder written by :func:`run_scale`.

    Seeds of one ``B`` share the evaluation grid (in epochs); a diverged seed truncates its
    ``B`` to the shortest run. ``x`` is :func:`base_time_at_epoch` of each record's epoch.
    """
    spec, groups = _load(out_dir)
    t0 = _base_mapping(spec, groups)
    b0 = int(spec["base_batch_size"])
    curves: dict[str, list[ScaleCurve]] = {}
    for metric in metrics:
        curves[metric] = []
        for b, runs in sorted(groups.items()):
            values, epoch = _columns(runs, metric), _columns(runs, "epoch").mean(0)
            curves[metric].append(
                ScaleCurve(
                    batch_size=b,
                    kappa=b / b0,
                    metric=metric,
                    x=t0(epoch),
                    sde_time=_columns(runs, "sde_time").mean(0),
                    epoch=epoch,
                    mean=values.mean(0),
                    std=values.std(0, ddof=1) if len(runs) > 1 else np.zeros(values.shape[1]),
                    n_seeds=len(runs),
                )
            )
    return curves


def scale_rows(out_dir: str | os.PathLike, metrics: tuple[str, ...] = TABLE_METRICS) -> list[dict]:
    """Per batch size: κ, lr (β, ε for adaptive runs or the sqrt rule), seeds, final mean and std
    over seeds of each metric, the final test_acc/test_loss minus the base B's, the final epoch,
    the run's own final ``sde_time`` and the base's time at that epoch (equal when the rule holds)."""
    out = Path(out_dir)
    spec = read_json(out / sweepfolder.SCALE_JSON)
    b0 = int(spec["base_batch_size"])
    adaptive = spec["rule"] == "sqrt" or spec["base"]["optimizer"] in ADAPTIVE
    curves = scale_curves(out, tuple(metrics))
    finals = {(m, c.batch_size): c for m, cs in curves.items() for c in cs}
    rows = []
    for entry in spec["runs"]:
        b = int(entry["batch_size"])
        row = {"batch_size": b, "kappa": entry["kappa"], "lr": entry["lr"]}
        if adaptive:
            names = ["beta"] if len(entry["betas"]) == 1 else [f"beta{i + 1}" for i in range(len(entry["betas"]))]
            row.update(zip(names, entry["betas"]))
            row["eps"] = entry["eps"]
        statuses = [RunFolder(out / name).status().status for name in entry["dirs"]]
        row["seeds"] = len(entry["dirs"])
        row["completed"] = statuses.count("completed")
        for m in metrics:
            c = finals.get((m, b))
            row[f"{m}_final"] = float(c.mean[-1]) if c else math.nan
            row[f"{m}_final_std"] = float(c.std[-1]) if c else math.nan
        c = finals.get((metrics[0], b))
        row["epoch_final"] = float(c.epoch[-1]) if c else math.nan
        row["sde_time_final"] = float(c.sde_time[-1]) if c else math.nan
        row["base_time_final"] = float(c.x[-1]) if c else math.nan
        rows.append(row)
    base = next(r for r in rows if r["batch_size"] == b0)
    for r in rows:
        for m in ("test_acc", "test_loss"):
            r[f"{m}_diff"] = r.get(f"{m}_final", math.nan) - base.get(f"{m}_final", math.nan)
    return sorted(rows, key=lambda r: r["batch_size"])


def _g(x) -> str:
    return "" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))


def scale_markdown(rows: list[dict], spec: dict, metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """Markdown: one line per batch size, final ``mean ± std`` over seeds and Δ to the base B."""
    b0 = spec["base_batch_size"]
    hyper = [k for k in ("beta", "beta1", "beta2", "eps") if any(k in r for r in rows)]
    head = ["B", "κ", "η", *hyper, "seeds", *(f"{m} final" for m in metrics),
            f"Δ test_acc vs B={b0}", f"Δ test_loss vs B={b0}", "own sde_time / base time"]  # fmt: skip
    lines = [
        f"{spec['base']['optimizer']} under the {spec['rule']} rule from B0 = {b0}, η0 = {spec['base']['lr']:g}; "
        f"final values after {spec['base']['epochs']:g} epochs, mean ± std over seeds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [str(r["batch_size"]), f"{r['kappa']:g}", _g(r["lr"]), *(_g(r.get(k)) for k in hyper)]
        cells.append(f"{r['seeds']}" + ("" if r["completed"] == r["seeds"] else f" ({r['completed']} completed)"))
        for m in metrics:
            mean, std = r[f"{m}_final"], r[f"{m}_final_std"]
            cells.append(f"{mean:.4g} ± {std:.2g}" if math.isfinite(mean) else "no records")
        cells += [f"{r['test_acc_diff']:+.4f}", f"{r['test_loss_diff']:+.4f}"]
        cells.append(f"{r['sde_time_final'] / r['base_time_final']:.4g}" if r["base_time_final"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_scale_summary(out_dir: str | os.PathLike, metrics: tuple[str, ...] = TABLE_METRICS) -> tuple[Path, Path]:
    """``scale_summary.md`` and ``scale_summary.csv`` in ``out_dir`` (see :func:`scale_rows`)."""
    out = Path(out_dir)
    rows = scale_rows(out, metrics)
    md, csv = out / sweepfolder.SCALE_SUMMARY_MD, out / sweepfolder.SCALE_SUMMARY_CSV
    write_text(md, scale_markdown(rows, read_json(out / sweepfolder.SCALE_JSON), metrics))
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(csv, rows, columns)
    return md, csv


# -- several transfer rules over one κ ladder --------------------------------------------------------------

RULE_METRICS = ("test_loss", "test_acc")  # what a rule must preserve to "hold" (the verdict's default margins)


def reachable(base: RunConfig, rule: str, batch_sizes: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(reached, skipped)``: the batch sizes ``rule`` can scale ``base`` to (:func:`svag.scaling.rule_limit`) and
    those past its own limit (the square-root rule's ``κ(1 − β1) < 1``)."""
    reached = [b for b in batch_sizes if reaches(base, rule, b / base.batch_size)]
    return reached, [b for b in batch_sizes if b not in reached]


def run_rules(
    base: RunConfig,
    rules: Sequence[str],
    batch_sizes: list[int],
    seeds: list[int],
    out_dir: str | os.PathLike,
    **options,
) -> dict[str, str]:
    """One :func:`run_scale` per rule over the same κ ladder, in ``out_dir/{rule}/``; the base runs (κ = 1, the
    same config under every rule) train once, in the first rule's folder. A rule skips the batch sizes past
    its own limit (:func:`reachable`). ``{run_dir: status}`` of every run."""
    if len(set(rules)) != len(rules) or not rules:
        raise ValueError(f"rules must list distinct rules, got {list(rules)!r}")
    out = Path(out_dir)
    statuses: dict[str, str] = {}
    first = sweepfolder.rule_folder(rules[0])
    with sweepfolder.hold(out):
        for i, rule in enumerate(rules):
            sizes, _ = reachable(base, rule, batch_sizes)
            got = run_scale(base, rule, sizes, seeds, out / sweepfolder.rule_folder(rule),
                            base_from=None if i == 0 else f"../{first}", **options)  # fmt: skip
            statuses.update({f"{sweepfolder.rule_folder(rule)}/{k}": v for k, v in got.items()})
    return statuses


RULE_POINTS = (("mid", 0.5), ("end", 1.0))  # where along the run a rule is judged: half way and at the end


def _at(runs: list[Run], metric: str, fraction: float) -> dict[int, float]:
    """``{seed: the metric at that fraction of the run's epochs}`` (linear in the records' epochs; the end is the
    last record); a run that did not complete counts as ``nan`` (it departed)."""
    out = {}
    for r in runs:
        if r.status.status != "completed":
            out[int(r.config["seed"])] = math.nan
            continue
        epochs = np.array([float(x["epoch"]) for x in r.records])
        values = np.array([float(x[metric]) for x in r.records])
        out[int(r.config["seed"])] = float(np.interp(fraction * epochs[-1], epochs, values))
    return out


def rule_cell(base: dict[int, float], run: dict[int, float], metric: str, margin=None, alpha: float = 0.05) -> dict:
    r"""The equivalence verdict (:func:`svag.analysis.equivalence.verdict`) of a rule's run at κ against the base
    run, on the final value of ``metric``: the gap ``Δ = μ_κ − μ_1`` over the seeds both have (paired: a seed
    shares its initialization and data streams at every B), with ``δ`` the metric's margin (relative ones of
    the base mean). A run that diverged or failed *departs*."""
    common = sorted(set(base) & set(run))
    if any(math.isnan(run[s]) for s in common):
        return {"outcome": "departs", "estimate": math.nan, "reason": "a seed did not complete (diverged or failed)"}
    if len(common) < 2:
        return {"outcome": "inconclusive", "estimate": math.nan, "reason": f"{len(common)} paired seed(s): needs 2"}
    values = np.array([[base[s] for s in common], [run[s] for s in common]])
    est = contrast(values, [-1.0, 1.0], paired=True)
    delta = resolve_margin(metric, float(values[0].mean()), margin)
    v = verdict(est, delta, alpha)
    return {"outcome": v.outcome, "estimate": v.estimate, "delta": delta, "interval": list(v.interval_alpha),
            "n_seeds": len(common), "reason": v.reason}  # fmt: skip


def rule_verdicts(
    out_dir: str | os.PathLike,
    rules: Sequence[str],
    metrics: Sequence[str] = RULE_METRICS,
    margins: dict | None = None,
    alpha: float = 0.05,
) -> dict:
    """Per rule and batch size, the verdict of every metric against the base run (:func:`rule_cell`) half way
    through the run (``"test_loss (mid)"``, at the same epoch: the same continuous time when the rule keeps the
    SDE) and at its end (``"test_loss"``), so a rung *follows* only when the trajectory is kept; per rule the
    largest κ up to which every metric *follows* (``held_to``) and the first κ where one *departs*
    (``departs_at``); and the one-line answer (:func:`rules_answer`). Reads the folders :func:`run_rules` wrote."""
    out, margins = Path(out_dir), dict(margins or {})
    columns = [m if point == "end" else f"{m} ({point})" for point, _ in RULE_POINTS for m in metrics]
    result: dict = {"metrics": columns, "alpha": alpha, "rules": {}}
    for rule in rules:
        spec, groups = _load(out / sweepfolder.rule_folder(rule))
        b0 = int(spec["base_batch_size"])
        if b0 not in groups:
            raise ValueError(f"{out / rule}: the base run (B = {b0}) has no records")
        rows = []
        for b, runs in sorted(groups.items()):
            if b == b0:
                continue
            cells = {
                m if point == "end" else f"{m} ({point})": rule_cell(
                    _at(groups[b0], m, fraction), _at(runs, m, fraction), m, margins.get(m), alpha
                )
                for point, fraction in RULE_POINTS
                for m in metrics
            }
            rows.append(rule_row(b, b / b0, runs[0].config["lr"], cells))
        limit = rule_limit(RunConfig.from_dict(spec["base"]), rule)
        result["rules"][rule] = rule_summary(rows, b0, limit)
    result["answer"] = rules_answer(result)
    return result


def rule_row(batch_size: int, kappa: float, lr: float, cells: dict[str, dict]) -> dict:
    """One rung of a rule's ladder: its cells (:func:`rule_cell` per metric) and their overall outcome, *departs*
    if any metric departs, else *inconclusive* if any is, else *follows*."""
    outcomes = [c["outcome"] for c in cells.values()]
    overall = next((o for o in ("departs", "inconclusive") if o in outcomes), "follows")
    return {"batch_size": batch_size, "kappa": kappa, "lr": lr, "outcome": overall, "cells": cells}


def rule_summary(rows: list[dict], base_batch_size: int, limit: float = math.inf) -> dict:
    """One rule's ladder (rows by increasing κ, from :func:`rule_row`): ``held_to``, the largest κ up to which every
    rung *follows* (1: none); ``undecided_at``, the first rung after that if it is *inconclusive*;
    ``departs_at``, the first rung that *departs*; and the rule's own ``limit`` (:func:`svag.scaling.rule_limit`)."""
    held, undecided = 1.0, None
    for row in rows:
        if row["outcome"] != "follows":
            undecided = row["kappa"] if row["outcome"] == "inconclusive" else None
            break
        held = row["kappa"]
    departs = next((row["kappa"] for row in rows if row["outcome"] == "departs"), None)
    return {"base_batch_size": base_batch_size, "rows": rows, "held_to": held, "undecided_at": undecided,
            "departs_at": departs, "limit": limit}  # fmt: skip


def rules_answer(result: dict) -> str:
    """The question a user asks, in one line: from ``B0``, up to which B each rule preserved the run (every metric
    *follows*), where it was first undecided, where it first departed, and its own limit if it has one."""
    parts, b0 = [], None
    for rule, r in result["rules"].items():
        b0 = r["base_batch_size"]
        bits = [f"holds to B = {round(r['held_to'] * b0)}" if r["held_to"] > 1 else "holds at no larger B"]
        if r.get("undecided_at") is not None:
            bits.append(f"undecided at B = {round(r['undecided_at'] * b0)}")
        if r["departs_at"] is not None:
            row = next(row for row in r["rows"] if row["kappa"] == r["departs_at"])
            bits.append(f"departs at B = {round(r['departs_at'] * b0)}{_worst(row)}")
        elif r.get("undecided_at") is None:
            bits.append("the largest B tried")
        if math.isfinite(r["limit"]) and r["departs_at"] is None:
            bits.append(f"its own limit is B < {r['limit'] * b0:.4g}")
        parts.append(f"{rule} {', '.join(bits)}")
    return f"from B0 = {b0}: " + "; ".join(parts)


def _worst(row: dict) -> str:
    """`` (test_loss Δ +0.23 [+0.09, +0.37])``: the departing metric of a rung furthest outside its margin."""
    gone = [(m, c) for m, c in row["cells"].items() if c["outcome"] == "departs" and "interval" in c]
    if not gone:
        return ""
    m, c = max(gone, key=lambda mc: abs(mc[1]["estimate"]) / mc[1]["delta"])
    low, high = c["interval"]
    return f" ({m} Δ {c['estimate']:+.3g} [{low:+.3g}, {high:+.3g}], δ {c['delta']:.3g})"


def write_rules(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``rules.json`` (everything), ``rules.md`` (the answer and one row per rule and B) and ``rules.csv``."""
    out = Path(out_dir)
    write_json(out / sweepfolder.RULES_JSON, result)
    metrics = result["metrics"]
    lines = [result["answer"], "", "| rule | B | κ | η | " + " | ".join(metrics) + " | verdict |",
             "|---|---|---|---|" + "---|" * len(metrics) + "---|"]  # fmt: skip
    flat = []
    for rule, r in result["rules"].items():
        for row in r["rows"]:
            cells = []
            for m in metrics:
                c = row["cells"][m]
                est = c["estimate"]
                cells.append(f"{c['outcome']} (Δ {est:+.3g}, δ {c['delta']:.3g})" if "delta" in c else c["outcome"])
            lines.append(f"| {rule} | {row['batch_size']} | {row['kappa']:g} | {row['lr']:.4g} | "
                         + " | ".join(cells) + f" | {row['outcome']} |")  # fmt: skip
            flat.append({"rule": rule, "batch_size": row["batch_size"], "kappa": row["kappa"], "lr": row["lr"],
                         "verdict": row["outcome"],
                         **{f"{m}_{k}": row["cells"][m].get(k) for m in metrics for k in ("outcome", "estimate",
                                                                                          "delta")}})  # fmt: skip
    write_text(out / sweepfolder.RULES_MD, "\n".join(lines) + "\n")
    cols = ["rule", "batch_size", "kappa", "lr", "verdict"] + [f"{m}_{k}" for m in metrics
                                                               for k in ("outcome", "estimate", "delta")]  # fmt: skip
    write_csv(out / sweepfolder.RULES_CSV, flat, cols)
    return out / sweepfolder.RULES_JSON, out / sweepfolder.RULES_MD, out / sweepfolder.RULES_CSV
