"""The linear-scaling-rule test (P1 §4): from one baseline run (η0, B0) with a constant-LR phase,
average G and N over the equilibrium window (default: the last sixth of the first constant-LR
phase), check that the run is at equilibrium there (svag.analysis.equilibrium: a one-line WARNING when G, N,
G/N or ‖x‖² still trend), print the predicted largest batch size B* = B0·τ·N0/G0 with its
uncertainty and the batch sizes to verify it with; with --verify B1,B2,... run the linear-scaling
sweep (η = κη0, same epochs, --seeds seeds per batch size) and draw P1's figure (G/N vs B, errors
vs B) and a verdict table (verdicts.md, verdicts.csv) with the seeds' spread."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from svag import sweepfolder
from svag.commands import batch_sizes, folder
from svag.commands._executor import add_executor_arguments, executor_from_args
from svag.config import add_config_arguments, config_from_args
from svag.experiments import arguments
from svag.experiments.defaults import LSR_CONFIG, LSR_SEEDS, LSR_TAU, LSR_THREADS, LSR_WINDOW
from svag.integrations import record_sinks

# the command's defaults are the experiment's own (svag.experiments.defaults), shared with svag.lsr_test
THREADS = LSR_THREADS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=folder, default="runs/lsr", help="folder for the baseline, the sweep and the outputs"
    )
    parser.add_argument("--baseline", default=None, help="read an existing baseline run folder instead of training")
    parser.add_argument("--verify", type=batch_sizes, default=[], help="batch sizes of the LSR sweep, e.g. 64,128,256")
    parser.add_argument("--tau", type=float, default=LSR_TAU, help="threshold τ = C² − 1 of the condition G/N ≤ τ")
    parser.add_argument("--window", type=float, default=LSR_WINDOW, help="equilibrium window: last fraction of phase 1")
    parser.add_argument("--seeds", type=int, default=LSR_SEEDS,
                        help="--verify: seeds per batch size (seeds S..S+N-1 of --seed S), the baseline B0 included; "
                        "the table gives the errors' spread and judges each rise against it")  # fmt: skip
    parser.add_argument("--ensemble", default="auto",
                        help="auto, on or off: train the seeds of each batch size together with stacked parameters "
                        "(auto: where measured faster; checked by svag.experiments.compare.use_ensemble)")  # fmt: skip
    add_executor_arguments(parser)  # --jobs, --cluster ray, ... (svag.commands._executor)
    parser.add_argument("--resume", action="store_true", help="reuse/continue runs already in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_arguments(parser)
    parser.set_defaults(**LSR_CONFIG)
    parser.epilog = (
        "G/N is measured only inside the equilibrium window (--noise-window defaults to it), "
        "with an extra batch at every SGD step there (--noise-fraction 1). The defaults were tuned for the "
        "built-in scale-invariant CNN (--model cnn --norm bn --scale-invariant) on MNIST-1D: a plug-in model "
        "gets --norm and --scale-invariant only if its factory names them (else they are not recorded), and "
        "the other defaults as they are."
    )


def run(args: argparse.Namespace) -> int:
    from svag.analysis.plotting import plot_lsr
    from svag.experiments.lsr_sweep import (
        equilibrium_window,
        equilibrium_window_epochs,
        lsr_table,
        plugin_model_defaults,
        run_sweep,
        write_lsr_outputs,
    )
    from svag.runfolder import RunFolder

    arguments.positive(args.tau, "--tau")  # the Python API's checks (svag.experiments.arguments)
    arguments.window(args.window, "--window")
    out = Path(args.out)
    if args.baseline:
        dirs = [Path(args.baseline)]
        if not RunFolder(dirs[0]).records():
            raise FileNotFoundError(f"--baseline {dirs[0]} holds no records of a run")
        if args.verify:
            raise ValueError("--verify needs the baseline config: run without --baseline to train it")
        equilibrium_window(dirs[0], args.window)  # a schedule without a constant-LR phase fails here
    else:
        base, note = plugin_model_defaults(config_from_args(args))  # a plug-in: only the options it takes
        if note:
            print(note)
        window = equilibrium_window_epochs(base, args.window)  # refuses a schedule without a constant-LR phase
        if not base.noise_window:  # spend the G/N budget where the test reads it
            base = replace(base, noise_window=window).validate()
        if base.noise != "pairs":
            raise ValueError(f"svag lsr needs --noise pairs to measure G/N, got {base.noise!r}")
        where = executor_from_args(args)  # local processes or Ray (svag.commands._executor)
        if isinstance(args.seeds, bool) or args.seeds < 1:
            raise ValueError(f"--seeds must be an integer >= 1, got {args.seeds}")
        seeds = args.seeds if args.verify else 1  # the prediction alone needs one baseline run
        dirs = run_sweep(base, args.verify, out, resume=args.resume, progress=not args.no_progress, jobs=where,
                         seeds=seeds, ensemble=args.ensemble, sinks=record_sinks(base))  # fmt: skip
    with sweepfolder.hold(out):  # the folder's one writer (run_sweep held it while the runs trained)
        try:
            result = lsr_table(dirs, tau=args.tau, fraction=args.window)
        except (ValueError, FileNotFoundError):
            base = RunFolder(dirs[0])  # a baseline that failed or diverged before its window: say that, status 1
            status = base.status() if base.exists() else None
            if status is not None and status.status not in ("diverged", "failed"):
                raise
            why = f"{status.status}: {status.message or 'see status.json'}" if status else "did not start (see above)"
            print(f"svag lsr: no prediction: the baseline run {dirs[0]} {why}", file=sys.stderr)
            return 1
        out.mkdir(parents=True, exist_ok=True)
        js, md, csv = write_lsr_outputs(result, out)
        print(md.read_text(), end="")
        if result.get("verdicts"):
            fig = plot_lsr(result, out / sweepfolder.LSR_PNG)
            print(f"figure: {fig}")
    print(f"table: {md} and {csv}; all numbers: {js}")
    incomplete = len(result["runs"]) < len(dirs) or any(r["status"] != "completed" for r in result["runs"])
    return 1 if incomplete else 0  # a run failed or diverged: the table says which
