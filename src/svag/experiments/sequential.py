"""``svag compare --until-decided``: seeds in rounds until every chosen metric's verdict is decided.

Each round trains the next seeds of the same seed tree at every ``l`` together (round 2 of a design
with looks at 3, 6, 12 seeds trains seeds 3..5, reusing seeds 0..2), then looks at the verdict of
each metric at the end of training with the group-sequential design of
:mod:`svag.analysis.sequential` (Pocock-type repeated confidence intervals, Jennison & Turnbull
1989): a metric is *decided* at the first look where its ``(1 − 2α)`` interval lies inside ``±δ``
(*follows*) or beyond δ on one side (*departs*). The rounds stop when every chosen metric is decided,
at the design's last look (``max_seeds``), or before a round whose projected CPU time would pass
``max_cpu_minutes``. After each look ``sequential.json`` and ``sequential.md`` say where the rounds
stand. Resume (``resume=True``, ``svag compare --until-decided --resume`` after Ctrl-C) walks the
same looks again: completed runs are kept, the interrupted round continues, and each look's verdict
is recomputed from the runs (the same numbers).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from svag import sweepfolder
from svag.analysis import sequential as S
from svag.analysis.equivalence import DEFAULT_MARGINS, resolve_margin
from svag.analysis.report import METRICS, ladder_values
from svag.config import RunConfig
from svag.experiments.compare import run_compare
from svag.records import read_json, write_json, write_text
from svag.runfolder import RunFolder

__all__ = ["FIRST_SEEDS", "MAX_SEEDS", "decidable", "run_until_decided", "sequential_lines"]

FIRST_SEEDS = 3  # seeds per l at the first look (svag compare's --seeds default)
MAX_SEEDS = 24  # the last look: looks at 3, 6, 12, 24 (95% RCI coverage 97.5% measured; 48 adds a look: 98.7%)


def decidable(margins: Mapping[str, object] | None = None) -> list[str]:
    """The metrics a sequential verdict can decide: those with a margin (a default of
    :data:`svag.analysis.equivalence.DEFAULT_MARGINS` or one of ``margins``), in :data:`METRICS` order."""
    given = set(margins or {})
    return [m for m in METRICS if m in DEFAULT_MARGINS or m in given]


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished worker processes (``--jobs``)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _end_values(out: Path, names: list[str], metrics: Sequence[str]) -> tuple[tuple[float, ...], dict]:
    """``(ls, {metric: values[l, seed]})`` at the last evaluation of the runs ``names`` (missing: NaN)."""
    runs = [RunFolder(out / n).load() for n in names if RunFolder(out / n).exists()]
    found: dict[str, np.ndarray] = {}
    ls: tuple[float, ...] = ()
    for metric in metrics:
        lad = ladder_values(runs, metric)
        ls = lad.ls
        found[metric] = lad.values[-1]
    return ls, found


def _previous_cpu(out: Path, plan: S.Design) -> float:
    """CPU minutes recorded by an earlier, interrupted driver of the same design (0 if none)."""
    path = out / sweepfolder.SEQUENTIAL_JSON
    try:
        old = read_json(path) if path.exists() else None
    except (OSError, ValueError):
        return 0.0
    if not isinstance(old, dict) or old.get("looks_planned") != list(plan.looks) or not old.get("looks"):
        return 0.0
    return float(old["looks"][-1].get("cpu_minutes", 0.0))


def run_until_decided(
    base: RunConfig,
    ls: list[float],
    out_dir: str | os.PathLike,
    *,
    first: int = FIRST_SEEDS,
    max_seeds: int = MAX_SEEDS,
    max_cpu_minutes: float | None = None,
    decide: Sequence[str] | None = None,
    margins: Mapping[str, object] | None = None,
    alpha: float = 0.05,
    resume: bool = False,
    progress: bool = True,
    jobs=1,
    ensemble: str = "auto",
    ngd: bool = False,
    log=None,
    sinks: Sequence = (),
) -> dict:
    """Train ``base`` at every ``l`` of ``ls`` in rounds of seeds until each metric of ``decide``
    (default :func:`decidable`) is decided (module docstring); returns the JSON-ready report that
    ``sequential.json`` holds: ``design`` (its line), ``looks_planned``, ``looks`` (per look: seeds,
    CPU and wall minutes so far, and per metric its :class:`svag.analysis.sequential.Look`),
    ``metrics`` (per metric: ``outcome``, ``decided_at`` seeds or ``None``, the last look's
    estimate and intervals, δ, the fit's order, the reason), ``stopped`` (why the rounds ended) and
    ``statuses`` (every run's status).

    Raises:
        ValueError: fewer than 3 values of ``l`` or no ``l = 1`` (the guard of the extrapolation
            needs 3), a metric without a margin, and what :func:`svag.experiments.compare.run_compare`
            refuses.
    """
    log = log or (lambda m: print(m, flush=True))
    out = Path(out_dir)
    if 1.0 not in [float(l) for l in ls]:
        raise ValueError(f"the verdict needs the SGD runs (l = 1) in the ladder, got ls={list(ls)}")
    order = S.fit_order(len(ls))
    margins = dict(margins or {})
    metrics = list(decide) if decide else decidable(margins)
    unknown = [m for m in metrics if m not in decidable(margins)]
    if unknown:
        raise ValueError(f"no margin to decide {unknown[0]!r} by; decidable: {', '.join(decidable(margins))}")
    plan = S.design(S.schedule(first, max_seeds), alpha)
    cpu0, wall0, spent_before = _cpu_seconds(), time.perf_counter(), _previous_cpu(out, plan) if resume else 0.0
    report: dict = {"design": plan.describe(), "looks_planned": list(plan.looks), "alpha": alpha, "order": order,
                    "decide": metrics, "looks": [], "metrics": {}, "statuses": {}}  # fmt: skip
    guard = "c/l + d/l² fit" if order == 2 else "c/l fit, guarded by the order check"
    log(f"{plan.describe()}; extrapolation: {guard}; deciding {', '.join(metrics)}")
    decided: dict[str, tuple[str, int]] = {}
    done = 0
    with sweepfolder.hold(out):
        for k, n in enumerate(plan.looks):
            cpu = spent_before + (_cpu_seconds() - cpu0) / 60.0
            if k and max_cpu_minutes is not None and cpu + cpu / done * (n - done) > max_cpu_minutes:
                report["stopped"] = (
                    f"the CPU budget: the look at {n} seeds would need about {cpu / done * n:.1f} CPU minutes, "
                    f"over --max-cpu-minutes {max_cpu_minutes:g}"
                )
                break
            log(f"round {k + 1} of at most {len(plan.looks)}: seeds {done}..{n - 1} at every l")
            statuses = run_compare(base, ls, list(range(done, n)), out, resume=resume, progress=progress, jobs=jobs,
                                   ensemble=ensemble, ngd=ngd, log=log, sinks=sinks)  # fmt: skip
            report["statuses"].update(statuses)
            done = n
            names = [name for name in report["statuses"] if not name.startswith("ngd")]
            ladder, values = _end_values(out, names, metrics)
            entry = {"seeds": n, "cpu_minutes": spent_before + (_cpu_seconds() - cpu0) / 60.0,
                     "wall_minutes": (time.perf_counter() - wall0) / 60.0, "metrics": {}}  # fmt: skip
            for metric in metrics:
                v = values[metric]
                sgd = float(np.nanmean(v[list(ladder).index(1.0)]))
                delta = resolve_margin(metric, sgd, margins.get(metric))
                try:
                    seen = S.look(ladder, v, delta, plan)
                except ValueError as err:  # too few seeds finite at every l (diverged runs)
                    entry["metrics"][metric] = {"error": str(err).splitlines()[0]}
                    continue
                entry["metrics"][metric] = seen.__dict__ | {"decision_interval": list(seen.decision_interval),
                                                            "interval": list(seen.interval)}  # fmt: skip
                if metric not in decided and seen.outcome != "inconclusive":
                    decided[metric] = (seen.outcome, seen.n_seeds)
            report["looks"].append(entry)
            report["metrics"] = _metrics(metrics, entry, decided)
            report["stopped"] = "every chosen metric is decided" if len(decided) == len(metrics) else (
                f"the design's last look ({n} seeds per l, --max-seeds)")  # fmt: skip
            _write(out, report)
            log("  " + "\n  ".join(sequential_lines(report)))
            if len(decided) == len(metrics):
                break
        _write(out, report)
    return report


def _metrics(metrics: Sequence[str], entry: dict, decided: dict) -> dict:
    rows = {}
    for metric in metrics:
        last = entry["metrics"][metric]
        outcome, at = decided.get(metric, ("inconclusive", None))
        rows[metric] = {**last, "outcome": outcome, "decided_at": at, "last_outcome": last.get("outcome")}
    return rows


def sequential_lines(report: Mapping) -> list[str]:
    """One line per metric: its outcome and at how many seeds, the last look's gap with its 95% RCI."""
    lines = []
    for metric, row in report["metrics"].items():
        if "error" in row:
            lines.append(f"{metric}: no verdict ({row['error']})")
            continue
        lo, hi = row["interval"]
        where = f"decided at {row['decided_at']} seeds per l" if row["decided_at"] else "not decided"
        lines.append(
            f"{metric}: {row['outcome']} ({where}) — gap {row['estimate']:+.4g} [{lo:+.4g}, {hi:+.4g}] "
            f"(95% RCI at {row['n_seeds']} seeds, δ = {row['delta']:.4g})"
        )
    return lines


ORDER_NOTES = {
    1: "(μ_∞ + c/l; a look where the ladder's order check rejects order 1 decides nothing).",
    2: "(μ_∞ + c/l + d/l²: no 1/l² bias).",
}


def _spent(looks: list[dict]) -> str:
    if not looks:
        return "no look yet."
    last = looks[-1]
    return (
        f"{last['seeds']} seeds per l, {last['cpu_minutes']:.1f} CPU minutes, "
        f"{last['wall_minutes']:.1f} wall minutes in this driver."
    )


def _write(out: Path, report: Mapping) -> None:
    write_json(out / sweepfolder.SEQUENTIAL_JSON, report)
    looks = report["looks"]
    text = [
        "# Sequential verdict: seeds until decided\n",
        f"Design: {report['design']}.\n",
        f"Extrapolation: Richardson fit of order {report['order']} {ORDER_NOTES[report['order']]}\n",
        f"Stopped: {report.get('stopped', 'running')}; {_spent(looks)}\n",
        "",
        *(f"- {line}" for line in sequential_lines(report)),
        "",
        "| seeds per l | CPU min | " + " | ".join(report["decide"]) + " |",
        "|---|---|" + "---|" * len(report["decide"]),
    ]
    for entry in looks:
        cells = []
        for metric in report["decide"]:
            row = entry["metrics"][metric]
            if "error" in row:
                cells.append("no verdict")
                continue
            lo, hi = row["decision_interval"]
            cells.append(f"{row['outcome']} {row['estimate']:+.3g} [{lo:+.3g}, {hi:+.3g}]")
        text.append(f"| {entry['seeds']} | {entry['cpu_minutes']:.1f} | " + " | ".join(cells) + " |")
    text.append(f"\nThe table's intervals are the {1 - 2 * report['alpha']:.0%} RCIs that decide; δ per metric above.")
    write_text(out / sweepfolder.SEQUENTIAL_MD, "\n".join(text) + "\n")
