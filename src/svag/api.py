"""Whole experiments from Python, on your own model, data and loss: one run, an l-comparison with
its verdicts, the LSR test, a batch-size sweep.

Each function takes the model, the data and the loss as Python objects or as text (a built-in name,
``package.module:callable``, ``path/to/file.py:callable``; :mod:`svag.plugins` says what each
callable receives and returns), every other setting as a :class:`svag.config.RunConfig` field
(keywords, or ``config=``), and writes exactly what the command of the same name writes (run
folders, summaries, verdicts, figures), through the same sweeps (:mod:`svag.experiments`). It
returns a result whose tables are lists of dicts (``result.table(name)``) and load into pandas with
``result.to_pandas(name)`` (pandas is not a dependency of svag: it is imported only then).

Objects importable by name (a function or class defined in a module, not in ``__main__``) are
recorded as ``module:qualname``: their runs resume from anywhere (and ``jobs > 1`` works). Anything
else (a function in your script or notebook, a lambda, tensors, a Dataset) is recorded as
``python:NAME`` with a fingerprint (:func:`svag.plugins.as_spec`): to resume such a run call the
same function again with ``resume=True`` and the same objects (a changed object is refused); the
CLI cannot resume it, and it runs in this process (``jobs=1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svag import sweepfolder
from svag.config import RunConfig
from svag.data.plugin import as_data_spec
from svag.experiments.defaults import LSR_CONFIG, LSR_SEEDS, LSR_TAU, LSR_WINDOW
from svag.integrations import record_sinks
from svag.plugins import KINDS, PYTHON, as_spec

__all__ = [
    "CompareResult",
    "LSRResult",
    "ScaleResult",
    "TrainResult",
    "compare",
    "lsr_test",
    "run",
    "run_replicas",
    "scale",
    "train",
]


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_pandas() needs pandas, which svag does not install: pip install pandas (or read .table(), a list of "
            "dicts)"
        ) from None
    return pandas


class _Tables:
    """``table(name)``: a list of dicts; ``to_pandas(name)``: the same as a ``pandas.DataFrame``."""

    TABLES: tuple[str, ...] = ("records",)

    def table(self, name: str | None = None) -> list[dict]:
        name = name or self.TABLES[0]
        if name not in self.TABLES:
            raise ValueError(f"table must be one of {', '.join(self.TABLES)}, got {name!r}")
        return list(getattr(self, name))

    def to_pandas(self, name: str | None = None):
        """The table ``name`` (default: the first of :attr:`TABLES`) as a ``pandas.DataFrame``."""
        return _pandas().DataFrame(self.table(name))


@dataclass
class TrainResult(_Tables):
    """One run: its folder, its status and its records (``metrics.jsonl``)."""

    out_dir: Path
    status: str
    records: list[dict]


@dataclass
class CompareResult(_Tables):
    """An l-comparison: ``statuses`` per run folder; ``records`` of every run (with its ``run``
    name); ``summary`` (summary.csv's rows); ``verdicts`` (verdicts.csv's rows: gap SGD − SDE per
    metric and point, its interval, follows/departs/inconclusive) and the full ``report``, or
    ``note`` saying why there is no verdict."""

    TABLES = ("records", "summary", "verdicts")
    out_dir: Path
    statuses: dict[str, str]
    records: list[dict]
    summary: list[dict]
    verdicts: list[dict] = field(default_factory=list)
    report: dict | None = None
    note: str | None = None


@dataclass
class LSRResult(_Tables):
    """The LSR test: ``B_star`` ± ``B_star_se`` (P1's B* = B0·τ·N/G over the baseline's window),
    ``B_simple``; ``verdicts`` per batch size of the sweep, ``runs``, ``records``; ``result`` is
    lsr.json."""

    TABLES = ("verdicts", "runs", "records")
    out_dir: Path
    B_star: float
    B_star_se: float
    B_simple: float
    result: dict
    verdicts: list[dict]
    runs: list[dict]
    records: list[dict]


@dataclass
class ScaleResult(_Tables):
    """A batch-size sweep under a scaling rule: ``rows`` per batch size (scale_summary.csv),
    ``statuses``, ``records`` of every run."""

    TABLES = ("rows", "records")
    out_dir: Path
    rule: str
    statuses: dict[str, str]
    rows: list[dict]
    records: list[dict]


def _config(model: Any, data: Any, loss: Any, config: RunConfig | dict | None, fields: dict) -> RunConfig:
    """A validated :class:`RunConfig`: ``config`` (or the defaults), then the plug-ins, then ``fields``."""
    base = RunConfig.of(config).to_dict() if config is not None else RunConfig().to_dict()
    values = {**base, **fields}
    for kind, obj in (("model", model), ("data", data), ("loss", loss)):
        if obj is not None:
            values[kind] = as_data_spec(obj) if kind == "data" else as_spec(obj, kind)
    return RunConfig.from_dict(values).validate()


def _check_jobs(cfg: RunConfig, jobs: int) -> None:
    local = [getattr(cfg, k) for k in KINDS if str(getattr(cfg, k)).startswith(PYTHON)]
    if jobs != 1 and local:
        raise ValueError(
            f"jobs={jobs}: {', '.join(local)} exist only in this process (defined in __main__, a lambda, or data "
            "values); use jobs=1, or define them in a module and pass them (or its import path)"
        )


def _sweep_base(
    model: Any, data: Any, loss: Any, config: RunConfig | dict | None, fields: dict, jobs: int
) -> RunConfig:
    """The base run of a sweep over ``l`` or ``B``: :func:`_config` at ``l = 1``, seed 0, checked for ``jobs``."""
    cfg = _config(model, data, loss, config, {**fields, "l": 1.0, "seed": 0})
    _check_jobs(cfg, jobs)
    return cfg


def _check_seeds(seeds: Any) -> int:
    """``seeds``, the number of seeds ``0..seeds-1`` of a sweep, if it is an integer >= 1."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    return seeds


def _records(out: Path, names: list[str]) -> list[dict]:
    from svag.runfolder import RunFolder

    rows = []
    for name in names:
        folder = RunFolder(out / name)
        if folder.exists():
            rows += [{"run": name, **r} for r in folder.records()]
    return rows


def run(cfg: RunConfig | dict, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True):
    """:func:`svag.runner.run` with the record sinks ``cfg`` asks for (``tensorboard``): train one run
    into ``out_dir``; its arguments, result and errors are the runner's."""
    from svag import runner

    cfg = RunConfig.of(cfg)
    return runner.run(cfg, out_dir, resume=resume, progress=progress, sinks=record_sinks(cfg))


def run_replicas(cfg: RunConfig | dict, seeds: list[int], out_dirs: list[str | os.PathLike], *, resume: bool = False,
                 progress: bool = True):  # fmt: skip
    """:func:`svag.runner.run_replicas` with the record sinks ``cfg`` asks for (``tensorboard``): train
    every seed at once, each into its own folder."""
    from svag import runner

    cfg = RunConfig.of(cfg)
    return runner.run_replicas(cfg, seeds, out_dirs, resume=resume, progress=progress, sinks=record_sinks(cfg))


def train(
    model: Any = None,
    data: Any = None,
    *,
    out: str | os.PathLike,
    loss: Any = None,
    config: RunConfig | dict | None = None,
    resume: bool = False,
    progress: bool = False,
    **fields: Any,
) -> TrainResult:
    """One SGD (``l = 1``) or SVAG run of ``model`` on ``data`` into ``out`` (as ``svag train``).

    Args:
        model, data, loss: objects or text (see the module docstring; ``None``: the config's).
        out: the run folder (empty or absent unless ``resume``).
        config: a RunConfig or a dict of its fields; ``fields`` (RunConfig fields) override it.
        resume: continue the run in ``out`` (same config and the same objects).
    """
    from svag.runner import run

    cfg = _config(model, data, loss, config, fields)
    res = run(cfg, out, resume=resume, progress=progress, sinks=record_sinks(cfg))
    return TrainResult(Path(res.out_dir), res.status, res.records)


def compare(
    model: Any = None,
    data: Any = None,
    *,
    out: str | os.PathLike,
    ls: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0),
    seeds: int = 3,
    loss: Any = None,
    config: RunConfig | dict | None = None,
    margins: dict[str, Any] | None = None,
    fit: str = "wls",
    fit_ls: list[float] | None = None,
    paired: bool | None = None,
    ngd: bool = False,
    ensemble: str = "auto",
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    **fields: Any,
) -> CompareResult:
    """SGD and SVAG at every ``l`` of ``ls`` with seeds ``0..seeds-1`` (as ``svag compare``), the
    summary and the verdict "does SGD follow its SDE?" (``margins``, ``fit``, ``fit_ls``, ``paired``
    as :func:`svag.analysis.report.compute_verdicts`; needs ≥ 2 seeds and l = 1 among ≥ 2 l)."""
    from svag.analysis.report import missing_requirement, run_verdicts
    from svag.analysis.report_text import CSV_COLUMNS, csv_rows
    from svag.analysis.summary import summary_rows
    from svag.experiments.compare import run_compare, write_summary

    cfg = _sweep_base(model, data, loss, config, fields, jobs)
    _check_seeds(seeds)
    ls = [float(x) for x in ls]
    statuses = run_compare(cfg, ls, list(range(seeds)), out, resume=resume, progress=progress, jobs=jobs,
                           ensemble=ensemble, ngd=ngd, log=lambda m: None, sinks=record_sinks(cfg))  # fmt: skip
    names = list(statuses)
    write_summary(out, names=names)
    from svag.runfolder import RunFolder

    runs = [RunFolder(Path(out) / n).load() for n in names if RunFolder(Path(out) / n).exists()]
    result = CompareResult(Path(out), statuses, _records(Path(out), names), summary_rows(runs))
    result.note = missing_requirement(ls, seeds)
    if result.note is None:
        try:
            opts = {"margins": dict(margins or {}), "fit": fit, "use": fit_ls, "paired": paired}
            result.report, _ = run_verdicts(out, names=names, **opts)
            result.verdicts = [{c: r.get(c) for c in CSV_COLUMNS} for r in csv_rows(result.report)]  # same keys
        except ValueError as err:  # too few seeds left after a failed run, and the like
            result.note = str(err).splitlines()[0]
    if plots and result.report is not None:
        from svag.analysis.plotting import plot_verdicts

        plot_verdicts(result.report, Path(out) / sweepfolder.VERDICTS_PNG)
    return result


def lsr_test(
    model: Any = None,
    data: Any = None,
    *,
    out: str | os.PathLike,
    verify: tuple[int, ...] = (),
    tau: float = LSR_TAU,
    window: float = LSR_WINDOW,
    seeds: int | None = None,
    ensemble: str = "auto",
    loss: Any = None,
    config: RunConfig | dict | None = None,
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    **fields: Any,
) -> LSRResult:
    """P1's LSR test (as ``svag lsr``, with its defaults for fields not given): a baseline run
    measures G/N over its equilibrium window (the last ``window`` of the first constant-LR phase)
    and predicts ``B* = B0·τ·N/G``; ``verify`` runs the linear-scaling sweep at those batch sizes,
    ``seeds`` seeds per batch size (default: ``svag lsr``'s; one when there is no sweep), stacked as
    one ensemble per batch size where ``ensemble`` allows it (``auto``/``on``/``off``)."""
    from dataclasses import replace

    from svag.experiments.lsr_sweep import equilibrium_window_epochs, lsr_table, run_sweep, write_lsr_outputs

    if config is None:
        config = {**RunConfig().to_dict(), **LSR_CONFIG}
    cfg = _config(model, data, loss, config, fields)
    _check_jobs(cfg, jobs)
    if not (isinstance(tau, (int, float)) and 0 < tau < float("inf")):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    span = equilibrium_window_epochs(cfg, window)
    if not cfg.noise_window:
        cfg = replace(cfg, noise_window=span).validate()
    if cfg.noise != "pairs":
        raise ValueError(f"the LSR test needs noise='pairs' to measure G/N, got {cfg.noise!r}")
    seeds = _check_seeds(LSR_SEEDS if seeds is None else seeds)
    dirs = run_sweep(cfg, list(verify), Path(out), resume=resume, progress=progress, jobs=jobs,
                     seeds=seeds if verify else 1, ensemble=ensemble, log=lambda m: None,
                     sinks=record_sinks(cfg))  # fmt: skip
    res = lsr_table(dirs, tau=tau, fraction=window)
    write_lsr_outputs(res, out)
    if plots and res.get("verdicts"):
        from svag.analysis.plotting import plot_lsr

        plot_lsr(res, Path(out) / sweepfolder.LSR_PNG)
    names = [Path(d).name for d in dirs]
    return LSRResult(Path(out), res["B_star"], res["B_star_se"], res["B_simple"], res, res.get("verdicts", []),
                     res["runs"], _records(Path(out), names))  # fmt: skip


def scale(
    model: Any = None,
    data: Any = None,
    *,
    out: str | os.PathLike,
    batch_sizes: tuple[int, ...],
    rule: str = "auto",
    seeds: int = 1,
    loss: Any = None,
    config: RunConfig | dict | None = None,
    ensemble: str = "auto",
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    **fields: Any,
) -> ScaleResult:
    """A batch-size sweep under a scaling rule (as ``svag scale``): ``rule`` linear (SGD), sqrt
    (Adam/RMSprop) or auto (the one that keeps the optimizer's SDE), from the config's batch size."""
    from svag.experiments.scale import (
        TABLE_METRICS,
        auto_rule,
        base_run,
        run_scale,
        scale_curves,
        scale_rows,
        write_scale_summary,
    )

    cfg = _sweep_base(model, data, loss, config, fields, jobs)
    _check_seeds(seeds)
    rule = auto_rule(cfg.optimizer)[0] if rule == "auto" else rule
    statuses = run_scale(cfg, rule, list(batch_sizes), list(range(seeds)), out, resume=resume, progress=progress,
                         jobs=jobs, ensemble=ensemble, log=lambda m: None, sinks=record_sinks(cfg))  # fmt: skip
    write_scale_summary(out)
    if plots:
        from svag.analysis.plotting import plot_scale

        plot_scale(scale_curves(out, TABLE_METRICS), Path(out) / sweepfolder.SCALE_PNG, base=base_run(out), rule=rule)
    return ScaleResult(Path(out), rule, statuses, scale_rows(out), _records(Path(out), list(statuses)))
