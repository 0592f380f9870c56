"""Whole experiments from Python, on your own model, data and loss: one run, an l-comparison with
its verdicts, the LSR test, a batch-size sweep.

Each function takes the model, the data and the loss as Python objects or as text (a built-in name,
``package.module:callable``, ``path/to/file.py:callable``; :mod:`svag.plugins` says what each
callable receives and returns), every other setting as a :class:`svag.config.RunConfig` field
(keywords, or ``config=``), and writes exactly what the command of the same name writes (run
folders, summaries, verdicts, figures), through the same sweeps (:mod:`svag.experiments`). It
returns a result whose tables are lists of dicts (``result.table(name)``) and load into pandas with
``result.to_pandas(name)`` (pandas is not a dependency of svag: it is imported only then); its ``repr``
is the headline (the folder, the runs' statuses, the answer), each table shown by its size. A
comparison prints its verdict as ``svag compare`` does with ``result.print_verdicts()``
(:meth:`CompareResult.print_verdicts`; the lines alone: :meth:`CompareResult.verdict_lines`).

**Data** given as values: a pair ``(train, test)`` (or ``(train, test, num_classes)``) whose splits are each
a pair of tensors or of NumPy arrays ``(inputs, labels)`` (arrays are taken as ``torch.from_numpy`` gives
them, then inputs become float32 and labels must be integer class indices, as for tensors), or map-style
Datasets (:mod:`svag.data.plugin`).

Objects importable by name (a function or class defined in a module, not in ``__main__``) are
recorded as ``module:qualname``: their runs resume from anywhere (and ``jobs > 1`` works). Anything
else (a function in your script or notebook, a lambda, tensors, a Dataset) is recorded as
``python:NAME`` with a fingerprint (:func:`svag.plugins.as_spec`): to resume such a run call the
same function again with ``resume=True`` and the same objects (a changed object is refused); the
CLI cannot resume it, and it runs in this process (``jobs=1``).

**Arguments** are checked before any run starts or any folder is made, with the command line's one-line
messages where the check is shared (the config's fields: :meth:`RunConfig.validate`; the sweep's:
:mod:`svag.experiments.arguments`): a bad value raises ``ValueError`` (``TypeError`` for a value of the
wrong kind) naming the keyword, the value and what is valid.

**Threads.** Every call that trains takes ``threads=``, PyTorch's intra-op CPU threads while it runs, with
its command's default (``--threads``, :func:`svag.experiments.defaults.resolve_threads`): ``lsr_test`` one
thread (:data:`~svag.experiments.defaults.LSR_THREADS`, as ``svag lsr``, so the two give the same numbers
bit for bit), the others PyTorch's own (``0``), and when ``OMP_NUM_THREADS`` is set, PyTorch's (which
follows it). The thread count you had is put back when the call returns. ``jobs > 1`` runs each job in a
worker process on ``cores // jobs`` threads, as the commands do.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svag import sweepfolder
from svag.config import RunConfig
from svag.data.plugin import as_data_spec
from svag.experiments import arguments
from svag.experiments.defaults import (
    CBS_BRANCH_EPOCHS,
    CBS_CONFIG,
    CBS_EPSILON,
    CBS_KAPPAS,
    CBS_POINTS,
    LSR_CONFIG,
    LSR_SEEDS,
    LSR_TAU,
    LSR_THREADS,
    LSR_WINDOW,
    TORCH_THREADS,
    resolve_threads,
)
from svag.integrations import record_sinks
from svag.plugins import KINDS, PYTHON, as_spec

__all__ = [
    "CBSResult",
    "CompareResult",
    "LSRResult",
    "RulesResult",
    "ScaleResult",
    "TrainResult",
    "cbs",
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


class _Rows(list):
    """A table's place in a result's repr: its size, not its rows."""

    def __repr__(self) -> str:
        return f"<{len(self)} row{'' if len(self) == 1 else 's'}>"


class _Statuses(dict):
    """The runs' statuses in a result's repr: how many runs ended how (``<8 runs: 7 completed, 1 diverged>``)."""

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for status in self.values():
            counts[status] = counts.get(status, 0) + 1
        return f"<{len(self)} runs: {', '.join(f'{n} {s}' for s, n in counts.items())}>"


class _Tables:
    """``table(name)``: a list of dicts; ``to_pandas(name)``: the same as a ``pandas.DataFrame``; ``repr``: the
    headline (:attr:`HEADLINE`: the folder, the statuses, the answer), each table shown by its size."""

    TABLES: tuple[str, ...] = ("records",)
    HEADLINE: tuple[str, ...] = ()  # the fields repr shows as they are (tables and statuses are summarized)

    def __repr__(self) -> str:
        parts = []
        for name in self.HEADLINE:
            value = getattr(self, name)
            if name == "statuses":
                value = _Statuses(value)
            elif name in self.TABLES or name == "rows":
                value = _Rows(value)
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def table(self, name: str | None = None) -> list[dict]:
        name = name or self.TABLES[0]
        if name not in self.TABLES:
            raise ValueError(f"table must be one of {', '.join(self.TABLES)}, got {name!r}")
        return list(getattr(self, name))

    def to_pandas(self, name: str | None = None):
        """The table ``name`` (default: the first of :attr:`TABLES`) as a ``pandas.DataFrame``."""
        return _pandas().DataFrame(self.table(name))


@dataclass(repr=False)
class TrainResult(_Tables):
    """One run: its folder, its status and its records (``metrics.jsonl``)."""

    HEADLINE = ("out_dir", "status", "records")
    out_dir: Path
    status: str
    records: list[dict]


@dataclass(repr=False)
class CompareResult(_Tables):
    """An l-comparison: ``statuses`` per run folder; ``records`` of every run (with its ``run``
    name); ``summary`` (summary.csv's rows); ``verdicts`` (verdicts.csv's rows: gap SGD − SDE per
    metric and point, its interval, follows/departs/inconclusive) and the full ``report``, or
    ``note`` saying why there is no verdict.

    ``print_verdicts()`` prints the verdict as ``svag compare`` does (``verdict_lines()``: the lines alone);
    ``repr`` shows the folder, the statuses, the outcome of each metric at the end (:attr:`outcomes`) and the
    tables' sizes."""

    TABLES = ("records", "summary", "verdicts")
    HEADLINE = ("out_dir", "statuses", "outcomes", "note", "records", "summary", "verdicts")
    out_dir: Path
    statuses: dict[str, str]
    records: list[dict]
    summary: list[dict]
    verdicts: list[dict] = field(default_factory=list)
    report: dict | None = None
    note: str | None = None
    sequential: dict | None = None  # until_decided: sequential.json (the design, each look, each metric's decision)

    @property
    def outcomes(self) -> dict[str, str]:
        """``{metric: follows | departs | inconclusive}`` at the end of the runs, for each metric with a margin."""
        return {v["metric"]: v["outcome"] for v in self.verdicts if v.get("where") == "end" and v.get("outcome")}

    def verdict_lines(self, where: str = "end") -> list[str]:
        """One line per metric with a verdict at ``where`` (``"end"`` or ``"mid"``), as ``svag compare`` prints
        them (:func:`svag.analysis.report_text.verdict_lines`), e.g. ``test_loss: follows its SDE — gap +0.004
        [−0.010, 0.018] (δ = 0.021, 3 seeds)``; none when there is no verdict (:attr:`note` says why)."""
        from svag.analysis.report_text import verdict_lines

        if self.report is None:
            return []
        arguments.choice(where, "where", tuple(self.report["points"]))
        return verdict_lines(self.report, where)

    def print_verdicts(self, where: str = "end", file=None) -> None:
        """Print the verdict at ``where`` (``"end"`` or ``"mid"``) to ``file`` (default: standard output) as
        ``svag compare`` does: the question and how the SDE was extrapolated, then :meth:`verdict_lines`; or
        ``no verdict:`` and the :attr:`note`."""
        from svag.analysis.report_text import verdict_header

        if self.report is None:
            print("no verdict" + (f": {self.note}" if self.note else ""), file=file)
            return
        lines = self.verdict_lines(where)
        print(verdict_header(self.report, where), file=file)
        for line in lines:
            print(f"  {line}", file=file)


@dataclass(repr=False)
class LSRResult(_Tables):
    """The LSR test: ``B_star`` ± ``B_star_se`` (P1's B* = B0·τ·N/G over the baseline's window; for Adam,
    AdamW and RMSprop from the preconditioned G/N, with the square-root rule's own limit in
    ``result["B_rule_limit"]`` and which binds first in ``result["binding_limit"]``), ``B_simple``;
    ``verdicts`` per batch size of the sweep, ``runs``, ``records``; ``result`` is lsr.json."""

    TABLES = ("verdicts", "runs", "records")
    HEADLINE = ("out_dir", "B_star", "B_star_se", "B_simple", "verdicts", "runs", "records")
    out_dir: Path
    B_star: float
    B_star_se: float
    B_simple: float
    result: dict
    verdicts: list[dict]
    runs: list[dict]
    records: list[dict]


@dataclass(repr=False)
class ScaleResult(_Tables):
    """A batch-size sweep under a scaling rule: ``rows`` per batch size (scale_summary.csv),
    ``statuses``, ``records`` of every run."""

    TABLES = ("rows", "records")
    HEADLINE = ("out_dir", "rule", "statuses", "rows", "records")
    out_dir: Path
    rule: str
    statuses: dict[str, str]
    rows: list[dict]
    records: list[dict]


@dataclass(repr=False)
class RulesResult(_Tables):
    """Transfer rules side by side (``scale(..., rules=[...])``): ``answer`` (one line: where each rule held and
    departed), ``verdicts`` per rule and batch size (rules.csv), ``result`` (rules.json), ``statuses``,
    ``records`` of every run (``run`` is ``{rule}/B{B}_seed{s}``)."""

    TABLES = ("verdicts", "records")
    HEADLINE = ("out_dir", "answer", "statuses", "verdicts", "records")
    out_dir: Path
    answer: str
    verdicts: list[dict]
    result: dict
    statuses: dict[str, str]
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
    """Refuse ``jobs > 1`` where a plug-in exists only in this process (worker processes cannot load it)."""
    local = [getattr(cfg, k) for k in KINDS if str(getattr(cfg, k)).startswith(PYTHON)]
    if jobs != 1 and local:
        raise ValueError(
            f"jobs={jobs}: {', '.join(local)} exist only in this process (defined in __main__, a lambda, or data "
            "values); use jobs=1, or define them in a module and pass them (or its import path)"
        )


def _sweep_base(
    model: Any, data: Any, loss: Any, config: RunConfig | dict | None, fields: dict, jobs: int, sweep: str
) -> RunConfig:
    """The base run of a sweep over ``l`` or ``B``: :func:`_config` at ``l = 1``, seed 0, checked for ``jobs``.
    The sweep sets ``l`` and ``seed`` itself (its command has no ``--l``, ``--seed``): giving them is refused."""
    given = [f"{k}={fields[k]!r}" for k in ("l", "seed") if k in fields]
    if given:
        own = "every l of ls" if sweep == "compare" else "l = 1"
        raise ValueError(f"{sweep} sets l and seed itself ({own}, seeds 0..seeds-1): drop {', '.join(given)}")
    cfg = _config(model, data, loss, config, {**fields, "l": 1.0, "seed": 0})
    _check_jobs(cfg, jobs)
    return cfg


def _switches(**values: Any) -> None:
    """Refuse an on/off keyword (``resume``, ``progress``, ``plots``, ...) that is not ``True`` or ``False``."""
    for name, value in values.items():
        arguments.switch(value, name)


def _threads(threads: Any, default: int) -> int:
    """The threads a call trains on (0: leave PyTorch's): ``threads`` if given (an integer >= 0), else its
    command's ``default`` unless ``OMP_NUM_THREADS`` is set (:func:`svag.experiments.defaults.resolve_threads`)."""
    given = None if threads is None else arguments.count(threads, "threads", 0)
    return resolve_threads(given, default, os.environ)


@contextlib.contextmanager
def _on_threads(n: int):
    """PyTorch's intra-op threads set to ``n`` while the block runs (0: left as they are), then put back."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _records(out: Path, names: list[str]) -> list[dict]:
    from svag.runfolder import RunFolder

    rows = []
    for name in names:
        folder = RunFolder(out / name)
        if folder.exists():
            rows += [{"run": name, **r} for r in folder.records()]
    return rows


def run(cfg: RunConfig | dict, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
        threads: int | None = None):  # fmt: skip
    """:func:`svag.runner.run` with the record sinks ``cfg`` asks for (``tensorboard``): train one run
    into ``out_dir``; its arguments, result and errors are the runner's. ``threads``: PyTorch's threads
    while it trains (default: ``svag train``'s, PyTorch's own; see the module docstring), put back after."""
    from svag import runner

    arguments.folder(out_dir, "out_dir")
    _switches(resume=resume, progress=progress)
    n = _threads(threads, TORCH_THREADS)
    cfg = RunConfig.of(cfg).validate()
    with _on_threads(n):
        return runner.run(cfg, out_dir, resume=resume, progress=progress, sinks=record_sinks(cfg))


def run_replicas(cfg: RunConfig | dict, seeds: list[int], out_dirs: list[str | os.PathLike], *, resume: bool = False,
                 progress: bool = True, threads: int | None = None):  # fmt: skip
    """:func:`svag.runner.run_replicas` with the record sinks ``cfg`` asks for (``tensorboard``): train
    every seed at once, each into its own folder. ``threads``: as :func:`run`."""
    from svag import runner
    from svag.seeds import check_seed

    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple, range)):
        raise TypeError(f"seeds must be a list of seeds (integers >= 0), got {seeds!r}")
    seeds = arguments.distinct([check_seed(s) for s in seeds], f"seeds={seeds!r}")
    if isinstance(out_dirs, (str, bytes, os.PathLike)) or not isinstance(out_dirs, (list, tuple)):
        raise TypeError(f"out_dirs must be a list of folders, one per seed, got {out_dirs!r}")
    for out in out_dirs:
        arguments.folder(out, "out_dirs")
    _switches(resume=resume, progress=progress)
    n = _threads(threads, TORCH_THREADS)
    cfg = RunConfig.of(cfg).validate()
    with _on_threads(n):
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
    threads: int | None = None,
    **fields: Any,
) -> TrainResult:
    """One SGD (``l = 1``) or SVAG run of ``model`` on ``data`` into ``out`` (as ``svag train``).

    Args:
        model, data, loss: objects or text (see the module docstring; ``None``: the config's). A model
            is a factory ``model(input_shape, num_classes)``, not a built ``nn.Module``.
        out: the run folder (empty or absent unless ``resume``).
        config: a RunConfig or a dict of its fields; ``fields`` (RunConfig fields) override it.
        resume: continue the run in ``out`` (same config and the same objects).
        threads: PyTorch's intra-op threads while it trains; default ``svag train``'s (PyTorch's own),
            ``0`` leaves them as they are; your thread count is put back after.

    Raises:
        ValueError, TypeError: a bad argument (one line), before anything is trained or written.
    """
    from svag.runner import run

    arguments.folder(out, "out")
    _switches(resume=resume, progress=progress)
    n = _threads(threads, TORCH_THREADS)
    cfg = _config(model, data, loss, config, fields)
    with _on_threads(n):
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
    threads: int | None = None,
    until_decided: bool = False,
    decide: list[str] | str | None = None,
    max_seeds: int | None = None,
    max_cpu_minutes: float | None = None,
    **fields: Any,
) -> CompareResult:
    """SGD and SVAG at every ``l`` of ``ls`` with seeds ``0..seeds-1`` (as ``svag compare``), the
    summary and the verdict "does SGD follow its SDE?" (``margins`` ``{metric: 0.02 or '5%'}``, ``fit``
    ``wls``/``two_point``, ``fit_ls``, ``paired`` as :func:`svag.analysis.report.compute_verdicts`; needs
    ≥ 2 seeds and l = 1 among ≥ 2 l). ``ngd``: also P1's NGD per seed. ``threads``: as :func:`train`
    (``svag compare``'s default, PyTorch's own). Every argument is checked before the first run starts;
    ``l`` and ``seed`` are the sweep's own (``ls``, ``seeds``).

    ``until_decided`` (as ``svag compare --until-decided``): ``seeds`` is the first look; seeds are added in
    rounds (doubling, all ``l`` together, the same seed tree) until every metric of ``decide`` (default: those
    with a margin) is decided or ``max_seeds`` (default 24) or ``max_cpu_minutes`` is reached, with Pocock-type
    repeated confidence intervals (Jennison & Turnbull 1989; :mod:`svag.analysis.sequential`) valid under this
    stopping. Needs ≥ 3 values of ``l`` with 1 among them and ``seeds >= 3``; ``fit``, ``fit_ls`` and ``paired``
    are the design's own. The result's ``sequential`` holds ``sequential.json`` (the design, each look, each
    metric's outcome and the seeds it was decided at); ``verdicts`` stays empty (a fixed-n verdict read after
    optional stopping is not valid)."""
    from svag.analysis.report import missing_requirement, run_verdicts
    from svag.analysis.report_text import CSV_COLUMNS, csv_rows
    from svag.analysis.richardson import FITS
    from svag.analysis.summary import summary_rows
    from svag.experiments.compare import run_compare, write_figure, write_summary

    arguments.folder(out, "out")
    ls = arguments.ladder(ls, "ls")
    seeds = arguments.count(seeds, "seeds", 1)
    margins = arguments.margins(margins, "margins")
    fit = arguments.choice(fit, "fit", FITS)
    fit_ls = arguments.fit_ls(fit_ls, ls, "fit_ls", "ls")
    arguments.switch(paired, "paired", allow_none=True)
    _switches(ngd=ngd, resume=resume, progress=progress, plots=plots)
    jobs = arguments.count(jobs, "jobs", 1)
    n = _threads(threads, TORCH_THREADS)
    arguments.switch(until_decided, "until_decided")
    if until_decided:
        from svag.experiments.sequential import MAX_SEEDS

        decide = arguments.decide(decide, "decide", margins)
        budget = (seeds, MAX_SEEDS if max_seeds is None else max_seeds, max_cpu_minutes, ls)
        seeds, max_seeds, max_cpu_minutes = arguments.sequential_budget(
            *budget, ("seeds", "max_seeds", "max_cpu_minutes", "ls")
        )
        if fit != "wls" or fit_ls is not None or paired is False:
            raise ValueError("until_decided fits the ladder itself (paired seeds, c/l + d/l² from 4 l); "
                             "leave fit, fit_ls and paired at their defaults")  # fmt: skip
    elif decide is not None or max_seeds is not None or max_cpu_minutes is not None:
        raise ValueError("decide, max_seeds and max_cpu_minutes belong to until_decided=True")
    cfg = _sweep_base(model, data, loss, config, fields, jobs, "compare")
    if ngd and cfg.gradient_noise == "gaussian":
        raise ValueError("ngd=True adds Gaussian-noise runs to SGD runs, but gradient_noise is already gaussian")
    if until_decided:
        return _compare_until_decided(cfg, ls, out, seeds, max_seeds, max_cpu_minutes, decide, margins, ngd,
                                      ensemble, jobs, resume, progress, plots, n)  # fmt: skip
    with _on_threads(n):
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
            opts = {"margins": margins, "fit": fit, "use": fit_ls, "paired": paired}
            result.report, _ = run_verdicts(out, names=names, **opts)
            result.verdicts = [{c: r.get(c) for c in CSV_COLUMNS} for r in csv_rows(result.report)]  # same keys
        except ValueError as err:  # too few seeds left after a failed run, and the like
            result.note = str(err).splitlines()[0]
    if plots:
        write_figure(out, names=names)
    if plots and result.report is not None:
        from svag.analysis.plotting import plot_verdicts

        plot_verdicts(result.report, Path(out) / sweepfolder.VERDICTS_PNG)
    return result


def _compare_until_decided(cfg, ls, out, first, max_seeds, budget, decide, margins, ngd, ensemble, jobs, resume,
                           progress, plots, n) -> CompareResult:  # fmt: skip
    """:func:`compare`'s ``until_decided`` mode (:func:`svag.experiments.sequential.run_until_decided`)."""
    from svag.analysis.summary import summary_rows
    from svag.experiments.compare import sweep_runs, write_figure, write_summary
    from svag.experiments.sequential import run_until_decided

    if cfg.gradient_noise == "gaussian":
        raise ValueError("until_decided decides SGD's verdict; these runs use gradient_noise='gaussian'")
    with _on_threads(n):
        report = run_until_decided(cfg, ls, out, first=first, max_seeds=max_seeds, max_cpu_minutes=budget,
                                   decide=decide, margins=margins, ngd=ngd, resume=resume, progress=progress, jobs=jobs,
                                   ensemble=ensemble, log=lambda m: None, sinks=record_sinks(cfg))  # fmt: skip
    names = list(report["statuses"])
    write_summary(out, names=names)
    if plots:
        write_figure(out, names=names)
    rows = summary_rows(sweep_runs(out, names))
    return CompareResult(Path(out), report["statuses"], _records(Path(out), names), rows, sequential=report)


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
    threads: int | None = None,
    **fields: Any,
) -> LSRResult:
    """P1's LSR test (as ``svag lsr``, with its defaults for fields not given): a baseline run
    measures G/N over its equilibrium window (the last ``window`` of the first constant-LR phase)
    and predicts ``B* = B0·τ·N/G``; ``verify`` runs the linear-scaling sweep at those batch sizes,
    ``seeds`` seeds per batch size (default: ``svag lsr``'s; one when there is no sweep), stacked as
    one ensemble per batch size where ``ensemble`` allows it (``auto``/``on``/``off``). A plug-in model gets
    ``svag lsr``'s ``norm`` and ``scale_invariant`` only if its factory names them (else they are not recorded);
    its other defaults, tuned for the built-in scale-invariant CNN, apply as they are
    (:func:`svag.experiments.lsr_sweep.plugin_model_defaults`).

    ``threads``: PyTorch's intra-op threads while it trains, by default ``svag lsr``'s: one
    (:data:`~svag.experiments.defaults.LSR_THREADS`), or PyTorch's when ``OMP_NUM_THREADS`` is set, so
    that it gives ``svag lsr``'s numbers bit for bit; your thread count is put back after."""
    from dataclasses import replace

    from svag.experiments.lsr_sweep import (
        equilibrium_window_epochs,
        lsr_table,
        plugin_model_defaults,
        run_sweep,
        write_lsr_outputs,
    )

    arguments.folder(out, "out")
    verify = arguments.batch_sizes(verify, "verify", allow_empty=True)
    tau = arguments.positive(tau, "tau")
    window = arguments.window(window, "window")
    seeds = arguments.count(LSR_SEEDS if seeds is None else seeds, "seeds", 1)
    _switches(resume=resume, progress=progress, plots=plots)
    jobs = arguments.count(jobs, "jobs", 1)
    n = _threads(threads, LSR_THREADS)
    if config is None:
        config = {**RunConfig().to_dict(), **LSR_CONFIG}
        if fields.get("schedule", "multistep") != "multistep" and "milestones" not in fields:
            config["milestones"] = ()  # the default's decay belongs to its multistep (as `svag lsr --schedule`)
    cfg, _ = plugin_model_defaults(_config(model, data, loss, config, fields))  # as `svag lsr`: what reaches it
    _check_jobs(cfg, jobs)
    span = equilibrium_window_epochs(cfg, window)
    if not cfg.noise_window:
        cfg = replace(cfg, noise_window=span).validate()
    if cfg.noise != "pairs":
        raise ValueError(f"the LSR test needs noise='pairs' to measure G/N, got {cfg.noise!r}")
    with _on_threads(n):
        dirs = run_sweep(cfg, verify, Path(out), resume=resume, progress=progress, jobs=jobs,
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
    rules: Sequence[str] | None = None,
    seeds: int = 1,
    loss: Any = None,
    config: RunConfig | dict | None = None,
    ensemble: str = "auto",
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    threads: int | None = None,
    **fields: Any,
) -> ScaleResult | RulesResult:
    """A batch-size sweep under a scaling rule (as ``svag scale``): ``rule`` one of :data:`svag.scaling.RULES`
    (linear for SGD, sqrt for Adam/RMSprop, sqrt_lr, adamw_timescale, beta_halflife) or auto (the one that keeps
    the optimizer's SDE), from the config's batch size (always run too) to each of ``batch_sizes`` (at least
    one). ``rules``: two or more rules compared over the same ladder (as ``svag scale --rule A,B``), returning a
    :class:`RulesResult`. ``threads``: as :func:`train` (``svag scale``'s default, PyTorch's own)."""
    from svag.experiments.scale import (
        RULES,
        TABLE_METRICS,
        auto_rule,
        base_run,
        run_scale,
        scale_curves,
        scale_rows,
        write_scale_summary,
    )

    arguments.folder(out, "out")
    batch_sizes = arguments.batch_sizes(batch_sizes, "batch_sizes")
    rule = arguments.choice(rule, "rule", ("auto", *RULES))
    if rules is not None and rule != "auto":
        raise ValueError(f"give rule or rules, not both: got rule={rule!r} and rules={rules!r} (rules compares them)")
    seeds = arguments.count(seeds, "seeds", 1)
    _switches(resume=resume, progress=progress, plots=plots)
    jobs = arguments.count(jobs, "jobs", 1)
    n = _threads(threads, TORCH_THREADS)
    cfg = _sweep_base(model, data, loss, config, fields, jobs, "scale")
    rule = auto_rule(cfg.optimizer)[0] if rule == "auto" else rule
    if rules is not None:
        return _rules(cfg, rules, batch_sizes, seeds, Path(out), n, plots, resume=resume, progress=progress,
                      jobs=jobs, ensemble=ensemble, log=lambda m: None, sinks=record_sinks(cfg))  # fmt: skip
    with _on_threads(n):
        statuses = run_scale(cfg, rule, batch_sizes, list(range(seeds)), out, resume=resume, progress=progress,
                             jobs=jobs, ensemble=ensemble, log=lambda m: None, sinks=record_sinks(cfg))  # fmt: skip
    write_scale_summary(out)
    if plots:
        from svag.analysis.plotting import plot_scale

        plot_scale(scale_curves(out, TABLE_METRICS), Path(out) / sweepfolder.SCALE_PNG, base=base_run(out), rule=rule)
    return ScaleResult(Path(out), rule, statuses, scale_rows(out), _records(Path(out), list(statuses)))


def _rules(cfg, rules, batch_sizes, seeds: int, out: Path, threads: int, plots: bool, **options) -> RulesResult:
    """:func:`scale` with ``rules``: :func:`svag.experiments.scale.run_rules`, its verdicts, tables and figure."""
    from svag.experiments.scale import RULES, rule_verdicts, run_rules, write_rules

    if isinstance(rules, str) or not isinstance(rules, (list, tuple)) or len(rules) < 2:
        raise ValueError(f"rules must be a list of 2 or more rules (one rule: rule=...), got {rules!r}")
    for r in rules:
        arguments.choice(r, "rules entries", tuple(RULES))
    with _on_threads(threads):
        statuses = run_rules(cfg, list(rules), batch_sizes, list(range(seeds)), out, **options)
    result = rule_verdicts(out, list(rules))
    write_rules(result, out)
    if plots:
        from svag.analysis.plotting import plot_rules

        plot_rules(result, out / sweepfolder.RULES_PNG)
    verdicts = [{"rule": rule, "batch_size": row["batch_size"], "kappa": row["kappa"], "lr": row["lr"],
                 "verdict": row["outcome"], **{f"{m}_{k}": row["cells"][m].get(k) for m in result["metrics"]
                                              for k in ("outcome", "estimate", "delta")}}
                for rule, r in result["rules"].items() for row in r["rows"]]  # fmt: skip
    return RulesResult(out, result["answer"], verdicts, result, statuses, _records(out, list(statuses)))


@dataclass(repr=False)
class CBSResult(_Tables):
    """What :func:`cbs` produced: the folder, each run's status and one row per checkpoint (epoch, samples, CBS,
    ``B_simple``, ``B*``, the branches' mean final loss per κ; :func:`svag.experiments.cbs.cbs_table`)."""

    TABLES = ("rows",)
    HEADLINE = ("out", "rule", "statuses", "rows")
    out: Path
    rule: str
    statuses: dict[str, str]
    rows: list[dict]


def cbs(
    model: Any = None,
    data: Any = None,
    *,
    out: str | os.PathLike,
    rule: str = "auto",
    kappas: Sequence[float] = CBS_KAPPAS,
    points: int = CBS_POINTS,
    branch_epochs: float = CBS_BRANCH_EPOCHS,
    epsilon: float = CBS_EPSILON,
    seeds: int = 3,
    loss: Any = None,
    config: RunConfig | dict | None = None,
    ensemble: str = "auto",
    jobs: int = 1,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    threads: int | None = None,
    **fields: Any,
) -> CBSResult:
    """The critical batch size over training (as ``svag cbs``, with its defaults for fields not given:
    :data:`svag.experiments.defaults.CBS_CONFIG`): a baseline with ``points`` log-spaced checkpoints, branches
    at ``κB`` for every κ of ``kappas`` (1 included) under ``rule`` (one of :data:`svag.scaling.RULES`, or auto:
    :func:`svag.scaling.sde_rule`) for ``branch_epochs`` epochs each, ``seeds`` seeds; the CBS per checkpoint is
    the largest ``κB`` whose final test loss stays within the relative ``epsilon`` of ``κ = 1``
    (:mod:`svag.experiments.cbs`). Every argument is checked before any run starts."""
    from svag.experiments.cbs import cbs_table, run_cbs, write_cbs
    from svag.experiments.lsr_sweep import plugin_model_defaults
    from svag.scaling import RULES, sde_rule

    arguments.folder(out, "out")
    kappas = arguments.distinct([float(k) for k in arguments.ladder(kappas, "kappas")], "kappas")
    rule = arguments.choice(rule, "rule", ("auto", *RULES))
    seeds = arguments.count(seeds, "seeds", 1)
    points = arguments.count(points, "points", 1)
    branch_epochs = arguments.positive(branch_epochs, "branch_epochs")
    epsilon = arguments.positive(epsilon, "epsilon")
    _switches(resume=resume, progress=progress, plots=plots)
    jobs = arguments.count(jobs, "jobs", 1)
    n = _threads(threads, LSR_THREADS)
    if config is None:  # as `svag cbs`: its defaults, and a plug-in model records only the options it takes
        config = {**RunConfig().to_dict(), **CBS_CONFIG}
    cfg, _ = plugin_model_defaults(_sweep_base(model, data, loss, config, fields, jobs, "cbs"))
    rule = sde_rule(cfg.optimizer) if rule == "auto" else rule
    with _on_threads(n):
        statuses = run_cbs(cfg, out, rule=rule, kappas=kappas, points=points, branch_epochs=branch_epochs,
                           epsilon=epsilon, seeds=list(range(seeds)), resume=resume, progress=progress, jobs=jobs,
                           ensemble=ensemble, log=lambda m: None)  # fmt: skip
    result = cbs_table(out)
    write_cbs(result, out)
    if plots:
        from svag.analysis.plotting import plot_cbs

        plot_cbs(result, Path(out) / sweepfolder.CBS_PNG)
    return CBSResult(Path(out), rule, statuses, result["rows"])
