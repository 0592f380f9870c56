"""Signals during a run: SIGINT/SIGTERM become a request the loop honours at its next consistent point."""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["RunInterrupted", "stop_on_signals"]


class RunInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM: the run stopped after a checkpoint; ``--resume`` continues it exactly."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    def __reduce__(self):  # pickled across worker processes with its signal number
        return type(self), (self.signum,)


@contextlib.contextmanager
def stop_on_signals():
    """Turn the first SIGINT/SIGTERM into a request (``flag[0] = signum``) that the loop honours
    at its next consistent point; a second signal raises at once. Main thread only."""
    flag = [0]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
