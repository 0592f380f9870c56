"""Progress of a long loop on stderr: a tqdm bar on a terminal or in a notebook, plain lines elsewhere.

A bar redraws itself with ``\\r``, which a log file or a pipe keeps as one giant line (or as
many blank ones). When stderr is not a terminal, :func:`progress_bar` gives a
:class:`LineProgress` instead: one plain line each time another tenth of the total is done, and
at least one every ``every`` seconds, e.g.::

    l=2 1 seed: 40% t=1.28/3.2 loss=0.5312 elapsed 12s eta 18s

Both offer the part of tqdm's interface the loops use: ``n``, ``update``, ``set_postfix``,
``write`` and ``close``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LineProgress", "notice", "progress_bar"]


def _duration(seconds: float) -> str:
    """``12s``, ``3m05s``, ``2h07m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LineProgress:
    """Progress as plain lines: one per tenth of ``total`` crossed, at least one per ``every``
    seconds while it moves; nothing with ``\\r``. ``value`` formats the position (``{n}``,
    ``{total}``) after the percentage, e.g. ``"t={n:.3g}/{total:.3g}"``; ``None`` shows none."""

    def __init__(self, total: float, *, initial: float = 0.0, desc: str = "", value: str | None = None,
                 every: float = 60.0, file: TextIO | None = None, clock=time.monotonic) -> None:  # fmt: skip
        self.total, self.n, self.desc, self.value, self.every = float(total), float(initial), desc, value, every
        self.file, self.clock = file, clock
        self.postfix: dict[str, Any] = {}
        self.start = self.last_line = clock()
        self.initial = self.n
        self.shown = self._tenth()  # the tenth last shown: the start is not a line of its own

    def _tenth(self) -> int:
        return int(10 * self.n / self.total + 1e-9) if self.total > 0 else 10

    def update(self, delta: float = 1.0) -> None:
        self.n += delta
        now = self.clock()
        if self._tenth() > self.shown or (now - self.last_line >= self.every and delta > 0):
            self._line(now)

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = values

    def write(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass

    def _line(self, now: float) -> None:
        self.shown, self.last_line = self._tenth(), now
        done = self.n / self.total if self.total > 0 else 1.0
        parts = [f"{self.desc}: {100 * min(done, 1.0):3.0f}%"]
        if self.value:
            parts.append(self.value.format(n=self.n, total=self.total))
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        elapsed = now - self.start
        parts.append(f"elapsed {_duration(elapsed)}")
        moved = self.n - self.initial
        if 0 < moved and done < 0.995:  # not at 100 % (up to the rounding of a float clock)
            parts.append(f"eta {_duration(elapsed * (self.total - self.n) / moved)}")
        print(" ".join(parts), file=self.file or sys.stderr, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: float, *, initial: float = 0.0, desc: str = "", value: str | None = None, leave: bool = True):
    """A tqdm bar over ``total`` on stderr when it is a terminal or in a notebook, else a
    :class:`LineProgress` with the same ``desc`` and ``value`` (see there)."""
    import tqdm.autonotebook
    import tqdm.std

    if not _is_terminal(sys.stderr) and tqdm.autonotebook.tqdm is tqdm.std.tqdm:  # a log, a pipe, not Jupyter
        return LineProgress(total, initial=initial, desc=desc, value=value)
    from tqdm.auto import tqdm

    shown = f" {value}" if value else ""
    bar_format = "{desc}: {percentage:3.0f}%|{bar}|" + shown + " [{elapsed}<{remaining}{postfix}]"
    return tqdm(total=total, initial=initial, desc=desc, leave=leave, bar_format=bar_format)


def notice(message: str) -> None:
    """One line on stderr about what the runner chose for a folder (rank 0 only)."""
    print(f"svag: {message}", file=sys.stderr, flush=True)
