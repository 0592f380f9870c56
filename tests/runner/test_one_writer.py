"""One writer per run folder (svag.runfolder.hold_writer, taken by the runner for a run's whole life),
and folders whose records repeat a time refused by every reader with exit status 2.

Runs are teacher-student MLPs of a few hundred steps; the commands that must be live while a second
one tries the folder run in their own process (:func:`helpers.start_until`), the second in this one.
"""

import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from helpers import start_until, train_cmd
from svag import runner
from svag.cli import main
from svag.commands.compare import print_verdict
from svag.config import RunConfig
from svag.runfolder import LOCK, FolderInUseError, RepeatedRecordsError, RunFolder
from svag.sweepfolder import hold

FAST = RunConfig(data="teacher-student", n_train=256, n_test=64, lr=0.1, batch_size=16, epochs=1.0, eval_every=0.5,
                 device="cpu")  # fmt: skip
LONG = replace(FAST, epochs=40.0, eval_every=1.0, checkpoint_every=1.0)  # 640 steps: a few seconds in a process
TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "64", "--batch-size", "16", "--lr", "0.1",
        "--device", "cpu", "--no-progress"]  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s session if it still runs (a failed test leaves no process behind)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_second_train_on_a_live_folder_is_refused_and_the_first_finishes_intact(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--resume", "--epochs", "40", "--eval-every", "1", "--checkpoint-every", "1",
            *TINY]  # fmt: skip
    with RunFolder(out).hold():  # refused by this process too; and the command's imports load before the race
        assert main(argv) == 2
    capsys.readouterr()
    first = start_until(train_cmd(out, LONG), out, 2, random.Random(0))
    try:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"svag train: error: the run folder {out} is in use: ")
        assert f"(pid {first.pid} on " in err and "svag train --out" in err  # the holder, from its lock file
        assert first.wait(timeout=300) == 0
    finally:
        _stop(first)
    rows = RunFolder(out).records()  # the reader's check of the time order passes
    steps = [r["step"] for r in rows]
    assert len(rows) == 41 and len(set(steps)) == len(steps) and steps == sorted(steps)
    assert RunFolder(out).status().status == "completed"
    assert not (out / LOCK).exists()  # the holder removed it as it let go


def test_the_lock_of_a_killed_writer_is_free(tmp_path):
    """SIGKILL leaves ``.lock`` behind, naming the dead process; the kernel dropped its lock."""
    out = tmp_path / "run"
    proc = start_until(train_cmd(out, LONG), out, 1, random.Random(1))
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert json.loads((out / LOCK).read_text())["pid"] == proc.pid
    assert LOCK not in RunFolder(out).contents()
    with RunFolder(out).hold() as held:
        assert held and json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()


HOLD_AND_FORK = """
import multiprocessing, sys, time
from svag.runfolder import RunFolder
with RunFolder(sys.argv[1]).hold():
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    child.start()  # what a DataLoader worker is
    print(child.pid, flush=True)
    time.sleep(60)
"""


def test_a_forked_child_does_not_keep_its_parents_lock(tmp_path):
    """A writer killed alone (its DataLoader workers live on a few seconds) leaves its folder free at once."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(out)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        child = int(proc.stdout.readline())
        with pytest.raises(FolderInUseError, match=f"pid {proc.pid} on "):
            with RunFolder(out).hold():
                pass
        os.kill(proc.pid, signal.SIGKILL)  # the parent only
        proc.wait(timeout=30)
        os.kill(child, 0)  # the child still runs
        with RunFolder(out).hold() as held:
            assert held
    finally:
        with contextlib.suppress(ProcessLookupError):  # the child too (the parent's session)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()


def test_the_lock_holds_against_a_second_open_file_in_this_process(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.hold() as held:
        assert held and folder.contents() == []  # the lock file is not content: the folder is still fresh
        fd = os.open(folder.path / LOCK, os.O_RDONLY)  # a second open file description
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        with pytest.raises(FolderInUseError, match=rf"run folder .*run is in use: .*\(pid {os.getpid()} on "):
            with folder.hold():
                pass
    with folder.hold():  # let go: free again
        pass
    with hold(tmp_path), hold(tmp_path):  # a sweep's driver inside its command: reentrant
        with pytest.raises(FolderInUseError, match=f"the run folder {tmp_path} is in use"):  # one lock per folder
            with RunFolder(tmp_path).hold():
                pass


def test_a_stale_lock_file_does_not_make_a_folder_taken(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text('{"pid": 1, "host": "gone", "since": "then", "command": "svag train"}\n')
    assert runner.run(FAST, out, progress=False).status == "completed"  # empty but for the stale lock: fresh


def test_a_driver_does_not_receive_results_into_a_folder_in_use(tmp_path):
    """Ray without a shared folder: the driver writes a run's files only while holding the folder."""
    runner.run(FAST, tmp_path / "worker", progress=False)
    files = RunFolder(tmp_path / "worker").result_files()
    dest = RunFolder(tmp_path / "dest")
    with dest.hold():
        with pytest.raises(FolderInUseError, match=f"the run folder {dest.path} is in use"):
            dest.receive(files, "node:/worker")
        assert dest.contents() == []
    dest.receive(files, "node:/worker")
    assert dest.records() == RunFolder(tmp_path / "worker").records() and not (dest.path / LOCK).exists()


def _repeat_a_record(path, k: int) -> int:
    """Append a copy of record ``k`` of ``path`` (what two writers left); its step."""
    lines = path.read_text().splitlines()
    with open(path, "a") as fh:
        fh.write(lines[k] + "\n")
    return json.loads(lines[k])["step"]


def test_records_that_repeat_a_step_are_an_error_everywhere(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), "--ls", "1,2", "--seeds", "2", "--epochs", "1", "--eval-every", "0.5", *TINY]
    assert main(argv) == 0
    metrics = out / "l2_seed1" / "metrics.jsonl"
    step = _repeat_a_record(metrics, 1)
    capsys.readouterr()
    said = rf"{metrics}: record 4 \(sde_time=\S+\) repeats step {step} of record 2, as two processes writing one run"
    with pytest.raises(RepeatedRecordsError, match=said):
        RunFolder(out / "l2_seed1").records()
    with pytest.raises(RepeatedRecordsError, match=said):  # not a "no verdict" line with exit status 0
        print_verdict(out, None, {})
    for command in ([*argv, "--resume"], ["plot", str(out)],
                    ["train", "--out", str(out / "l2_seed1"), "--resume", "--l", "2", "--seed", "1", "--epochs", "1",
                     "--eval-every", "0.5", *TINY]):  # fmt: skip
        assert main(command) == 2, command[0]
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"svag {command[0]}: error: "), err
        assert f"repeats step {step} of record 2" in err and str(metrics) in err


def test_the_train_command_line_holder_is_named_in_a_subprocess(tmp_path):
    """The refusal as a user sees it: ``python -m svag train`` exits 2 with one line on stderr."""
    out = tmp_path / "run"
    with RunFolder(out).hold():
        done = subprocess.run(train_cmd(out, FAST, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert f"svag train: error: the run folder {out} is in use: another process writes it (pid {os.getpid()} on " in (
        done.stderr
    )
    assert not RunFolder(out).exists()  # refused before anything was written
