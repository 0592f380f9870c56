"""Weak error of SVAG vs the exact SDE on two problems with closed forms (P1, Thm 4.3: O(1/l)).

An Ornstein–Uhlenbeck problem with skewed minibatch noise (exact moments of SVAG and of the SDE,
skewness) and a linear regression with state-dependent noise (Monte-Carlo SVAG vs an Euler–Maruyama
simulation of the SDE). Prints the table and the fitted log-log slopes, writes verify.png,
verify.csv and verify.json into --out. About 10 s on 2 CPU cores; --quick: a few seconds.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from svag.commands import folder
from svag.problems.report import format_tables, write_report
from svag.records import check_writable

if TYPE_CHECKING:
    from svag.problems.verify import VerifyConfig

QUICK = {"l_max": 8, "replicas": 2000, "em_substeps": 8}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=folder, default="runs/verify", help="folder for verify.png, verify.csv, verify.json"
    )
    parser.add_argument(
        "--l-max",
        type=int,
        default=argparse.SUPPRESS,
        help="largest l of the ladder 1, 2, 4, ... (default 32; 8 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo runs")
    parser.add_argument(
        "--replicas",
        type=int,
        default=argparse.SUPPRESS,
        help="independent SVAG chains per l for the Monte-Carlo columns (default 10000; 2000 with --quick)",
    )
    parser.add_argument(
        "--em-substeps",
        type=int,
        default=argparse.SUPPRESS,
        help="Euler-Maruyama steps per SGD step for the regression reference (default 32; 8 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="l up to 8, 2000 replicas: a smoke run of seconds")


def config_from_args(args: argparse.Namespace) -> VerifyConfig:
    """The :class:`~svag.problems.verify.VerifyConfig` the flags ask for (``--quick`` changes the defaults only)."""
    from svag.problems.verify import VerifyConfig  # torch: imported by the command, not by ``svag verify --help``

    base = VerifyConfig(seed=args.seed)
    values = {k: getattr(base, k) for k in QUICK}
    if args.quick:
        values.update(QUICK)
    for key in QUICK:
        if hasattr(args, key):
            values[key] = getattr(args, key)
    return VerifyConfig(seed=args.seed, **values).validate()


def run(args: argparse.Namespace) -> int:
    import torch

    from svag.problems.verify import run_verification

    cfg = config_from_args(args)
    check_writable(args.out, f"cannot write the report into --out {args.out}")  # before the work, not after
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is as fast, and robust on a shared machine
    try:
        data = run_verification(cfg)
    finally:
        torch.set_num_threads(threads)
    data["seconds"] = time.perf_counter() - start
    paths = write_report(data, args.out)
    print(format_tables(data))
    print(f"done in {data['seconds']:.1f} s\nfigure: {paths['figure']}\nnumbers: {paths['csv']} and {paths['json']}")
    return 0
