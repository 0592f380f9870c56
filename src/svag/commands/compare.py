"""SGD and SVAG for a list of l and a number of seeds, into one folder of runs
(RUNS/l{l}_seed{s}/), then the summary table (summary.md, summary.csv). Draw the figure
with `svag plot RUNS`."""

from __future__ import annotations

import argparse

from ..clock import heavy_ball_lr
from ..config import add_config_arguments, config_from_args
from ..experiments.compare import ENSEMBLE_MODES, run_compare, write_summary
from . import floats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder that will hold one sub-folder per run")
    parser.add_argument("--ls", type=floats, default=[1.0, 2.0, 4.0, 8.0], help="values of l (1 = SGD)")
    add_sweep_arguments(parser, "l")


def add_sweep_arguments(parser: argparse.ArgumentParser, per: str) -> None:
    """The flags of a sweep over ``per`` (l, batch size) with several seeds, then the run flags."""
    parser.add_argument("--seeds", type=int, default=3, help=f"number of seeds per {per} (seeds 0..N-1)")
    parser.add_argument("--jobs", type=int, default=1, help="independent jobs run in parallel worker processes")
    parser.add_argument(
        "--ensemble",
        choices=ENSEMBLE_MODES,
        default="auto",
        help=f"train the seeds of each {per} together with stacked parameters (auto: where measured faster)",
    )
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs in --out, keep completed ones")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_arguments(parser, skip=("l", "seed"))


def describe(cfg) -> str:
    """One line saying which runs simulate which SDE."""
    if cfg.optimizer == "sgd" and cfg.momentum:
        eff = heavy_ball_lr(cfg.lr, cfg.momentum)
        return (
            f"l = 1 is SGD with heavy-ball momentum β={cfg.momentum:g} at η={cfg.lr:g}; l > 1 is SVAG of plain SGD at "
            f"η/(1-β)={eff:g}, its small-LR SDE (Wang et al. 2023); time advances by η/(1-β) per SGDM step"
        )
    if cfg.optimizer in ("adam", "rmsprop"):
        return (
            f"l = 1 is {cfg.optimizer} at η={cfg.lr:g}; l > 1 is SVAG of {cfg.optimizer} (P2): LR η/l, 1-β → (1-β)/l², "
            f"ε → ε·l, gradient variance ×l²; continuous time t = k·η² (l² steps per original step)"
        )
    return f"l = 1 is SGD at η={cfg.lr:g}, B={cfg.batch_size}; l > 1 is SVAG of that SGD run (P1): LR η/l, noise ×l"


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not args.ls:
        raise ValueError("--ls must list at least one l >= 1, got none")
    base = config_from_args(args, l=1.0, seed=0)
    print(f"comparing SGD and SVAG at l = {', '.join(f'{l:g}' for l in args.ls)} with {args.seeds} seed(s)")
    print(describe(base))
    statuses = run_compare(
        base,
        args.ls,
        list(range(args.seeds)),
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        jobs=args.jobs,
        ensemble=args.ensemble,
    )
    md, csv = write_summary(args.out, names=list(statuses))  # this sweep's runs only
    failed = {k: v for k, v in statuses.items() if v != "completed"}
    print(f"runs in {args.out}; summary: {md} and {csv}")
    for name, status in failed.items():
        print(f"  {name}: {status}")
    return 1 if failed else 0
