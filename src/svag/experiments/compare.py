"""SGD vs SVAG: the same config for a list of ``l`` and seeds, into one folder of runs; its summary table and
its figure (``compare.png``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from svag import sweepfolder
from svag.analysis.summary import Run, load_runs, markdown_table, summary_rows
from svag.config import RunConfig
from svag.experiments.executors import Executor, Job, run_jobs
from svag.records import check_writable, write_csv, write_text
from svag.runfolder import RunFolder

__all__ = [
    "ENSEMBLE_MODES",
    "check_jobs",
    "ensemble_note",
    "run_compare",
    "seed_jobs",
    "sweep_runs",
    "use_ensemble",
    "write_figure",
    "write_summary",
]

TABLE_METRICS = ("test_acc", "test_loss", "train_loss", "weight_norm_sq")
ENSEMBLE_MODES = ("auto", "on", "off")


def ensemble_note(n_seeds: int, per: str) -> str:
    """What a sweep says when :func:`use_ensemble` stacks the seeds of each ``per`` (``l``, ``B``)."""
    return f"training the {n_seeds} seeds of each {per} together as one stacked ensemble (--ensemble off to disable)"


def use_ensemble(cfg: RunConfig, n_seeds: int, mode: str) -> bool:
    """Whether to train the seeds of one ``l`` together (stacked parameters, one process).

    ``on``: whenever there are several seeds, for the built-in models and a user's (:mod:`svag.plugins`)
    alike; a model that cannot be stacked (:func:`svag.runner.ensemble.stack`'s trial step: dropout,
    data-dependent control flow, ...) then trains its seeds one by one, with one line saying why.
    ``auto``: when :func:`svag.runner.ensemble.is_faster` says the stacked model beats running the
    seeds one after the other (measured by ``benchmarks/bench_ensemble.py``). Gaussian-noise runs
    (``gradient_noise="gaussian"``) stack only with ``on``: their full-batch pass holds the activations
    of ``seeds × gaussian_chunk`` samples, and ``auto`` trains them seed by seed (stacked, 8 seeds of the
    MNIST-1D MLP ran 2× faster).
    """
    if mode not in ENSEMBLE_MODES:
        raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLE_MODES)}, got {mode!r}")
    if mode == "off" or n_seeds < 2 or (mode == "auto" and cfg.gradient_noise == "gaussian"):
        return False
    if mode == "on":
        return True
    from svag.runner.ensemble import is_faster

    return bool(is_faster(cfg.model, n_seeds))


def run_compare(
    base: RunConfig,
    ls: list[float],
    seeds: list[int],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    jobs: int = 1,
    ensemble: str = "auto",
    ngd: bool = False,
    log=None,
    sinks: Sequence = (),
) -> dict[str, str]:
    """Run ``base`` at every ``l`` in ``ls`` and every seed; returns ``{run_dir: status}``.

    Each ``(l, seed)`` writes ``out_dir/l{l}_seed{seed}/``. With ``ngd``, each seed also runs ``base``
    with ``gradient_noise="gaussian"`` at ``l = 1`` (P1's NGD: full-batch gradient plus Gaussian noise
    with SGD's covariance, the same seed tree) into ``out_dir/ngd_seed{seed}/``, which splits the
    verdict's gap (:mod:`svag.analysis.report`). The seeds of one ``l`` are trained
    together as an ensemble when :func:`use_ensemble` says so; ``jobs > 1`` runs independent
    jobs in worker processes. Every run is checked before the first starts (:func:`check_jobs`:
    distinct ``l``, budget, folders empty or, with ``resume``, holding a run of the same config);
    a run that fails later (diverges) is reported and the others still run. The sweep folder has
    one driver (:func:`svag.sweepfolder.hold`): another one at work there is refused at once.
    """
    log = log or (lambda m: print(m, flush=True))
    out = Path(out_dir)
    if not ls or not seeds:
        raise ValueError(f"need at least one l and one seed, got ls={list(ls)} and seeds={list(seeds)}")
    together = use_ensemble(base, len(seeds), ensemble)
    work: list[Job] = []
    for l in ls:
        cfg = replace(base, l=float(l)).validate()
        work += seed_jobs(cfg, seeds, out, [sweepfolder.compare_run(l, s) for s in seeds], together)
    if ngd:
        cfg = replace(base, l=1.0, gradient_noise="gaussian").validate()
        names = [sweepfolder.ngd_run(s) for s in seeds]
        work += seed_jobs(cfg, seeds, out, names, use_ensemble(cfg, len(seeds), ensemble))
    with sweepfolder.hold(out):  # the sweep's one driver (a second one is refused in one line)
        check_jobs(work, resume, jobs)
        if resume:
            sweepfolder.remove_temporaries(out)  # what a killed write of its summary or figures left
        if together:
            log(ensemble_note(len(seeds), "l"))
        return run_jobs(work, jobs, resume=resume, progress=progress, log=log, sinks=sinks)


def check_jobs(work: list[Job], resume: bool, jobs: int | Executor = 1) -> None:
    """Check every run of a sweep before any starts, so that a bad sweep fails at once with one
    line and writes nothing: distinct run folders, the sweep folder writable (the runs and the
    summary go there), each job's budget (:func:`svag.runner.budget.check_budget`: batch sizes,
    steps, memory), and each folder empty or, with ``resume``, holding a run of the same config (the
    runner's own check, read-only). Runs trained on this machine (``jobs``: not a Ray executor, whose
    workers have their own devices) are also checked against its device (``--device``: there, and
    its memory)."""
    from svag.runner import prepare_folder, resolve_device
    from svag.runner.budget import check_budget

    here = not (isinstance(jobs, Executor) and jobs.kind == "ray")

    folders = [f for job in work for f in job.folders]
    repeated = sorted({str(f) for f in folders if folders.count(f) > 1})
    if repeated:
        raise ValueError(f"two runs of the sweep would share the folder {repeated[0]}: give distinct values")
    for parent in sorted({Path(f).parent for f in folders}):  # else every run fails, then the summary finds none
        check_writable(parent, f"cannot write the sweep into {parent}")
    for job in work:
        check_budget(job.config, len(job.seeds), resolve_device(job.config.device) if here else None)
        for seed, folder in zip(job.seeds, job.folders):
            prepare_folder(replace(job.config, seed=int(seed)), RunFolder(folder), resume, create=False)


def seed_jobs(cfg: RunConfig, seeds: list[int], out: Path, names: list[str], together: bool) -> list[Job]:
    """The jobs that train ``cfg`` for every seed into ``out/names[i]``: one ensemble job for all
    seeds when ``together``, else one job per seed."""
    groups = [list(zip(seeds, names))] if together else [[(s, n)] for s, n in zip(seeds, names)]
    return [
        Job(replace(cfg, seed=int(group[0][0])), [int(s) for s, _ in group], [out / n for _, n in group],
            [n for _, n in group])
        for group in groups
    ]  # fmt: skip


def sweep_runs(runs_dir: str | os.PathLike, names: list[str] | None = None) -> list[Run]:
    """The runs ``names`` of ``runs_dir`` (a sweep's own runs; default: every run under it), those that exist."""
    if names is None:
        return load_runs(runs_dir)
    runs = [RunFolder(Path(runs_dir) / n).load() for n in names if RunFolder(Path(runs_dir) / n).exists()]
    if not runs:
        raise FileNotFoundError(f"none of the runs {names} is in {runs_dir}")
    return runs


def write_figure(runs_dir: str | os.PathLike, *, names: list[str] | None = None) -> Path:
    """``compare.png`` in ``runs_dir``: each metric against effective steps, one line per l with its
    ±1 std band over seeds (:func:`svag.analysis.plotting.plot_compare`), of the runs ``names`` (as
    :func:`write_summary`). ``svag plot`` draws it again, with other metrics or another x axis."""
    from svag.analysis.plotting import plot_compare

    return plot_compare(sweep_runs(runs_dir, names), Path(runs_dir) / sweepfolder.COMPARE_PNG)


def write_summary(
    runs_dir: str | os.PathLike, metrics: tuple[str, ...] = TABLE_METRICS, *, names: list[str] | None = None
) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.csv`` in ``runs_dir``: per l, mid-run and final metrics
    (mean ± std over seeds, and the standard error of the mean) and the distance of each l to the largest l.
    ``names``: read only these run folders of ``runs_dir`` (a sweep's own runs; default: every run under it)."""
    rows = summary_rows(sweep_runs(runs_dir, names), metrics)
    md, csv = Path(runs_dir) / sweepfolder.SUMMARY_MD, Path(runs_dir) / sweepfolder.SUMMARY_CSV
    write_text(md, markdown_table(rows, metrics))
    write_csv(csv, rows)
    return md, csv
