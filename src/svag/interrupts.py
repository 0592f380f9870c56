"""SIGINT and SIGTERM outside a run's loop: what a command does when it is stopped, from its first line to its exit.

Inside the training loop :mod:`svag.runner.signals` turns a signal into a request that the loop honours
at its next consistent point (finish the step, checkpoint, mark the folder ``interrupted``). Everywhere
else (importing torch, parsing, setting a run up, between a sweep's jobs, writing summaries and figures)
:func:`raise_on_signals` makes both raise :class:`Interrupted`, a ``KeyboardInterrupt`` that carries the
signal's number: it unwinds through ``finally`` clauses (an atomic write removes its temporary file), a
sweep marks its unfinished runs ``interrupted`` on the way (:func:`svag.experiments.executors.run_jobs`),
and the command line prints one line and exits 128 + N. Once a command's exit status is decided,
:func:`ignore_signals` lets it exit with that status whatever arrives (the teardown of an interpreter
that imported torch takes a second or more). A SIGKILL cannot be caught: every file is then as the
atomic writes of :mod:`svag.records` leave them, which ``--resume`` continues.

A signal that the process was started with ignored (``cmd &`` in a script ignores SIGINT; a sweep's
worker processes ignore it, see :mod:`svag.experiments.executors.local`) stays ignored, here and in the
runner's loop. Handlers are installed from the main thread only; elsewhere these functions do nothing.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["STOP_SIGNALS", "Interrupted", "ignore_signals", "raise_on_signals", "restore"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and `kill`'s default (schedulers and Ray stop with it)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the command (``signum``); the shell's convention is exit status 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    def __reduce__(self):  # pickled across worker processes with its signal number
        return type(self), (self.signum,)


def _raise(signum, frame):
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def raise_on_signals() -> dict:
    """From now on SIGINT and SIGTERM raise :class:`Interrupted` (those not ignored); the handlers they
    had, for :func:`restore`."""
    if not _main_thread():
        return {}
    return {s: signal.signal(s, _raise) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}


def ignore_signals() -> None:
    """From now on SIGINT and SIGTERM are ignored: the command's outcome is decided."""
    if _main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def restore(previous: dict) -> None:
    """Put back the handlers :func:`raise_on_signals` returned (a caller's own, when a command runs in its process)."""
    if _main_thread():
        for s, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(s, handler)
