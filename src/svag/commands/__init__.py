"""The ``svag`` sub-commands, one module each (``add_arguments`` and ``run``), and the flag
parsers they share."""

from __future__ import annotations

import argparse


def _distinct(values: list, text: str) -> list:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        shown = ", ".join(f"{v:g}" for v in repeated)
        raise argparse.ArgumentTypeError(f"values must be distinct, got {text!r} ({shown} more than once)")
    return values


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
