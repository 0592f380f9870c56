"""The arguments of the experiments beside the run config (the l ladder, batch sizes, seeds, the verdict's
margins and fit, τ, the window, threads, on/off switches), checked once for the commands and the Python API.

Each check takes the name its caller shows (``"fit_ls"`` from :mod:`svag.api`, ``"--fit-ls"`` from a
command), returns the value in its canonical form, and raises a one-line ``ValueError`` (``TypeError``
for a value of the wrong kind) that names the argument, the value and what is valid, so that a bad
argument is refused before any run starts or any folder is made. Light on purpose (no torch).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "batch_sizes",
    "choice",
    "count",
    "decide",
    "distinct",
    "fit_ls",
    "folder",
    "ladder",
    "margins",
    "positive",
    "sequential_budget",
    "switch",
    "window",
]


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _integer(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _shown(values: Sequence) -> str:
    return ", ".join(f"{v:g}" if _real(v) else repr(v) for v in values)


def distinct(values: list, shown: str) -> list:
    """``values`` if no value repeats; ``shown`` is how the caller wrote them (``'2,2'``, ``ls=(2, 2)``)."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be distinct, got {shown} ({_shown(repeated)} more than once)")
    return values


def switch(value: Any, name: str, *, allow_none: bool = False) -> bool | None:
    """An on/off argument (``resume``, ``progress``, ``plots``): ``True`` or ``False`` (or ``None``)."""
    if isinstance(value, bool) or (allow_none and value is None):
        return value
    valid = "True, False or None" if allow_none else "True or False"
    raise TypeError(f"{name} must be {valid}, got {value!r}")


def count(value: Any, name: str, minimum: int) -> int:
    """An integer ``>= minimum`` (seeds per point, threads, jobs)."""
    if not _integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive(value: Any, name: str) -> float:
    """A finite number ``> 0`` (the LSR threshold τ)."""
    if not (_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def window(value: Any, name: str) -> float:
    """The equilibrium window: a fraction in ``(0, 1]`` of the first constant-LR phase (its end)."""
    if not (_real(value) and 0 < value <= 1):
        raise ValueError(f"{name} must be a fraction in (0, 1] of the first constant-LR phase, got {value!r}")
    return float(value)


def choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (``fit``, ``rule``, ``ensemble``)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def folder(value: Any, name: str) -> str | os.PathLike:
    """An output folder: a path (``str`` or ``os.PathLike``) that is not an existing file."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(f"{name} must be a folder path (str or os.PathLike), got {value!r}")
    if os.path.exists(value) and not os.path.isdir(value):
        raise ValueError(f"{name} {os.fspath(value)} exists and is not a folder")
    return value


def _sequence(values: Any, name: str, example: str) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of numbers, e.g. {example}, got {values!r}")
    return list(values)


def ladder(values: Any, name: str) -> list[float]:
    """The values of ``l`` of a comparison: at least one, distinct, each a finite number ``>= 1``."""
    ls = _sequence(values, name, "(1, 2, 4, 8)")
    if not ls:
        raise ValueError(f"{name} must list at least one l >= 1, got none")
    if not all(_real(l) and math.isfinite(l) and l >= 1 for l in ls):
        raise ValueError(f"{name} must hold values of l, finite numbers >= 1, got {values!r}")
    return distinct([float(l) for l in ls], f"{name}={values!r}")


def batch_sizes(values: Any, name: str, *, allow_empty: bool = False) -> list[int]:
    """Batch sizes of a sweep: distinct integers ``>= 1`` (``allow_empty``: none is a valid answer)."""
    sizes = _sequence(values, name, "(64, 128, 256)")
    if not sizes and not allow_empty:
        raise ValueError(f"{name} needs at least one batch size, e.g. (32, 128, 512); got none")
    if not all(_integer(b) and b >= 1 for b in sizes):
        raise ValueError(f"batch sizes must be integers >= 1, got {name}={values!r}")
    return distinct([int(b) for b in sizes], f"{name}={values!r}")


def fit_ls(values: Any, ls: list[float], name: str, ls_name: str) -> list[float] | None:
    """The values of ``l`` the Richardson fit uses (``None``: all): at least 2 values of the ladder ``ls``."""
    if values is None:
        return None
    use = _sequence(values, name, "(1, 2)")
    if not all(_real(l) for l in use) or len(use) < 2 or any(l not in ls for l in use):
        raise ValueError(f"{name} must list at least 2 values of {ls_name} ({_shown(ls)}), got {_shown(use) or 'none'}")
    return [float(l) for l in use]


def margins(value: Any, name: str) -> dict[str, Any]:
    """The verdict's margins ``{metric: δ}``: ``δ`` a number (absolute) or ``'5%'`` (relative to SGD's
    value), checked by :func:`svag.analysis.equivalence.resolve_margin`; ``None``: the defaults."""
    from svag.analysis.equivalence import resolve_margin
    from svag.analysis.report import METRICS

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict {{metric: margin}}, e.g. {{'test_acc': 0.02}}, got {value!r}")
    for metric, margin in value.items():
        if metric not in METRICS:
            raise ValueError(f"{name}: expected a metric, one of {', '.join(METRICS)}, got {metric!r}")
        try:
            resolve_margin(metric, 1.0, margin)
        except ValueError as err:
            raise ValueError(f"{name}[{metric!r}]: {err}; e.g. 0.02 or '5%'") from None
    return dict(value)


def decide(value: Any, name: str, margins: Mapping[str, Any] | None = None) -> list[str] | None:
    """The metrics ``--until-decided`` must decide (``None``: every metric with a margin): distinct
    metric names, each with a margin (a default or one of ``margins``); a string ``'a,b'`` is split."""
    from svag.analysis.equivalence import DEFAULT_MARGINS
    from svag.analysis.report import METRICS

    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    listed = isinstance(names, Sequence) and not isinstance(names, (bytes, Mapping))
    if not listed or not all(isinstance(m, str) for m in names):
        raise TypeError(f"{name} must be a list of metric names, e.g. ['test_loss', 'weight_norm_sq'], got {value!r}")
    valid = [m for m in METRICS if m in DEFAULT_MARGINS or m in (margins or {})]
    wrong = [m for m in names if m not in valid]
    if not names or wrong:
        shown = repr(wrong[0]) if wrong else "none"
        raise ValueError(f"{name} must name metrics with a margin, some of {', '.join(valid)}; got {shown}")
    return distinct(list(names), f"{name}={value!r}")


def sequential_budget(first: Any, max_seeds: Any, max_cpu_minutes: Any, ls: list[float], names: Sequence[str]) -> tuple:
    """``(first, max_seeds, max_cpu_minutes)`` of a sequential comparison: a first look of at least 3 seeds
    per ``l``, ``max_seeds`` no smaller, a CPU budget ``> 0`` or ``None``, and a ladder of at least 3 values
    of ``l`` with ``l = 1`` (the guard of the extrapolation, :func:`svag.analysis.sequential.fit_order`).
    ``names``: how the caller shows (seeds, max_seeds, max_cpu_minutes, ls)."""
    first = count(first, names[0], 3)
    max_seeds = count(max_seeds, names[1], first)
    if max_cpu_minutes is not None:
        max_cpu_minutes = positive(max_cpu_minutes, names[2])
    if len(ls) < 3 or 1.0 not in ls:
        raise ValueError(
            f"the sequential verdict needs at least 3 values of l with l = 1 among them (to guard the extrapolation "
            f"as seeds grow), got {names[3]}={_shown(ls)}"
        )
    return first, max_seeds, max_cpu_minutes
