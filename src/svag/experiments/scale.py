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
from svag.clock import Clock
from svag.config import RunConfig
from svag.experiments.compare import check_jobs, ensemble_note, seed_jobs, use_ensemble
from svag.experiments.executors import run_jobs
from svag.records import read_json, write_csv, write_json, write_text
from svag.runfolder import Run, RunFolder
from svag.scaling import linear_rule, sde_constants, sqrt_rule

__all__ = [
    "RULES",
    "ScaleCurve",
    "auto_rule",
    "base_run",
    "base_time_at_epoch",
    "run_scale",
    "scale_curves",
    "scale_markdown",
    "scale_rows",
    "scaled_configs",
    "write_scale_summary",
]

RULES = {"linear": linear_rule, "sqrt": sqrt_rule}
ADAPTIVE = ("adam", "adamw", "rmsprop")
TABLE_METRICS = ("train_loss", "test_loss", "test_acc", "weight_norm_sq")


def auto_rule(optimizer: str) -> tuple[str, str]:
    """``(rule, why)``: the rule that keeps ``optimizer``'s SDE when ``B → κB``."""
    if optimizer in ADAPTIVE:
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
    return {"lr": cfg.lr, "batch_size": cfg.batch_size, "betas": list(cfg.betas), "eps": cfg.eps}


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
) -> dict[str, str]:
    """Run ``rule(base, B/B0)`` for every ``B`` (plus the base ``B0``) and seed; ``{run_dir: status}``.

    Writes ``out_dir/scale.json`` first (rule, base config, per-B ``lr``, ``batch_size``, ``betas``,
    ``eps``, the rule's invariants from :func:`svag.scaling.sde_constants`, run folders), then the
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
    if not resume:
        for b, _, _ in plan:
            for s in seeds:
                folder = out / sweepfolder.scale_run(b, s)
                if folder.exists() and any(folder.iterdir()):
                    raise ValueError(
                        f"{folder} is not empty; pass --resume to continue the sweep or choose another --out"
                    )
    together = use_ensemble(base, len(seeds), ensemble)
    work = []
    for b, _, cfg in plan:
        work += seed_jobs(cfg, seeds, out, [sweepfolder.scale_run(b, s) for s in seeds], together)
    spec = {
        "rule": rule,
        "base_batch_size": base.batch_size,
        "seeds": [int(s) for s in seeds],
        "base": plan[[b for b, _, _ in plan].index(base.batch_size)][2].to_dict(),
        "x_axis": "base run's continuous time at the same epoch (= each run's own sde_time when the rule holds)",
        "runs": [
            {"kappa": kappa, **_hyper(cfg), "invariants": sde_constants(cfg, rule),
             "dirs": [sweepfolder.scale_run(b, s) for s in seeds]}
            for b, kappa, cfg in plan
        ],
    }  # fmt: skip
    if resume and (out / sweepfolder.SCALE_JSON).is_file():
        old = read_json(out / sweepfolder.SCALE_JSON)
        diff = sorted(k for k in spec["base"] if old.get("base", {}).get(k) != spec["base"][k])
        if old.get("rule") != rule or diff:
            what = f"rule {old.get('rule')!r}" if old.get("rule") != rule else f"a base config differing in {diff}"
            raise ValueError(f"cannot resume {out}: its scale.json has {what}; use the same flags or another --out")
    check_jobs(work, resume)  # every B's batches, steps, memory and folder, before anything is written
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
