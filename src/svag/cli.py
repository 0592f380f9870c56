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
import sys

# command name -> (module under svag.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: SGD vs SVAG on MNIST-1D, 5 seeds, figure, table and verdict"),
    "train": ("train", "one SGD or SVAG run into an output folder"),
    "compare": ("compare", "SGD and SVAG for several l and seeds into one folder of runs"),
    "scale": ("scale", "a batch-size sweep under the linear (SGD) or square-root (Adam) scaling rule"),
    "plot": ("plot", "figure and summary table from a folder of runs"),
    "lsr": ("lsr", "predict where the linear scaling rule fails from one baseline run (G/N test)"),
    "verify": ("verify", "weak error of SVAG vs the exact SDE on problems with closed forms"),
}


EXIT_CODES = (
    "exit codes: 0 everything asked for was produced; 1 a run failed or diverged (the others are kept); "
    "2 bad input, refused before any work starts; 128+N stopped by signal N (130: Ctrl-C), the run "
    "checkpointed: continue it with --resume"
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
        "takes a core), else PyTorch's; OMP_NUM_THREADS, if set, replaces the command's own",
    )


def resolve_threads(given: int | None, command_default: int, env) -> int:
    """Intra-op threads to set, 0 for PyTorch's choice: ``--threads`` if given, else the command's
    own default unless the user set ``OMP_NUM_THREADS`` (which PyTorch already follows).

    PyTorch's CPU threads wait for each other at every operation: when another process holds one
    of the cores, a small model with 2 threads on 2 cores runs 10-40x slower than with 1."""
    if given is not None:
        return given
    return 0 if env.get("OMP_NUM_THREADS") else command_default


def _diverged(err: BaseException) -> bool:
    """Whether ``err`` is :class:`svag.runner.RunDiverged` (without importing the runner, and torch)."""
    runner = sys.modules.get("svag.runner")
    return runner is not None and isinstance(err, runner.RunDiverged)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines reach logs and pipes at once
    command = next((a for a in argv if a in COMMANDS), None)  # the first word naming a command
    parser = build_parser(command if command in COMMANDS else None)
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
    threads = resolve_threads(args.threads, args._default_threads, os.environ)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        code = int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyboardInterrupt) as err:
        if os.environ.get("SVAG_DEBUG"):
            raise
        signum = getattr(err, "signum", None)  # svag.runner.RunInterrupted: checkpointed, resumable
        if signum:
            print(f"svag {args.command}: {err}; the run was checkpointed: continue it with --resume", file=sys.stderr)
            code = 128 + signum  # the shell's convention for a process ended by a signal
        elif _diverged(err):  # a run failed: not bad input
            print(f"svag {args.command}: {str(err).splitlines()[0]}", file=sys.stderr)
            code = 1
        else:
            message = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err).splitlines()[0]
            print(f"svag {args.command}: error: {message}", file=sys.stderr)
            code = 130 if isinstance(err, KeyboardInterrupt) else 2
    if "svag.runner.distributed" in sys.modules:  # a torchrun worker ends here (see finish_worker)
        sys.modules["svag.runner.distributed"].finish_worker(code)
    return code
