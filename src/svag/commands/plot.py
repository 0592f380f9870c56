"""Read a folder of runs (from `svag compare`) and draw the paper-style figure: each metric vs
effective steps for each l, mean ± std band over seeds. Also writes the summary table
(summary.md, summary.csv) and draws the verdict figure (verdicts.png, next to the figure): from the
folder's verdicts.json when it has one, else (or when a verdict flag such as --margin is given) from the
verdict computed afresh, which rewrites verdicts.md, .csv and .json. Reads results only; never trains."""

from __future__ import annotations

import argparse
from pathlib import Path

from svag import sweepfolder
from svag.commands.compare import add_verdict_arguments, check_verdict_options, verdict_options
from svag.records import check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs_dir", help="folder of runs written by `svag compare`")
    parser.add_argument(
        "--out",
        default=None,
        help="figure file; its suffix gives the format: .png, .pdf, .svg, ... (default: RUNS_DIR/compare.png); "
        "the verdict figure goes next to it as verdicts.SUFFIX",
    )
    parser.add_argument(
        "--metrics",
        default="train_loss,test_loss,test_acc,weight_norm_sq",
        help="comma-separated metrics to plot",
    )
    parser.add_argument("--x", default="effective_step", choices=("effective_step", "sde_time", "epoch"), help="x axis")
    add_verdict_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from svag.analysis.plotting import figure_format, plot_compare, plot_verdicts
    from svag.analysis.report import FILES, compute_verdicts, read_verdicts, write_verdicts
    from svag.analysis.summary import load_runs
    from svag.experiments.compare import write_summary

    figure = Path(args.out) if args.out else Path(args.runs_dir) / sweepfolder.COMPARE_PNG
    figure_format(figure)  # a folder or a name without a known suffix: say so before any work
    runs = load_runs(args.runs_dir)
    check_writable(figure.parent, f"cannot save the figure {figure}")
    check_writable(args.runs_dir, f"cannot write the summary table into {args.runs_dir}")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    known = {key for run in runs for row in run.records[:1] for key in row}
    bad = [m for m in metrics if m not in known]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {', '.join(sorted(known))}")
    asked = bool(args.margin) or args.fit != "wls" or args.fit_ls is not None or args.unpaired
    if asked:  # a verdict asked for: a folder that cannot give one is bad input (exit 2), before any drawing
        check_verdict_options(args, sorted({float(r.config["l"]) for r in runs}))
        report = compute_verdicts(runs, **verdict_options(args))
    fig = plot_compare(runs, figure, metrics=metrics, x=args.x)
    md, csv = write_summary(args.runs_dir)
    print(f"figure: {fig}\ntable: {md} and {csv}")
    print(md.read_text(), end="")
    verdicts_fig = figure.with_name("verdicts" + figure.suffix)
    saved = Path(args.runs_dir) / FILES[2]
    if asked:
        write_verdicts(args.runs_dir, report)
        source = "computed with the flags given"
    elif saved.is_file():
        report, source = read_verdicts(args.runs_dir), f"from {saved}"
    else:
        try:
            report = compute_verdicts(runs)
        except ValueError as err:
            print(f"no verdict figure: {str(err).splitlines()[0]}")
            return 0
        write_verdicts(args.runs_dir, report)
        source = "computed with the default margins"
    print(f"verdict figure: {plot_verdicts(report, verdicts_fig)} ({source})")
    return 0
