"""A batch-size sweep under a scaling rule from one base config: B0 = --batch-size, and for each B
in --batch-sizes the run at κ = B/B0 with the rule's hyperparameters (linear, P1: η·κ; sqrt, P2:
η·√κ, 1−β → κ(1−β), ε/√κ), the same number of epochs, --seeds seeds each, into
OUT/B{B}_seed{s}/. Writes OUT/scale.json (rule, base and per-B configs), OUT/scale.png (each metric
against the base run's continuous time at the same epoch, which is each run's own SDE time when
the rule holds) and OUT/scale_summary.md/.csv (final values per B and their difference from B0)."""

from __future__ import annotations

import argparse
from pathlib import Path

from svag import sweepfolder
from svag.analysis.plotting import plot_scale
from svag.commands import batch_sizes
from svag.commands.compare import add_sweep_arguments, print_failed, sweep_options, sweep_seeds
from svag.config import config_from_args
from svag.experiments.scale import (
    RULES,
    TABLE_METRICS,
    auto_rule,
    base_run,
    run_scale,
    scale_curves,
    scaled_configs,
    write_scale_summary,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder that will hold one sub-folder per run and the outputs")
    parser.add_argument(
        "--rule",
        choices=("auto", *RULES),
        default="auto",
        help="scaling rule: linear (SGD, η·κ), sqrt (Adam/RMSprop, η·√κ, 1−β → κ(1−β), ε/√κ); "
        "auto: sqrt for adam/rmsprop, linear for sgd",
    )
    parser.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        required=True,
        help="batch sizes B of the sweep, e.g. 32,128,512; κ = B/B0 with B0 = --batch-size (always run too)",
    )
    add_sweep_arguments(parser, "batch size")


def choose_rule(requested: str, optimizer: str) -> tuple[str, str]:
    """``(rule, why)``: ``auto`` picks the rule that preserves ``optimizer``'s SDE; an explicit
    rule is kept, with a note when it is not that rule."""
    right, why = auto_rule(optimizer)
    if requested == "auto":
        return right, f"auto: {why}"
    if requested == right:
        return requested, f"as given; {why}"
    return requested, f"as given; note: {why}, so the curves are expected to separate"


def run(args: argparse.Namespace) -> int:
    seeds = sweep_seeds(args)
    if not args.batch_sizes:
        raise ValueError("--batch-sizes needs at least one batch size, e.g. 32,128,512; got none")
    base = config_from_args(args, l=1.0, seed=0)
    rule, why = choose_rule(args.rule, base.optimizer)
    out = Path(args.out)
    sizes = [b for b, _, _ in scaled_configs(base, rule, args.batch_sizes)]  # a bad B fails here, before any output
    print(f"rule: {rule} ({why})")
    print(
        f"comparing {base.optimizer} at B = {', '.join(map(str, sizes))} (κ = B/{base.batch_size}) under the {rule} "
        f"rule from η0 = {base.lr:g}, {base.epochs:g} epochs, {args.seeds} seed(s) each; runs in "
        f"{out}/B{{B}}_seed{{s}}/, outputs {out}/scale.json, scale.png, scale_summary.md/.csv"
    )
    statuses = run_scale(base, rule, args.batch_sizes, seeds, out, **sweep_options(args, base))
    md, csv = write_scale_summary(out)
    fig = plot_scale(scale_curves(out, TABLE_METRICS), out / sweepfolder.SCALE_PNG, base=base_run(out), rule=rule)
    print(md.read_text(), end="")
    print(f"figure: {fig}; table: {md} and {csv}; configs: {out / sweepfolder.SCALE_JSON}")
    return 1 if print_failed(statuses) else 0
