"""The ``svag`` command line: ``svag COMMAND --help`` for each command.

Each command lives in ``svag/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches. Errors print one line; set ``SVAG_DEBUG=1``
for the traceback. Exit codes, for every command (:data:`EXIT_CODES`): 0 only when everything
asked for was produced, 1 when a run failed or diverged, 2 for bad input (refused before any
work starts), 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from svag import interrupts
from svag.experiments.defaults import resolve_threads  # the commands' and the API's thread default
from svag.memory import usable_cores

THREADS_PER_CORE = 4  # --threads above this many per core only slows PyTorch down (and 10^5 threads crash it)

# command name -> (module under svag.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: SGD vs SVAG on MNIST-1D, 5 seeds, figure, table and verdict"),
    "train": ("train", "one SGD or SVAG run into an output folder"),
    "compare": ("compare", "SGD and SVAG for several l and seeds into one folder of runs"),
    "scale": ("scale", "a batch-size sweep under the linear (SGD) or square-root (Adam) scaling rule"),
    "plot": ("plot", "figure and summary table from a folder of runs"),
    "lsr": ("lsr", "predict where the linear scaling rule fails from one baseline run (G/N test)"),
    "cbs": ("cbs", "the critical batch size over training, by branching from checkpoints, against G/N's predictions"),
    "verify": ("verify", "weak error of SVAG vs the exact SDE on problems with closed forms"),
}


EXIT_CODES = (
    "exit codes: 0 everything asked for was produced; 1 a run failed or diverged (the others are kept); "
    "2 bad input, refused before any work starts; 128+N stopped by signal N (130: Ctrl-C, 143: SIGTERM), "
    "every run at its last checkpoint: continue it with --resume"
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to look, not the whole usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all are listed in ``svag --help``)."""
    parser = _Parser(
        prog="svag",
        description=("Simulate the SDE of SGD with SVAG and test the linear scaling rule (Li, Malladi & Arora 2021)."),
        epilog=EXIT_CODES,
    )
    from svag.version import __version__

    parser.add_argument("--version", action="version", version=f"svag {__version__}")
    _add_threads(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(f"svag.commands.{module}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        mod.add_arguments(p)
        _add_threads(p, default=argparse.SUPPRESS)  # `svag demo --threads 1` as well as `svag --threads 1 demo`
        p.set_defaults(_run=mod.run, _default_threads=getattr(mod, "THREADS", 0))
        parser.set_defaults(_command_parser=p)
    return parser


def _add_threads(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help="PyTorch intra-op CPU threads; 0: PyTorch's default, one per core. Default: the command's own "
        "(1 for demo, whose small models run as fast on 1 thread and do not stall when another process "
        "takes a core), else PyTorch's; OMP_NUM_THREADS, if set, replaces the command's own; at most 4 per core",
    )


def _diverged(err: BaseException) -> bool:
    """Whether ``err`` is :class:`svag.runner.RunDiverged` (without importing the runner, and torch)."""
    runner = sys.modules.get("svag.runner")
    return runner is not None and isinstance(err, runner.RunDiverged)


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default: the command line's) and return its exit status (:data:`EXIT_CODES`).

    From its first line SIGINT and SIGTERM raise :class:`svag.interrupts.Interrupted` (inside a run's loop the
    runner finishes its step and checkpoints first; a sweep marks its unfinished runs ``interrupted``), and
    the command ends with one line and status 128 + N; once the status is decided they are ignored. The
    caller's handlers are back when ``main`` returns; :func:`entry_point` leaves them ignored until the
    process is gone."""
    previous = interrupts.raise_on_signals()
    try:
        return _main(argv)
    finally:
        interrupts.restore(previous)


def entry_point() -> int:
    """The process's entry point (the ``svag`` script, ``python -m svag``): :func:`main` on the command
    line, with SIGINT and SIGTERM left ignored once the exit status is decided, through the teardown of
    the interpreter (over a second once torch is imported), so that a command that finished exits with its
    status whatever arrives then."""
    interrupts.raise_on_signals()
    return _main(None)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)  # the first word naming a command
    started = False  # whether the command's own work began (before it: parsing and imports, nothing written)
    try:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)  # progress lines reach logs and pipes at once
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if getattr(args, "preset", None):  # a preset replaces the defaults; explicit flags still win
            from svag.config import PRESETS

            args._command_parser.set_defaults(**PRESETS[args.preset])
            args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        if args.threads is not None and args.threads < 0:
            print(f"svag: error: --threads must be >= 0, got {args.threads}", file=sys.stderr)
            return 2
        if args.threads is not None and args.threads > THREADS_PER_CORE * usable_cores():  # 10^5 crashes PyTorch
            cores = usable_cores()
            print(f"svag: error: --threads must be at most {THREADS_PER_CORE * cores} ({THREADS_PER_CORE} per core, "
                  f"{cores} core(s) here), got {args.threads}", file=sys.stderr)  # fmt: skip
            return 2
        threads = resolve_threads(args.threads, args._default_threads, os.environ)
        if threads:
            import torch

            torch.set_num_threads(threads)
        started = True
        try:
            code = int(args._run(args) or 0)
        finally:
            interrupts.ignore_signals()  # the outcome is decided: a signal from now on changes nothing
    except KeyboardInterrupt as err:  # SIGINT/SIGTERM (svag.interrupts.Interrupted, the runner's RunInterrupted)
        interrupts.ignore_signals()
        if os.environ.get("SVAG_DEBUG"):
            raise
        code = _stopped(command, err, started, started and hasattr(args, "resume"))
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        if os.environ.get("SVAG_DEBUG") or not started:
            raise
        if _diverged(err):  # a run failed: not bad input
            print(f"svag {args.command}: {str(err).splitlines()[0]}", file=sys.stderr)
            code = 1
        else:
            print(f"svag {args.command}: error: {str(err).splitlines()[0]}", file=sys.stderr)
            code = 2
    finally:
        interrupts.ignore_signals()  # also after --help, a usage error or an early return
    if "svag.runner.distributed" in sys.modules:  # a torchrun worker ends here (see finish_worker)
        sys.modules["svag.runner.distributed"].finish_worker(code)
    return code


def _stopped(command: str | None, err: KeyboardInterrupt, started: bool, resumable: bool) -> int:
    """Print the one line of a command that SIGINT/SIGTERM stopped; its exit status, 128 + N."""
    signum = getattr(err, "signum", signal.SIGINT)  # a bare KeyboardInterrupt: Ctrl-C under a caller's handler
    line = f"svag{f' {command}' if command else ''}: stopped by {signal.Signals(signum).name}"
    if not started:
        line += " before it started"
    elif resumable:
        line += "; continue it with --resume (each run goes on from its last checkpoint)"
    print(line, file=sys.stderr)
    return 128 + signum  # the shell's convention for a process ended by a signal
