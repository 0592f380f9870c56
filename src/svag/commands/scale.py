"""A batch-size sweep under a scaling rule from one base config: B0 = --batch-size, and for each B
in --batch-sizes the run at κ = B/B0 with the rule's hyperparameters (linear, P1: η·κ; sqrt, P2:
η·√κ, 1−β → κ(1−β), ε/√κ), the same number of epochs, --seeds seeds each, into
OUT/B{B}_seed{s}/. Writes OUT/scale.json (rule, base and per-B configs), OUT/scale.png (each metric
against the base run's continuous time at the same epoch, which is each run's own SDE time when
the rule holds) and OUT/scale_summary.md/.csv (final values per B and their difference from B0).

With several rules (--rule sqrt,sqrt_lr,beta_halflife) each sweeps the same κ ladder in OUT/{rule}/ (the base
runs train once, in the first rule's folder), and OUT/rules.md/.csv/.json and OUT/rules.png say, per rule, up
to which B the run is preserved: the test loss and accuracy half way and at the end against the base run by the
equivalence verdict of `svag compare` (follows / departs / inconclusive, the same margins), and in one line
the answer ("from B0 = 32: sqrt holds to B = 256; sqrt_lr departs at B = 128; ...")."""

from __future__ import annotations

import argparse
from pathlib import Path

from svag import sweepfolder
from svag.analysis.plotting import plot_rules, plot_scale
from svag.commands import batch_sizes, folder
from svag.commands.compare import add_sweep_arguments, print_failed, sweep_options, sweep_seeds
from svag.config import config_from_args
from svag.experiments.scale import (
    RULES,
    TABLE_METRICS,
    auto_rule,
    base_run,
    reachable,
    rule_verdicts,
    run_rules,
    run_scale,
    scale_curves,
    scaled_configs,
    write_rules,
    write_scale_summary,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=folder, required=True, help="folder that will hold one sub-folder per run and the outputs"
    )
    parser.add_argument(
        "--rule",
        type=rule_list,
        default=("auto",),
        help="scaling rule, or several separated by commas to compare them (svag.scaling.RULES): linear (SGD, P1: "
        "η·κ); sqrt (Adam/RMSprop, P2: η·√κ, 1−β → κ(1−β), "
        "ε/√κ, AdamW's λ·√κ); sqrt_lr (η·√κ only); adamw_timescale (AdamW: η kept, λ·κ keeps B/(ηλD)); "
        "beta_halflife (β → β^κ keeps each half-life in samples, η·√κ, ε/√κ); auto: sqrt for adam/adamw/rmsprop, "
        "linear for sgd",
    )
    parser.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        required=True,
        help="batch sizes B of the sweep, e.g. 32,128,512; κ = B/B0 with B0 = --batch-size (always run too)",
    )
    add_sweep_arguments(parser, "batch size")


def rule_list(text: str) -> tuple[str, ...]:
    """``--rule``: one of ``auto`` and :data:`svag.scaling.RULES`, or several rules separated by commas."""
    names = tuple(t.strip() for t in text.split(","))
    valid = ("auto", *RULES)
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"rule must be one of {', '.join(valid)} (or several, comma-separated), "
                                         f"got {text!r}")  # fmt: skip
    if len(names) > 1 and ("auto" in names or len(set(names)) != len(names)):
        raise argparse.ArgumentTypeError(f"several rules must be distinct and name no 'auto', got {text!r}")
    return names


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
    if len(args.rule) > 1:
        return _run_rules(args, base, seeds)
    rule, why = choose_rule(args.rule[0], base.optimizer)
    out = Path(args.out)
    sizes = [b for b, _, _ in scaled_configs(base, rule, args.batch_sizes)]  # a bad B fails here, before any output
    print(f"rule: {rule} ({why})")
    print(
        f"comparing {base.optimizer} at B = {', '.join(map(str, sizes))} (κ = B/{base.batch_size}) under the {rule} "
        f"rule from η0 = {base.lr:g}, {base.epochs:g} epochs, {args.seeds} seed(s) each; runs in "
        f"{out}/B{{B}}_seed{{s}}/, outputs {out}/scale.json, scale.png, scale_summary.md/.csv"
    )
    with sweepfolder.hold(out):  # the folder's one driver, from the runs to the figure
        statuses = run_scale(base, rule, args.batch_sizes, seeds, out, **sweep_options(args, base))
        md, csv = write_scale_summary(out)
        fig = plot_scale(scale_curves(out, TABLE_METRICS), out / sweepfolder.SCALE_PNG, base=base_run(out), rule=rule)
    print(md.read_text(), end="")
    print(f"figure: {fig}; table: {md} and {csv}; configs: {out / sweepfolder.SCALE_JSON}")
    return 1 if print_failed(statuses) else 0


def _run_rules(args: argparse.Namespace, base, seeds: list[int]) -> int:
    """``--rule A,B,...``: every rule over the same κ ladder, then the verdicts per rule and the one-line answer."""
    out, rules = Path(args.out), list(args.rule)
    for rule in rules:  # a bad B or config fails here, before any output
        sizes, skipped = reachable(base, rule, args.batch_sizes)
        scaled_configs(base, rule, sizes)
        if skipped:
            print(f"{rule}: skips B = {', '.join(map(str, skipped))}, past its own limit κ(1 − β1) < 1")
    print(
        f"comparing the rules {', '.join(rules)} for {base.optimizer} from B0 = {base.batch_size}, η0 = {base.lr:g} "
        f"at B = {', '.join(map(str, args.batch_sizes))}, {base.epochs:g} epochs, {args.seeds} seed(s) each; runs in "
        f"{out}/{{rule}}/B{{B}}_seed{{s}}/ (the base runs in {out}/{rules[0]}/), outputs {out}/rules.md/.csv/.json, "
        "rules.png"
    )
    with sweepfolder.hold(out):
        statuses = run_rules(base, rules, args.batch_sizes, seeds, out, **sweep_options(args, base))
        result = rule_verdicts(out, rules)
        _, md, csv = write_rules(result, out)
        fig = plot_rules(result, out / sweepfolder.RULES_PNG)
    print(md.read_text(), end="")
    print(f"figure: {fig}; table: {md} and {csv}; everything: {out / sweepfolder.RULES_JSON}")
    return 1 if print_failed(statuses) else 0
