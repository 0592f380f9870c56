"""One driver per sweep folder (svag.sweepfolder.hold): a second ``svag compare --resume`` on a folder whose
first is still at work is refused in one line naming it, and the first finishes with its records intact.

The first driver trains one run of a teacher-student MLP (640 steps, a few seconds) in its own process
(:func:`helpers.start_until`); the second runs in this one.
"""

import importlib
import os
import random
import signal
import sys

from helpers import start_until
from svag.cli import main
from svag.runfolder import LOCK, RunFolder
from svag.sweepfolder import compare_run

ARGS = ["--ls", "1", "--seeds", "1", "--epochs", "40", "--eval-every", "1", "--checkpoint-every", "1",
        "--data", "teacher-student", "--n-train", "256", "--n-test", "64", "--batch-size", "16", "--lr", "0.1",
        "--device", "cpu", "--no-progress"]  # fmt: skip


def test_a_second_driver_of_a_live_sweep_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    again = ["compare", "--out", str(out), "--resume", *ARGS]
    for module in ("svag.commands.compare", "svag.analysis.report"):  # what the command loads before its lock
        importlib.import_module(module)  # loaded now, so that the race below is one of locks, not of imports
    run = out / compare_run(1.0, 0)
    first = start_until([sys.executable, "-m", "svag", "compare", "--out", str(out), *ARGS], run, 2, random.Random(0))
    try:
        code = main(again)
        printed = capsys.readouterr()
        assert code == 2
        assert printed.err.count("\n") == 1
        assert printed.err.startswith(f"svag compare: error: the sweep folder {out} is in use: another process ")
        assert f"(pid {first.pid} on " in printed.err and "svag compare --out" in printed.err
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    steps = [r["step"] for r in RunFolder(run).records()]
    assert len(steps) == 41 and steps == sorted(set(steps))
    assert not (out / LOCK).exists() and not (run / LOCK).exists()
