"""The critical batch size measured directly, over training (Merrill et al. 2025): a baseline run (the config's B,
η, optimizer, at a constant LR) with checkpoints at --points log-spaced epochs (each twice the one before, the
last at --epochs), and from each checkpoint short branches at κB (--kappas) under a transfer rule (--rule; auto:
linear for SGD, sqrt for Adam), each --branch-epochs epochs of samples, --seeds seeds each (seed s branches from
its own baseline, so κ = 1 is the baseline's continuation). The CBS at a checkpoint is the largest κB whose final
test loss stays within --epsilon (relative) of the κ = 1 branch by the paired equivalence verdict of `svag
compare`, held against B_simple = B·N/G and P1's B* = τ·B·N/G from the baseline's own G/N records near that
checkpoint. Runs in OUT/base{p}_seed{s}/ and OUT/ckpt{p}_B{B}_seed{s}/; outputs OUT/cbs.json, cbs.md/.csv
(one row per checkpoint) and cbs.png (the CBS against training progress, with both predictions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from svag import sweepfolder
from svag.analysis.plotting import plot_cbs
from svag.commands import floats, folder
from svag.commands.compare import add_sweep_arguments, print_failed, sweep_options, sweep_seeds
from svag.config import config_from_args
from svag.experiments import arguments
from svag.experiments.cbs import (
    CBS_BRANCH_EPOCHS,
    CBS_EPSILON,
    CBS_KAPPAS,
    CBS_POINTS,
    cbs_table,
    checkpoint_epochs,
    run_cbs,
    write_cbs,
)
from svag.experiments.defaults import CBS_CONFIG, LSR_THREADS
from svag.experiments.lsr_sweep import plugin_model_defaults
from svag.scaling import RULES, sde_rule

THREADS = LSR_THREADS  # the small CNN of the default, as for svag lsr


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=folder, default="runs/cbs", help="folder for the baseline, the branches and "
                        "the outputs")  # fmt: skip
    parser.add_argument("--rule", choices=("auto", *RULES), default="auto",
                        help="transfer rule of the branches (svag.scaling.RULES); auto: the one that keeps the "
                        "optimizer's SDE, linear (η·κ) for SGD, sqrt (η·√κ, 1−β → κ(1−β), ε/√κ) for Adam")  # fmt: skip
    parser.add_argument("--kappas", type=floats, default=list(CBS_KAPPAS),
                        help="the branches' κ (batch size κB), 1 included, e.g. 1,2,4,8,16")  # fmt: skip
    parser.add_argument("--points", type=int, default=CBS_POINTS,
                        help="checkpoints of the baseline, log-spaced: epochs·2^(p−P), p = 1..P")  # fmt: skip
    parser.add_argument("--branch-epochs", type=float, default=CBS_BRANCH_EPOCHS,
                        help="length of each branch, SGD-equivalent epochs (the same samples at every κ)")  # fmt: skip
    parser.add_argument("--epsilon", type=float, default=CBS_EPSILON,
                        help="relative tolerance ε: a branch keeps up while its final test loss is within ε of the "
                        "κ = 1 branch's (the equivalence margin δ = ε·mean)")  # fmt: skip
    add_sweep_arguments(parser, "checkpoint and κ")
    parser.set_defaults(**CBS_CONFIG)


def run(args: argparse.Namespace) -> int:
    seeds = sweep_seeds(args)
    arguments.count(args.points, "--points", 1)  # the Python API's checks (svag.experiments.arguments)
    arguments.positive(args.epsilon, "--epsilon")
    arguments.positive(args.branch_epochs, "--branch-epochs")
    base, _ = plugin_model_defaults(config_from_args(args, l=1.0, seed=0))  # a plug-in: only the options it takes
    rule = sde_rule(base.optimizer) if args.rule == "auto" else args.rule
    out = Path(args.out)
    ends = checkpoint_epochs(base.epochs, args.points)
    print(f"CBS of {base.optimizer} from B = {base.batch_size}, η = {base.lr:g}: checkpoints at epochs "
          f"{', '.join(f'{e:g}' for e in ends)}; branches of {args.branch_epochs:g} epoch(s) at κB, κ ∈ "
          f"{{{', '.join(f'{k:g}' for k in args.kappas)}}}, {rule} rule, {len(seeds)} seed(s); runs in {out}/, "
          f"outputs {out}/cbs.json, cbs.md/.csv, cbs.png")  # fmt: skip
    options = sweep_options(args, base)
    options.pop("sinks")
    with sweepfolder.hold(out):
        statuses = run_cbs(base, out, rule=rule, kappas=args.kappas, points=args.points,
                           branch_epochs=args.branch_epochs, epsilon=args.epsilon, seeds=seeds, **options)  # fmt: skip
        result = cbs_table(out)
        _, md, csv = write_cbs(result, out)
        fig = plot_cbs(result, out / sweepfolder.CBS_PNG)
    print(md.read_text(), end="")
    print(f"figure: {fig}; table: {md} and {csv}; everything: {out / sweepfolder.CBS_JSON}")
    return 1 if print_failed(statuses) else 0
