"""The ``svag`` sub-commands, one module each (``add_arguments`` and ``run``), and the flag
parsers they share."""

from __future__ import annotations

import argparse


def batch_sizes(text: str) -> list[int]:
    """``--verify`` / ``--batch-sizes``: comma-separated integers >= 1 (empty: none)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be integers >= 1, got {text!r}")
    return values


def floats(text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``--ls 1,2,4``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
