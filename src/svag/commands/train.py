"""Train one SGD (l = 1) or SVAG run into an output folder: metrics.jsonl, config.json,
env.json, checkpoint.pt and status.json. A progress bar shows continuous time, loss and ETA.
Kill it any time and continue with --resume: the metrics are bit-identical."""

from __future__ import annotations

import argparse

from svag import interrupts
from svag.commands import folder
from svag.config import add_config_arguments, config_from_args
from svag.integrations import record_sinks
from svag.runfolder import RunFolder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=folder, required=True, help="output folder of the run")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from svag import runner

    cfg = config_from_args(args)
    try:
        result = runner.run(cfg, args.out, resume=args.resume, progress=not args.no_progress, sinks=record_sinks(cfg))
    except KeyboardInterrupt:  # SIGINT/SIGTERM: after the run's last file (completed) it changes nothing
        folder = RunFolder(args.out)
        if not (folder.exists() and folder.status().status == "completed"):
            raise
        result = runner.RunResult(folder.path, "completed", folder.records())
    interrupts.ignore_signals()  # every file is written: a signal from now on changes nothing
    if not result.records:  # a non-zero rank of a multi-process run: rank 0 reports
        return 0
    last = result.records[-1]
    print(
        f"{result.status}: {args.out}/metrics.jsonl ({len(result.records)} records); final sde_time "
        f"{last['sde_time']:.4g}, test_acc {last['test_acc']:.4f}, test_loss {last['test_loss']:.4f}"
    )
    return 0 if result.status == "completed" else 1  # e.g. --resume of a run that had diverged
