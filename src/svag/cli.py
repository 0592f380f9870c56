"""The ``svag`` command line: ``svag COMMAND --help`` for each command.

Each command lives in ``svag/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches. Errors a user can cause (bad values,
missing files, a diverged run) print one line and exit with status 2; set ``SVAG_DEBUG=1``
for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> (module under svag.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: SGD vs SVAG on MNIST-1D, 3 seeds, figure and table"),
    "train": ("train", "one SGD or SVAG run into an output folder"),
    "compare": ("compare", "SGD and SVAG for several l and seeds into one folder of runs"),
    "scale": ("scale", "a batch-size sweep under the linear (SGD) or square-root (Adam) scaling rule"),
    "plot": ("plot", "figure and summary table from a folder of runs"),
    "lsr": ("lsr", "predict where the linear scaling rule fails from one baseline run (G/N test)"),
    "verify": ("verify", "weak error of SVAG vs the exact SDE on problems with closed forms"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to look, not the whole usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (all are listed in ``svag --help``)."""
    parser = _Parser(
        prog="svag",
        description=("Simulate the SDE of SGD with SVAG and test the linear scaling rule (Li, Malladi & Arora 2021)."),
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"svag {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="PyTorch intra-op CPU threads (0: PyTorch's default, one per core); use 1 on a busy machine, "
        "where threads waiting for each other can slow small models 10-40x",
    )
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
        p.set_defaults(_run=mod.run)
        parser.set_defaults(_command_parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines reach logs and pipes at once
    command = next((a for a in argv if a in COMMANDS), None)  # the first word naming a command
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):  # a preset replaces the defaults; explicit flags still win
        from .config import PRESETS

        args._command_parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.threads < 0:
        print(f"svag: error: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        code = int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyboardInterrupt) as err:
        if os.environ.get("SVAG_DEBUG"):
            raise
        signum = getattr(err, "signum", None)  # svag.runner.RunInterrupted: checkpointed, resumable
        if signum:
            print(f"svag {args.command}: {err}; the run was checkpointed: continue it with --resume", file=sys.stderr)
            code = 128 + signum  # the shell's convention for a process ended by a signal
        else:
            message = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err).splitlines()[0]
            print(f"svag {args.command}: error: {message}", file=sys.stderr)
            code = 130 if isinstance(err, KeyboardInterrupt) else 2
    if "svag.distributed" in sys.modules:  # a torchrun worker ends here (see finish_worker)
        sys.modules["svag.distributed"].finish_worker(code)
    return code
