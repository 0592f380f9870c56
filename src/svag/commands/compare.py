"""SGD and SVAG for a list of l and a number of seeds, into one folder of runs
(RUNS/l{l}_seed{s}/), then the summary table (summary.md, summary.csv) and the verdict: does SGD
follow its SDE? For each metric at mid-run and at the end, the gap SGD − SDE (the SDE extrapolated
from the l ladder) with its 95% interval and one of follows / departs / inconclusive against a
margin (verdicts.md, verdicts.csv, verdicts.json, verdicts.png; one line per metric printed), and the
figure of each metric against effective steps per l (compare.png). The verdict needs at least 2 seeds and
2 values of l including 1: with fewer the runs still run and the verdict is skipped with a note. Draw the
figures again (other metrics, another x axis) with `svag plot RUNS`."""

from __future__ import annotations

import argparse
from pathlib import Path

from svag import sweepfolder
from svag.clock import heavy_ball_lr
from svag.commands import floats, folder
from svag.commands._executor import add_executor_arguments, executor_from_args
from svag.config import add_config_arguments, config_from_args
from svag.experiments import arguments
from svag.experiments.compare import ENSEMBLE_MODES, run_compare, write_figure, write_summary
from svag.integrations import record_sinks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=folder, required=True, help="folder that will hold one sub-folder per run")
    parser.add_argument("--ls", type=floats, default=[1.0, 2.0, 4.0, 8.0], help="values of l (1 = SGD)")
    parser.add_argument(
        "--ngd",
        action="store_true",
        help="also run NGD for each seed (gradient_noise=gaussian at l = 1, into ngd_seed{s}/): the verdict then "
        "splits the gap into non-Gaussian noise (SGD - NGD) and discretization (NGD - SDE)",
    )
    add_verdict_arguments(parser)
    add_sequential_arguments(parser)
    add_sweep_arguments(parser, "l")


def add_sequential_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--until-decided`` (:mod:`svag.experiments.sequential`)."""
    from svag.experiments.sequential import MAX_SEEDS

    parser.add_argument(
        "--until-decided",
        action="store_true",
        help="add seeds in rounds (--seeds first, then doubling, all l together) until every --decide metric is "
        "decided (follows or departs) or a budget is spent, with intervals valid under this stopping (Pocock-type "
        "repeated confidence intervals, Jennison & Turnbull 1989); needs at least 3 values of l",
    )
    parser.add_argument(
        "--decide",
        default=None,
        metavar="METRIC,...",
        help="with --until-decided: the metrics to decide (default: every metric with a margin)",
    )
    parser.add_argument(
        "--max-seeds", type=int, default=MAX_SEEDS, help="with --until-decided: the last look, seeds per l"
    )
    parser.add_argument(
        "--max-cpu-minutes",
        type=float,
        default=None,
        help="with --until-decided: stop before a round whose projected CPU time would pass this budget",
    )


def margin(text: str) -> tuple[str, str]:
    """``--margin METRIC=VALUE``: an absolute margin (``test_acc=0.02``) or one relative to SGD's value
    (``test_loss=5%``), checked by :func:`svag.analysis.equivalence.resolve_margin`."""
    from svag.analysis.equivalence import resolve_margin
    from svag.analysis.report import METRICS

    metric, sep, value = text.partition("=")
    metric, value = metric.strip(), value.strip()
    if not sep or metric not in METRICS:
        raise argparse.ArgumentTypeError(f"expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}, got {text!r}")
    try:
        resolve_margin(metric, 1.0, value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; e.g. {metric}=0.02 or {metric}=5%") from None
    return metric, value


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the verdict (margins and the Richardson fit), shared by compare and plot."""
    parser.add_argument(
        "--margin",
        type=margin,
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="equivalence margin δ of a metric for the verdict, absolute (test_acc=0.02) or relative to SGD's "
        "value (test_loss=5%%); repeatable. The defaults (svag.analysis.equivalence.DEFAULT_MARGINS) are listed "
        "with their reasons in verdicts.md; gn_ratio has none",
    )
    parser.add_argument(
        "--fit",
        choices=("wls", "two_point"),
        default="wls",
        help="Richardson fit of the SDE's value: weighted least squares on 1/l over the ladder, or two-point "
        "on the two largest l (2·μ_2l − μ_l)",
    )
    parser.add_argument(
        "--fit-ls", type=floats, default=None, help="the values of l the fit uses (default: all of them)"
    )
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="treat the seeds of each l as independent groups (Welch intervals) even when every l has the same "
        "seeds, which share their initialization (default: paired, a t-interval over per-seed gaps)",
    )


def verdict_options(args: argparse.Namespace) -> dict:
    """:func:`svag.analysis.report.compute_verdicts` keywords from the flags."""
    return {
        "margins": dict(args.margin),
        "fit": args.fit,
        "use": args.fit_ls,
        "paired": False if args.unpaired else None,
    }


def check_verdict_options(args: argparse.Namespace, ls: list[float]) -> None:
    """Refuse a fit that the ladder cannot give, before any work (one line, exit 2)."""
    arguments.fit_ls(args.fit_ls, ls, "--fit-ls", "--ls")  # the Python API's check (svag.experiments.arguments)


def print_verdict(out, names: list[str] | None, options: dict) -> None:
    """Compute, write, draw and print the verdict of the runs ``names`` of ``out`` (``options``: of
    :func:`svag.analysis.report.compute_verdicts`); a comparison that cannot give one (too few
    seeds left, no SGD) prints why instead. A damaged run folder (records repeating a time:
    :class:`svag.runfolder.RepeatedRecordsError`) is an error, not a missing verdict."""
    from svag.analysis.plotting import plot_verdicts
    from svag.analysis.report import run_verdicts
    from svag.analysis.report_text import verdict_header, verdict_lines
    from svag.runfolder import RepeatedRecordsError

    try:
        report, (md, csv, _) = run_verdicts(out, names=names, **options)
    except RepeatedRecordsError:
        raise
    except ValueError as err:
        print(f"no verdict: {str(err).splitlines()[0]}")
        return
    fig = plot_verdicts(report, Path(out) / sweepfolder.VERDICTS_PNG)
    print(verdict_header(report))
    for line in verdict_lines(report):
        print(f"  {line}")
    print(f"verdicts: {md} (mid-run and end) and {csv}; figure: {fig}")


def add_sweep_arguments(parser: argparse.ArgumentParser, per: str) -> None:
    """The flags of a sweep over ``per`` (l, batch size) with several seeds, then the run flags."""
    parser.add_argument("--seeds", type=int, default=3, help=f"number of seeds per {per} (seeds 0..N-1)")
    add_executor_arguments(parser)
    parser.add_argument(
        "--ensemble",
        choices=ENSEMBLE_MODES,
        default="auto",
        help=f"train the seeds of each {per} together with stacked parameters (auto: where measured faster)",
    )
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs in --out, keep completed ones")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_arguments(parser, skip=("l", "seed"))


def sweep_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds ``0..N-1`` of ``--seeds N`` (:func:`add_sweep_arguments`); ``N < 1`` is refused."""
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    return list(range(args.seeds))


def sweep_options(args: argparse.Namespace, base) -> dict:
    """The run flags of :func:`add_sweep_arguments` as ``run_compare``/``run_scale`` take them: ``resume``,
    ``progress``, ``jobs`` (the executor the flags name), ``ensemble``, and the record sinks ``base`` asks for."""
    return {
        "resume": args.resume,
        "progress": not args.no_progress,
        "jobs": executor_from_args(args),
        "ensemble": args.ensemble,
        "sinks": record_sinks(base),
    }


def print_failed(statuses: dict[str, str]) -> bool:
    """Print each run of ``statuses`` that did not complete, with its status; whether there was one."""
    failed = {k: v for k, v in statuses.items() if v != "completed"}
    for name, status in failed.items():
        print(f"  {name}: {status}")
    return bool(failed)


def describe(cfg) -> str:
    """One line saying which runs simulate which SDE."""
    if cfg.gradient_noise == "gaussian":
        return (
            f"every run is Gaussian-noise: full-batch gradient + Gaussian noise with the batch-{cfg.batch_size} "
            f"covariance; l = 1 is P1's NGD at η={cfg.lr:g}, l > 1 is Euler–Maruyama of its SDE with step η/l"
        )
    if cfg.optimizer == "sgd" and cfg.momentum:
        eff = heavy_ball_lr(cfg.lr, cfg.momentum)
        return (
            f"l = 1 is SGD with heavy-ball momentum β={cfg.momentum:g} at η={cfg.lr:g}; l > 1 is SVAG of plain SGD at "
            f"η/(1-β)={eff:g}, its small-LR SDE (Wang et al. 2023); time advances by η/(1-β) per SGDM step"
        )
    if cfg.optimizer in ("adam", "adamw", "rmsprop"):
        return (
            f"l = 1 is {cfg.optimizer} at η={cfg.lr:g}; l > 1 is SVAG of {cfg.optimizer} (P2): LR η/l, 1-β → (1-β)/l², "
            f"ε → ε·l, gradient variance ×l²; continuous time t = k·η² (l² steps per original step)"
        )
    return f"l = 1 is SGD at η={cfg.lr:g}, B={cfg.batch_size}; l > 1 is SVAG of that SGD run (P1): LR η/l, noise ×l"


def run_sequential(args: argparse.Namespace, base) -> int:
    """``svag compare --until-decided``: the rounds (:func:`svag.experiments.sequential.run_until_decided`),
    the summary of every run, and where each chosen metric was decided."""
    from svag.experiments.sequential import run_until_decided

    margins = dict(args.margin)
    decide = arguments.decide(args.decide, "--decide", margins)
    shown = ("--seeds", "--max-seeds", "--max-cpu-minutes", "--ls")
    first, max_seeds, budget = arguments.sequential_budget(
        args.seeds, args.max_seeds, args.max_cpu_minutes, args.ls, shown
    )
    asked = [f for f, given in (("--fit two_point", args.fit != "wls"), ("--fit-ls", args.fit_ls is not None),
                                ("--unpaired", args.unpaired)) if given]  # fmt: skip
    if asked:
        raise ValueError(f"--until-decided fits the ladder itself (paired seeds, c/l + d/l² from 4 l); drop {asked[0]}")
    if base.gradient_noise == "gaussian":
        raise ValueError("--until-decided decides SGD's verdict; these runs use --gradient-noise gaussian")
    print(f"comparing SGD and SVAG at l = {', '.join(f'{l:g}' for l in args.ls)}, seeds in rounds until decided")
    print(describe(base))
    options = sweep_options(args, base)
    with sweepfolder.hold(args.out):
        report = run_until_decided(base, args.ls, args.out, first=first, max_seeds=max_seeds, max_cpu_minutes=budget,
                                   decide=decide, margins=margins, ngd=args.ngd, **options)  # fmt: skip
        names = list(report["statuses"])
        md, csv = write_summary(args.out, names=names)
        failed = print_failed(report["statuses"])
        seq = Path(args.out) / sweepfolder.SEQUENTIAL_MD
        print(f"runs in {args.out}; summary: {md} and {csv}; sequential verdict: {seq}")
        decided = [m for m, row in report["metrics"].items() if row.get("decided_at")]
        open_ = [m for m in report["metrics"] if m not in decided]
        last = report["looks"][-1] if report["looks"] else {"seeds": 0, "cpu_minutes": 0.0}
        print(f"stopped: {report['stopped']} ({last['seeds']} seeds per l, {last['cpu_minutes']:.1f} CPU minutes)")
        print(f"decided: {', '.join(decided) or 'none'}" + (f"; not decided: {', '.join(open_)}" if open_ else ""))
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    if not args.ls:
        raise ValueError("--ls must list at least one l >= 1, got none")
    if args.until_decided:
        return run_sequential(args, config_from_args(args, l=1.0, seed=0))
    if args.decide is not None or args.max_cpu_minutes is not None:
        raise ValueError("--decide and --max-cpu-minutes belong to --until-decided; add it or drop them")
    seeds = sweep_seeds(args)
    if not args.ls:
        raise ValueError("--ls must list at least one l >= 1, got none")
    base = config_from_args(args, l=1.0, seed=0)
    check_verdict_options(args, args.ls)
    if args.ngd and base.gradient_noise == "gaussian":
        raise ValueError("--ngd adds Gaussian-noise runs to SGD runs, but --gradient-noise is already gaussian")
    from svag.analysis.report import missing_requirement

    skip = missing_requirement(args.ls, args.seeds)
    if base.gradient_noise == "gaussian":
        skip = "the verdict compares SGD's minibatch noise with its SDE; these runs use --gradient-noise gaussian"
    print(f"comparing SGD and SVAG at l = {', '.join(f'{l:g}' for l in args.ls)} with {args.seeds} seed(s)")
    print(describe(base))
    with sweepfolder.hold(args.out):  # the folder's one driver, from the runs to the verdict
        statuses = run_compare(base, args.ls, seeds, args.out, ngd=args.ngd, **sweep_options(args, base))
        md, csv = write_summary(args.out, names=list(statuses))  # this sweep's runs only
        fig = write_figure(args.out, names=list(statuses))
        print(f"runs in {args.out}; summary: {md} and {csv}; figure: {fig}")
        failed = print_failed(statuses)
        if skip:
            print(f"no verdict: {skip}")
        else:
            print_verdict(args.out, list(statuses), verdict_options(args))
    return 1 if failed else 0
