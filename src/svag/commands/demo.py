"""The main job: SGD vs SVAG (l = 2, 4, 8) on MNIST-1D with an MLP, 5 seeds, then the figure,
the summary table and the verdict: one line per metric saying whether SGD follows its SDE, departs
from it or whether the seeds cannot tell yet (`svag compare` explains the verdict). About a minute
on 2 CPU cores (the 5 seeds of each l train together as one stacked ensemble); prints where the
results are.

The setting (B = 128, η = 0.1) was chosen by measurement so that five seeds settle the verdict on
the test loss and ‖x‖² (EXPERIMENTS.md §6, "The demo's setting"): at B = 32 the test loss's spread over
seeds asks for about 35–100 seeds per l, and ‖x‖² departs (SGD's shuffled epochs cancel part of its
noise, which the SDE does not); at B = 128, η = 0.2 ‖x‖² departs too (a larger discretization gap).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from svag import sweepfolder
from svag.commands import folder
from svag.commands._executor import add_executor_arguments, executor_from_args
from svag.config import RunConfig
from svag.integrations import record_sinks

DEMO = RunConfig(
    data="mnist1d",
    model="mlp",
    norm="none",
    lr=0.1,
    batch_size=128,
    weight_decay=5e-4,
    epochs=20.0,
    eval_every=1.0,
    checkpoint_every=10.0,
)

# Intra-op CPU threads unless `--threads` or OMP_NUM_THREADS says otherwise (read by svag.cli).
# The demo's MLP gains little from a second thread, and with 2 threads PyTorch's workers wait for
# each other at every operation. Measured on 2 cores, the whole demo: 78 s with 1 thread, 74 s
# with 2, idle; 78 s with 1 thread with one core kept busy by another process, where 2 epochs
# alone took 75 s with 2 threads against 11 s with 1 (README, "Threads").
THREADS = 1
LS = [1.0, 2.0, 4.0, 8.0]  # SGD and SVAG's ladder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=folder, default="runs/demo", help="folder for the runs, figure and table")
    parser.add_argument("--epochs", type=float, default=DEMO.epochs, help="SGD-equivalent epochs per run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per l")
    add_executor_arguments(parser)  # --jobs, --cluster ray, ... (svag.commands._executor)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from svag.analysis.report import missing_requirement
    from svag.analysis.summary import compact_table, summary_rows
    from svag.commands.compare import print_verdict, sweep_seeds
    from svag.experiments.compare import TABLE_METRICS, run_compare, sweep_runs, write_figure, write_summary

    seeds = sweep_seeds(args)
    cfg = replace(DEMO, epochs=args.epochs).validate()
    out = Path(args.out)
    print(
        f"svag demo: MNIST-1D, MLP, SGD (η={cfg.lr}, B={cfg.batch_size}, λ={cfg.weight_decay}) vs SVAG l=2,4,8, "
        f"{args.seeds} seeds, {cfg.epochs:g} epochs -> {out}/"
    )
    start = time.perf_counter()
    with sweepfolder.hold(out):  # the folder's one driver, from the runs to the verdict
        statuses = run_compare(
            cfg, LS, seeds, out, resume=True, progress=not args.no_progress,
            jobs=executor_from_args(args), sinks=record_sinks(cfg),
        )  # fmt: skip
        fig = write_figure(out, names=list(statuses))  # this sweep's runs only
        md, csv = write_summary(out, names=list(statuses))  # the full table (mid-run, final, |Δ| to l_max)
        rows = summary_rows(sweep_runs(out, list(statuses)), TABLE_METRICS)
        print(compact_table(rows, TABLE_METRICS), end="")  # the final values, in 80 columns
        skip = missing_requirement(LS, args.seeds)
        if skip:
            print(f"no verdict: {skip}")
        else:
            print_verdict(out, list(statuses), {})
    print(f"done in {time.perf_counter() - start:.0f} s\nfigure: {fig}\ntable:  {md} (and {csv})")
    return 0 if all(s == "completed" for s in statuses.values()) else 1
