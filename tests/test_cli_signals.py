"""SIGINT and SIGTERM outside a run's loop (svag.interrupts): in the imports, between a sweep's runs, in its
worker processes and after the last file; and ``--resume`` of what they leave.

Each command runs in its own process as ``python -m svag`` does (``runpy``), after a few lines of test code
that send the signal at a known point of it (the start of ``import torch``, the second run of a sweep, the
write of the final status, the interpreter's teardown): the signal lands there every time, not at a
random moment. Only the test with worker processes signals from outside, once both runs are under way.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import count_lines, strip_wall_time
from svag import interrupts
from svag import sweepfolder as sf
from svag.cli import main
from svag.records import read_json, read_jsonl
from svag.runfolder import RunFolder

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--device", "cpu",
        "--no-progress"]  # fmt: skip
COMPARE = ["--ls", "1,2", "--seeds", "1", "--ensemble", "off", "--epochs", "1", "--eval-every", "0.5", *TINY]
DEADLINE = 300  # seconds any one command may take on a loaded machine
RESUME_LINE = "continue it with --resume"

# `python -m svag ARGS` after HOOK (runpy runs svag/__main__.py as `-m` does: the same entry point)
PROGRAM = """
import os, runpy, signal, sys
{hook}
sys.argv = ["svag", *{args!r}]
runpy.run_module("svag", run_name="__main__", alter_sys=True)
"""

# the signal lands in the imports: sent when the import of `module` begins
AT_IMPORT = """
class SignalAtImport:
    sent = False

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and not self.sent:
            self.sent = True
            os.kill(os.getpid(), {sig})
        return None


sys.meta_path.insert(0, SignalAtImport())
"""

# the signal lands when the sweep's second run is set up: its folder says `running`, its loop has not begun
BEFORE_SECOND_LOOP = """
from svag.runner.loop import Group

_train, _calls = Group.train, []


def train(self):
    _calls.append(self)
    if len(_calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return _train(self)


Group.train = train
"""

# the signal lands between the sweep's runs: the first is completed, the second not begun
BETWEEN_RUNS = """
import svag.experiments.executors.local as local

_run_job, _calls = local.run_job, []


def run_job(*args):
    _calls.append(args)
    if len(_calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return _run_job(*args)


local.run_job = run_job
"""

# the signal lands right after the run's final status.json (`completed`) is written
AFTER_COMPLETED = """
from svag.runfolder import RunFolder

_write = RunFolder.write_status


def write_status(self, status, **fields):
    _write(self, status, **fields)
    if status == "completed":
        os.kill(os.getpid(), signal.SIGTERM)


RunFolder.write_status = write_status
"""

# the signal lands in the interpreter's teardown, after the command returned its status
AT_EXIT = """
import atexit

atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))
"""


def svag(args: list, hook: str = "", **popen) -> subprocess.Popen:
    """Start ``python -m svag ARGS`` with ``hook`` run first (in its own session: a signal the test sends
    reaches it alone)."""
    code = PROGRAM.format(hook=textwrap.dedent(hook), args=[str(a) for a in args])
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)  # fmt: skip


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Wait (with a deadline) for ``proc``; its exit status, stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out, err


def run_svag(args: list, hook: str = "") -> tuple[int, str, str]:
    return finish(svag(args, hook))


def same_records(a: Path, b: Path, names: list[str]) -> None:
    """Every run ``names`` of sweep folder ``b`` holds the records of ``a``'s, bit for bit but ``wall_time``."""
    for name in names:
        want = strip_wall_time(read_jsonl(a / name / "metrics.jsonl"))
        assert want and strip_wall_time(read_jsonl(b / name / "metrics.jsonl")) == want, name


def status(folder: Path) -> str:
    return RunFolder(folder).status().status


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted comparison (l = 1 and 2, one seed each, one after the other)."""
    out = tmp_path_factory.mktemp("signals") / "reference"
    code, _, err = run_svag(["compare", "--out", out, *COMPARE])
    assert code == 0, err
    return out


# -- in the imports ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize(
    ("module", "said"),
    [("svag.commands.train", "before it started"), ("torch", RESUME_LINE)],
    ids=["parsing", "torch"],
)
def test_a_signal_in_the_imports_ends_with_one_line_and_128_plus_n(tmp_path, sig, module, said):
    """Ctrl-C (or SIGTERM) while the command's module is imported (to parse its flags) or torch (for the run):
    exit 130 (143), one line naming the signal, no traceback, nothing written."""
    code, _, err = run_svag(["train", "--out", tmp_path / "run", "--epochs", "1", *TINY],
                            AT_IMPORT.format(module=module, sig=int(sig)))  # fmt: skip
    assert code == 128 + sig, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"svag train: stopped by {signal.Signals(sig).name}" in err and said in err, err
    assert not (tmp_path / "run" / "status.json").exists()


# -- between and inside a sweep's runs --------------------------------------------------------------
@pytest.mark.parametrize("where", ["between runs", "before the second loop"])
def test_a_signal_between_a_sweeps_runs_marks_them_and_resume_is_bit_identical(tmp_path, reference, where):
    """SIGTERM between the runs of `svag compare` (the first completed, the second not begun) or once the
    second is set up (its folder `running`, its loop not begun): exit 143 with one line naming --resume, no
    run left `running`; `--resume` then ends with the records of the uninterrupted comparison, bit for bit,
    and exits 0 even when SIGTERM comes again in its teardown."""
    out = tmp_path / "cmp"
    hook = BETWEEN_RUNS if where == "between runs" else BEFORE_SECOND_LOOP
    code, _, err = run_svag(["compare", "--out", out, *COMPARE], hook)
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and RESUME_LINE in err and len(err.strip().splitlines()) == 1, err
    assert status(out / "l1_seed0") == "completed"
    second = "not started" if where == "between runs" else "interrupted"
    assert status(out / "l2_seed0") == second
    code, _, err = run_svag(["compare", "--out", out, *COMPARE, "--resume"], AT_EXIT)
    assert code == 0, err
    assert status(out / "l1_seed0") == status(out / "l2_seed0") == "completed"
    same_records(reference, out, ["l1_seed0", "l2_seed0"])


def test_sigterm_to_a_sweeps_driver_stops_its_workers_and_resume_is_bit_identical(tmp_path):
    """`svag compare --jobs 2`: SIGTERM to the driver once both worker processes are in their runs' loops.
    The driver tells its workers, each run checkpoints and says `interrupted`, and the driver exits 143;
    `--resume` ends with the records of the same comparison uninterrupted, bit for bit. Each run is 40
    epochs (about 2 s of steps) so that neither ends between the test seeing both under way and the signal."""
    args = ["--ls", "1", "--seeds", "2", "--ensemble", "off", "--jobs", "2", "--epochs", "40", "--eval-every", "1",
            *TINY]  # fmt: skip
    names = ["l1_seed0", "l1_seed1"]
    assert main(["compare", "--out", str(tmp_path / "reference"), *args]) == 0  # the runs train in worker processes
    out = tmp_path / "cmp"
    proc = svag(["compare", "--out", out, *args])
    deadline = time.monotonic() + DEADLINE
    while proc.poll() is None and min(count_lines(out / n / "metrics.jsonl") for n in names) < 2:
        assert time.monotonic() < deadline, "the runs made no progress"
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep ended before the signal"
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and RESUME_LINE in err and len(err.strip().splitlines()) == 1, err
    assert [status(out / n) for n in names] == ["interrupted"] * 2, [read_json(out / n / "status.json") for n in names]
    code, _, err = run_svag(["compare", "--out", out, *args, "--resume"])
    assert code == 0, err
    same_records(tmp_path / "reference", out, names)


# -- after the last file ------------------------------------------------------------------------------
@pytest.mark.parametrize("hook", [AFTER_COMPLETED, AT_EXIT], ids=["after completed", "in the teardown"])
def test_a_signal_after_the_last_file_changes_nothing(tmp_path, hook):
    """SIGTERM once `svag train` wrote its final status (`completed`), or in the interpreter's teardown (a
    second or more once torch is loaded): the command finished, and exits 0 as it would have."""
    code, out, err = run_svag(["train", "--out", tmp_path / "run", "--epochs", "1", *TINY], hook)
    assert code == 0, err
    assert out.startswith("completed:") and status(tmp_path / "run") == "completed"


# -- what --resume cleans ---------------------------------------------------------------------------
def test_resume_removes_the_sweeps_own_stale_temporary_files(tmp_path, reference, capsys):
    """A kill in the middle of writing the verdict figure or the summary leaves ``.NAME.XXXXXXXX.tmp`` in the
    sweep folder; `--resume` removes them (the runs are completed: nothing trains) and leaves a user's own
    hidden file alone."""
    out = tmp_path / "cmp"
    shutil.copytree(reference, out)
    ours = [out / f".{sf.VERDICTS_PNG}.x1y2z3w4.tmp", out / f".{sf.SUMMARY_MD}.abcd_123.tmp"]
    theirs = out / ".notes.txt.abcd1234.tmp"
    for path in [*ours, theirs]:
        path.write_bytes(b"partial")
    assert main(["compare", "--out", str(out), *COMPARE, "--resume"]) == 0
    assert not any(p.exists() for p in ours) and theirs.exists()
    assert "2 run(s) already completed" in capsys.readouterr().out
    assert sf.remove_temporaries(out) == [] and sf.remove_temporaries(tmp_path / "absent") == []


def test_a_scale_sweeps_resume_removes_its_stale_temporary_files(tmp_path):
    """The same for `svag scale` (its JSON and figure); the other sweeps share the call (lsr, demo)."""
    out = tmp_path / "scale"
    args = ["scale", "--out", str(out), "--batch-sizes", "32", "--seeds", "1", "--epochs", "0.5",
            "--eval-every", "0.25", *TINY]  # fmt: skip
    assert main(args) == 0
    ours = [out / f".{sf.SCALE_PNG}.q8w7e6r5.tmp", out / f".{sf.SCALE_JSON}.zz_99abc.tmp"]
    for path in ours:
        path.write_bytes(b"partial")
    assert main([*args, "--resume"]) == 0
    assert not any(p.exists() for p in ours)


# -- the pieces ---------------------------------------------------------------------------------------
def test_main_gives_the_callers_handlers_back():
    """A command run in the caller's process (`main([...])`) leaves SIGINT and SIGTERM as it found them;
    one the caller ignores stays ignored while it runs."""
    mine = signal.getsignal(signal.SIGINT)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with pytest.raises(SystemExit):
            main(["--help"])
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        previous = interrupts.raise_on_signals()
        assert signal.SIGTERM not in previous and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        interrupts.restore(previous)
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGTERM, old_term)


def test_interrupted_keeps_its_signal_across_processes():
    import pickle

    from svag.runner import RunInterrupted

    for err in (interrupts.Interrupted(signal.SIGTERM), RunInterrupted(signal.SIGINT)):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and back.signum == err.signum and str(back) == str(err)
        assert isinstance(back, KeyboardInterrupt)


def test_mark_interrupted_turns_running_only(tmp_path):
    """`running` becomes `interrupted` with the rest of the status kept; other statuses and absent folders
    are left alone (and no folder is made)."""
    folder = RunFolder(tmp_path / "run")
    assert not folder.mark_interrupted() and not folder.path.exists()
    folder.path.mkdir()
    folder.write_status("running", step=12, sde_time=0.5, records=3)
    assert folder.mark_interrupted()
    assert read_json(folder.status_path) == {"status": "interrupted", "step": 12, "sde_time": 0.5, "records": 3}
    assert not folder.mark_interrupted()
    folder.write_status("completed", step=40)
    assert not folder.mark_interrupted() and status(folder.path) == "completed"
    assert sorted(os.listdir(folder.path)) == ["status.json"]
