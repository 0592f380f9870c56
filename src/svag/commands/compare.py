"""SGD and SVAG for a list of l and a number of seeds, into one folder of runs
(RUNS/l{l}_seed{s}/), then the summary table (summary.md, summary.csv). Draw the figure
with `svag plot RUNS`."""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, config_from_args
from ..experiments.compare import run_compare, write_summary


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder that will hold one sub-folder per run")
    parser.add_argument("--ls", type=_floats, default=[1.0, 2.0, 4.0, 8.0], help="values of l (1 = SGD)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds per l (seeds 0..N-1)")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_arguments(parser, skip=("l", "seed"))


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not args.ls:
        raise ValueError("--ls must list at least one l >= 1, got none")
    base = config_from_args(args, l=1.0, seed=0)
    print(f"comparing SGD and SVAG at l = {', '.join(f'{l:g}' for l in args.ls)} with {args.seeds} seed(s)")
    statuses = run_compare(
        base, args.ls, list(range(args.seeds)), args.out, resume=args.resume, progress=not args.no_progress
    )
    md, csv = write_summary(args.out)
    failed = {k: v for k, v in statuses.items() if v != "completed"}
    print(f"runs in {args.out}; summary: {md} and {csv}")
    for name, status in failed.items():
        print(f"  {name}: {status}")
    return 1 if failed else 0
