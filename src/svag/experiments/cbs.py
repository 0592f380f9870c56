r"""The critical batch size measured directly, over training (Merrill et al. 2025, "Critical Batch Size
Revisited"; PAPER.md §7), against the noise-scale predictions of the same baseline.

**Design.** A baseline run (the config's ``B``, ``η``, optimizer; a constant LR, a warm-up allowed before
the first checkpoint) trains in **segments** that end at the checkpoints ``e_1 < … < e_P`` (SGD-equivalent
epochs, log-spaced: each twice the one before, ``e_P`` = ``epochs``): segment ``p`` is a run
``base{p}_seed{s}`` that starts from segment ``p − 1``'s ``checkpoint.pt``
(:func:`svag.runner.state.start_from`: model, optimizer state, every stream of the seed tree, so the chain
is the uninterrupted run bit for bit) and trains ``e_p − e_{p−1}`` epochs. From each checkpoint, a
**branch** ``ckpt{p}_B{κB}_seed{s}`` trains ``branch_epochs`` epochs (``branch_epochs·n`` samples, the same
for every κ) at ``κB`` under the transfer rule (:data:`svag.scaling.RULES`; default
:func:`svag.scaling.sde_rule`: ``η·κ`` for SGD, ``η·√κ`` with ``1−β → κ(1−β)``, ``ε/√κ`` for Adam), each seed
from its own baseline's checkpoint: the branch at ``κ = 1`` *is* the baseline's continuation.

**The CBS at checkpoint p** is the largest ``κB`` up to which every branch's final ``metric`` (default the
test loss) stays within ``ε`` of the ``κ = 1`` branch, by the paired equivalence verdict
(:func:`svag.experiments.scale.rule_cell`: the seeds share the checkpoint and data streams; ``δ = ε`` of
the ``κ = 1`` mean, relative) and read as :func:`svag.experiments.scale.rule_summary` reads a rule's ladder
(``held_to``): ``CBS = B`` when ``κ = 2`` already departs or is undecided.

**The predictions** at checkpoint ``p`` come from the baseline's own G/N records (``noise="pairs"``) pooled
(:func:`svag.noise.pool_window`, every seed) over ``[e_p/√2, e_p·√2]``: McCandlish et al.'s
``B_simple = tr Σ/|G|² = B·N/G`` (``N`` = tr Σ_B at the baseline's ``B``) and P1's
``B* = τ·B·N/G`` (:func:`svag.lsr.predict_from_window`, with its SE); for Adam, AdamW and RMSprop the
*preconditioned* ``G/N`` of :mod:`svag.noise` (record fields ``*_pre``; the ratio the square-root rule
carries, issue 24) where the baseline recorded it (``--noise-source pairs``), else the plain one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from svag import sweepfolder
from svag.config import RunConfig
from svag.experiments.compare import check_jobs, seed_jobs, use_ensemble
from svag.experiments.defaults import CBS_BRANCH_EPOCHS, CBS_EPSILON, CBS_KAPPAS, CBS_POINTS, LSR_TAU
from svag.experiments.executors import run_jobs
from svag.experiments.scale import rule_cell, rule_row, rule_summary
from svag.lsr import predict_from_window
from svag.noise import pool_window
from svag.records import read_json, write_csv, write_json, write_text
from svag.runfolder import CHECKPOINT, RunFolder
from svag.scaling import ADAPTIVE, RULES, sde_rule

__all__ = [
    "CBS_BRANCH_EPOCHS",
    "CBS_EPSILON",
    "CBS_KAPPAS",
    "CBS_METRIC",
    "CBS_POINTS",
    "branch_config",
    "cbs_decision",
    "cbs_table",
    "checkpoint_epochs",
    "run_cbs",
    "write_cbs",
]

CBS_METRIC = "test_loss"  # the loss a branch is judged by
CBS_TAU = LSR_TAU  # P1's threshold τ of B* = τ·B·N/G: the LSR test's (one owner)
WINDOW = math.sqrt(2.0)  # the G/N records pooled for checkpoint e: epochs in [e/WINDOW, e·WINDOW]


def checkpoint_epochs(epochs: float, points: int) -> list[float]:
    """``points`` checkpoints log-spaced up to ``epochs``, each twice the one before: ``epochs·2^(p − P)``."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"points must be an integer >= 1, got {points!r}")
    return [epochs * 2.0 ** (p - points) for p in range(1, points + 1)]


def _check(base: RunConfig, rule: str, kappas: Sequence[float], points: int, branch_epochs: float,
           epsilon: float) -> list[float]:  # fmt: skip
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    try:
        ks = sorted({float(k) for k in kappas})
    except (TypeError, ValueError):
        raise ValueError(f"kappas must be numbers, 1 included, e.g. (1, 2, 4), got {kappas!r}") from None
    if not ks or ks[0] != 1.0 or len(ks) < 2 or any(k * base.batch_size != round(k * base.batch_size) for k in ks):
        raise ValueError(f"kappas must hold 1 and at least one larger κ with κB an integer, got {list(kappas)}")
    if not (isinstance(branch_epochs, (int, float)) and branch_epochs > 0 and math.isfinite(branch_epochs)):
        raise ValueError(f"branch_epochs must be a number > 0, got {branch_epochs!r}")
    if not (isinstance(epsilon, (int, float)) and 0 < epsilon < 1):
        raise ValueError(f"epsilon must be a relative tolerance in (0, 1), e.g. 0.01, got {epsilon!r}")
    if base.schedule != "constant":
        raise ValueError(f"svag cbs trains its baseline and branches at a constant LR (--schedule constant, a "
                         f"--warmup before the first checkpoint allowed), got schedule {base.schedule!r}")  # fmt: skip
    if base.l != 1:
        raise ValueError(f"svag cbs branches plain runs (l = 1), got l = {base.l:g}")
    if base.noise != "pairs":
        raise ValueError(f"svag cbs needs the baseline's G/N records (--noise pairs), got noise {base.noise!r}")
    first = checkpoint_epochs(base.epochs, points)[0]
    if base.warmup >= first:
        raise ValueError(f"the warm-up ({base.warmup:g} epochs) must end before the first checkpoint at epoch "
                         f"{first:g}: use a shorter --warmup, more --epochs or fewer --points")  # fmt: skip
    return ks


def branch_config(base: RunConfig, rule: str, kappa: float, branch_epochs: float) -> RunConfig:
    """A branch: ``rule(base, κ)`` for ``branch_epochs`` epochs at the baseline's constant LR, no warm-up (it
    starts warm) and no G/N logging (the branches are judged by their loss only)."""
    start = replace(base, epochs=float(branch_epochs), warmup=0.0, noise="off")
    return RULES[rule](start, float(kappa)).validate()


def _segments(base: RunConfig, points: int) -> list[RunConfig]:
    ends = checkpoint_epochs(base.epochs, points)
    starts = [0.0, *ends[:-1]]
    return [replace(base, epochs=e - s, warmup=base.warmup if p == 0 else 0.0).validate()
            for p, (s, e) in enumerate(zip(starts, ends))]  # fmt: skip


def run_cbs(
    base: RunConfig,
    out_dir: str | os.PathLike,
    *,
    rule: str | None = None,
    kappas: Sequence[float] = CBS_KAPPAS,
    points: int = CBS_POINTS,
    branch_epochs: float = CBS_BRANCH_EPOCHS,
    epsilon: float = CBS_EPSILON,
    seeds: Sequence[int] = (0, 1),
    resume: bool = False,
    progress: bool = True,
    jobs=1,
    ensemble: str = "auto",
    log=None,
) -> dict[str, str]:
    """Train the baseline's segments (one after the other, every seed), then every branch as one sweep through
    the executors (``jobs``: local processes or Ray); ``{run: status}``. ``cbs.json`` (the plan) is written
    first; every config and folder is checked before anything is written (:func:`check_jobs`)."""
    log = log or (lambda m: print(m, flush=True))
    rule = rule or sde_rule(base.optimizer)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must list at least one seed, got none")
    ks = _check(base, rule, kappas, points, branch_epochs, epsilon)
    out = Path(out_dir)
    together = use_ensemble(base, len(seeds), ensemble)
    segments, ends = _segments(base, points), checkpoint_epochs(base.epochs, points)
    seg_work, branch_work = [], []
    for p, cfg in enumerate(segments, start=1):
        jobs_p = seed_jobs(cfg, seeds, out, [sweepfolder.cbs_base_run(p, s) for s in seeds], together)
        if p > 1:
            jobs_p = [replace(j, init_from=[out / sweepfolder.cbs_base_run(p - 1, s) / CHECKPOINT for s in j.seeds])
                      for j in jobs_p]  # fmt: skip
        seg_work.append(jobs_p)
        for k in ks:
            cfg_k = branch_config(base, rule, k, branch_epochs)
            names = [sweepfolder.cbs_branch_run(p, cfg_k.batch_size, s) for s in seeds]
            branch_work += [replace(j, init_from=[out / sweepfolder.cbs_base_run(p, s) / CHECKPOINT for s in j.seeds])
                            for j in seed_jobs(cfg_k, seeds, out, names, together)]  # fmt: skip
    spec = {
        "rule": rule, "base": base.to_dict(), "batch_size": base.batch_size, "seeds": seeds, "kappas": ks,
        "epsilon": epsilon, "branch_epochs": branch_epochs, "metric": CBS_METRIC, "tau": CBS_TAU,
        "points": [{"point": p, "epochs_planned": e, "segments": [sweepfolder.cbs_base_run(p, s) for s in seeds],
                    "branches": {f"{k:g}": [sweepfolder.cbs_branch_run(p, round(k * base.batch_size), s)
                                            for s in seeds] for k in ks}}
                   for p, e in enumerate(ends, start=1)],
    }  # fmt: skip
    statuses: dict[str, str] = {}
    with sweepfolder.hold(out):
        if resume and (out / sweepfolder.CBS_JSON).is_file():
            old = read_json(out / sweepfolder.CBS_JSON)
            diff = sorted(k for k in spec if k != "points" and old.get(k) != spec[k])
            if diff:
                raise ValueError(f"cannot resume {out}: its cbs.json differs in {diff}; use the same flags or another "
                                 "--out")  # fmt: skip
        check_jobs([j for js in seg_work for j in js] + branch_work, resume, jobs)
        if resume:
            sweepfolder.remove_temporaries(out)
        write_json(out / sweepfolder.CBS_JSON, spec)
        log(f"baseline: {points} segment(s) to epochs {', '.join(f'{e:g}' for e in ends)}, {len(seeds)} seed(s)")
        for p, js in enumerate(seg_work, start=1):
            got = run_jobs(js, jobs, resume=resume, progress=progress, log=log)
            statuses.update(got)
            if any(v != "completed" for v in got.values()):  # a later segment or branch has no checkpoint to start
                log(f"baseline segment {p} did not complete ({got}); no later segment or branch runs")
                return statuses
        log(f"branches: {len(ks)} batch sizes × {points} checkpoint(s) × {len(seeds)} seed(s)")
        statuses.update(run_jobs(branch_work, jobs, resume=resume, progress=progress, log=log))
    return statuses


# -- the CBS from the runs -------------------------------------------------------------------------


def cbs_decision(finals: dict[float, dict[int, float]], batch_size: int, metric: str = CBS_METRIC,
                 epsilon: float = CBS_EPSILON, alpha: float = 0.05) -> dict:  # fmt: skip
    """The CBS at one checkpoint from the branches' final ``metric`` (``{κ: {seed: value}}``, ``nan`` for a
    branch that did not complete): every ``κ > 1`` against ``κ = 1`` by :func:`rule_cell` with the relative
    margin ``ε``, and the ladder read by :func:`rule_summary`; ``cbs = held_to·B``."""
    rows = []
    for k in sorted(k for k in finals if k != 1.0):
        cell = rule_cell(finals[1.0], finals[k], metric, margin=f"{100 * epsilon:g}%", alpha=alpha)
        rows.append(rule_row(round(k * batch_size), k, math.nan, {metric: cell}))
    summary = rule_summary(rows, batch_size)
    return {**summary, "cbs": summary["held_to"] * batch_size}


def _final(folder: RunFolder, metric: str) -> tuple[float, dict | None]:
    """A run's last ``metric`` (``nan`` unless completed) and its last record."""
    if not folder.exists():
        return math.nan, None
    rows = folder.records()
    last = rows[-1] if rows else None
    ok = folder.status().status == "completed" and last is not None
    return (float(last[metric]) if ok else math.nan), last


def cbs_table(out_dir: str | os.PathLike, alpha: float = 0.05) -> dict:
    """Per checkpoint: its epoch and samples (the baseline's own count), the CBS (:func:`cbs_decision`), each
    branch's mean final loss, and the predictions ``B_simple`` and ``B*`` (with SE) from the baseline's G/N
    records pooled over ``[e/√2, e·√2]``. Reads the folder :func:`run_cbs` wrote; trains nothing."""
    out = Path(out_dir)
    spec = read_json(out / sweepfolder.CBS_JSON)
    B, metric, tau, seeds = spec["batch_size"], spec["metric"], spec["tau"], spec["seeds"]
    offset = {s: 0.0 for s in seeds}  # each seed's epochs before the current segment
    records, rows = [], []
    for point in spec["points"]:
        epochs = []
        for s, name in zip(seeds, point["segments"]):
            folder = RunFolder(out / name)
            rs = folder.records() if folder.exists() else []
            records += [{**r, "epoch": r["epoch"] + offset[s]} for r in rs]
            if rs:
                offset[s] += rs[-1]["epoch"]
                epochs.append(offset[s])
        rows.append({"point": point["point"], "epoch": sum(epochs) / len(epochs) if epochs else math.nan})
    # Adam/RMSprop: the preconditioned G/N (svag.noise, issue 24), the ratio P2's square-root rule carries
    suffix = (
        "_pre" if spec["base"]["optimizer"] in ADAPTIVE and any(r.get("G_pre") is not None for r in records) else ""
    )
    n_train = None
    first = out / spec["points"][0]["segments"][0]
    if RunFolder(first).exists():
        n_train = RunFolder(first).derived().get("n_train")
    for point, row in zip(spec["points"], rows):
        e = row["epoch"]
        row["samples"] = round(e * n_train) if n_train and math.isfinite(e) else None
        window = [r for r in records if math.isfinite(e) and e / WINDOW <= r["epoch"] <= e * WINDOW]
        try:
            pooled = pool_window(window, suffix=suffix)
            pred = predict_from_window(B, pooled, tau)
            row.update(gn_ratio=pooled.ratio, gn_ratio_se=pooled.ratio_se, noise_count=pooled.m,
                       B_star=pred.B_star, B_star_se=pred.B_star_se, B_simple=pred.B_star / tau)  # fmt: skip
        except ValueError:  # no G/N estimate in the window
            row.update(gn_ratio=math.nan, gn_ratio_se=math.nan, noise_count=0, B_star=math.nan, B_star_se=math.nan,
                       B_simple=math.nan)  # fmt: skip
        finals = {float(k): {s: _final(RunFolder(out / name), metric)[0] for s, name in zip(seeds, names)}
                  for k, names in point["branches"].items()}  # fmt: skip
        row["loss"] = {f"{k:g}": _mean(v.values()) for k, v in finals.items()}
        decision = cbs_decision(finals, B, metric, spec["epsilon"], alpha)
        row.update(cbs=decision["cbs"], undecided_at=decision["undecided_at"], departs_at=decision["departs_at"],
                   verdicts=decision["rows"])  # fmt: skip
    return {**{k: spec[k] for k in ("rule", "batch_size", "seeds", "kappas", "epsilon", "branch_epochs", "metric",
                                    "tau")}, "optimizer": spec["base"]["optimizer"], "lr": spec["base"]["lr"],
            "alpha": alpha, "window": f"epochs in [e/{WINDOW:.4g}, e·{WINDOW:.4g}]",
            "gn": "preconditioned" if suffix else "plain", "rows": rows}  # fmt: skip


def _mean(values) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan


def _b(x: float | None, kappa: float | None = None, B: int | None = None) -> str:
    if kappa is not None:
        return f"{round(kappa * B)}"
    return f"{x:.4g}" if x is not None and math.isfinite(x) else "–"


def _stops(row: dict, B: int) -> str:
    """Where the ladder stopped: the first κB that did not follow (undecided or departs), and the first that
    departs when that is further up."""
    und, dep = row["undecided_at"], row["departs_at"]
    if und is not None and (dep is None or und < dep):
        return f"undecided at {_b(None, und, B)}" + (f", departs at {_b(None, dep, B)}" if dep is not None else "")
    return f"departs at {_b(None, dep, B)}" if dep is not None else "largest B tried"


def cbs_markdown(result: dict) -> str:
    """One line per checkpoint: epoch, samples, CBS (and where the ladder stopped), ``B_simple``, ``B*``."""
    B = result["batch_size"]
    lines = [
        f"{result['optimizer']} from B = {B}, η = {result['lr']:g}; branches of {result['branch_epochs']:g} epoch(s) "
        f"at κB under the {result['rule']} rule, κ ∈ {{{', '.join(f'{k:g}' for k in result['kappas'])}}}, "
        f"{len(result['seeds'])} seed(s); CBS = largest κB whose final {result['metric']} stays within "
        f"ε = {100 * result['epsilon']:g}% of κ = 1 (paired equivalence verdict, α = {result['alpha']:g})"
        + ("; G/N preconditioned by the optimizer's 1/(√v + ε)" if result.get("gn") == "preconditioned" else ""),
        "",
        "| checkpoint | epoch | samples | CBS | stops | B_simple = B·N/G | B* = τ·B·N/G | G/N | "
        + " | ".join(f"{result['metric']} κ={k:g}" for k in result["kappas"]) + " |",
        "|" + "---|" * (8 + len(result["kappas"])),
    ]  # fmt: skip
    for r in result["rows"]:
        stops = _stops(r, B)
        star = _b(r["B_star"]) + (f" ± {r['B_star_se']:.2g}" if math.isfinite(r["B_star_se"]) else "")
        lines.append(f"| {r['point']} | {r['epoch']:.4g} | {r['samples'] if r['samples'] is not None else '–'} | "
                     f"{r['cbs']:g} | {stops} | {_b(r['B_simple'])} | {star} | {_b(r['gn_ratio'])} | "
                     + " | ".join(_b(r["loss"][f"{k:g}"]) for k in result["kappas"]) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_cbs(result: dict, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``cbs.json`` (the plan and, under ``result``, everything :func:`cbs_table` found), ``cbs.md``, ``cbs.csv``."""
    out = Path(out_dir)
    js = out / sweepfolder.CBS_JSON
    write_json(js, {**read_json(js), "result": result})
    write_text(out / sweepfolder.CBS_MD, cbs_markdown(result))
    cols = ["point", "epoch", "samples", "cbs", "undecided_at", "departs_at", "B_simple", "B_star", "B_star_se",
            "gn_ratio", "gn_ratio_se", "noise_count"]  # fmt: skip
    flat = [{**{c: r[c] for c in cols}, **{f"{result['metric']}_k{k}": v for k, v in r["loss"].items()}}
            for r in result["rows"]]  # fmt: skip
    write_csv(out / sweepfolder.CBS_CSV, flat, list(flat[0]) if flat else cols)
    return js, out / sweepfolder.CBS_MD, out / sweepfolder.CBS_CSV
