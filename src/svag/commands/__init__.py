"""The ``svag`` sub-commands, one module each (``add_arguments`` and ``run``), and the flag
parsers they share."""

from __future__ import annotations

import argparse

from svag.experiments import arguments


def _distinct(values: list, text: str) -> list:
    try:
        return arguments.distinct(values, repr(text))  # the Python API's check (svag.experiments.arguments)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def batch_sizes(text: str) -> list[int]:
    """``--verify`` / ``--batch-sizes``: distinct comma-separated integers >= 1 (empty: none)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return _distinct(values, text)


def floats(text: str) -> list[float]:
    """Distinct comma-separated numbers, e.g. ``--ls 1,2,4``."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return _distinct(values, text)


def folder(text: str) -> str:
    """``--out`` of the commands that write a folder: a path; an empty one (which every tool would take for
    the current folder, filling it with run files) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder path, got {text!r} (for the current folder write '.')")
    return text
