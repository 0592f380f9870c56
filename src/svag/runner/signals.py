"""Signals during a run: SIGINT/SIGTERM become a request the loop honours at its next consistent point.

Outside the loop (setting a run up, between a sweep's jobs, the command's imports and files) they raise at
once: :mod:`svag.interrupts`, whose :class:`~svag.interrupts.Interrupted` a :class:`RunInterrupted` is."""

from __future__ import annotations

import contextlib
import signal
import threading

from svag.interrupts import STOP_SIGNALS, Interrupted

__all__ = ["RunInterrupted", "stop_on_signals"]


class RunInterrupted(Interrupted):
    """SIGINT/SIGTERM: the run stopped after a checkpoint; ``--resume`` continues it exactly."""


@contextlib.contextmanager
def stop_on_signals():
    """Turn the first SIGINT/SIGTERM into a request (``flag[0] = signum``) that the loop honours
    at its next consistent point; a second signal raises at once (:class:`~svag.interrupts.Interrupted`,
    as a kill would leave the folder: at its last checkpoint). Main thread only; a signal the process
    ignores (a sweep's worker ignores SIGINT, which its driver passes on as SIGTERM) stays ignored."""
    flag = [0]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag[0]:
            raise Interrupted(signum)
        flag[0] = signum

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
