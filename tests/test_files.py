"""Folders and files as a user meets them: leftovers of killed writes, a deleted checkpoint, folders
that cannot be written, file modes under the umask, progress in a log. Whole file: about 30 s.

The permission tests run the CLI as the user ``nobody`` (``setpriv``; skipped unless the tests run
as root with setpriv installed): root may write anywhere, so only another user meets a refusal.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import FIXTURES, strip_wall_time
from svag import runner
from svag import sweepfolder as sf
from svag.cli import main
from svag.config import RunConfig
from svag.records import read_json, write_json
from svag.runfolder import RunFolder
from svag.runner.progress import LineProgress

FAST = RunConfig(
    data="teacher-student", n_train=256, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=1.0,
    eval_every=0.25, checkpoint_every=0.5, device="cpu",
)  # fmt: skip
FLAGS = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--lr", "0.2", "--batch-size", "16",
         "--epochs", "1", "--eval-every", "0.25", "--checkpoint-every", "0.5", "--device", "cpu"]  # fmt: skip
V1 = FIXTURES / "release_0_1_0"


# -- item 2: temporary files left by a kill ---------------------------------------------------------


def test_a_folder_holding_only_a_partial_config_starts_afresh(tmp_path, capsys):
    """Killed while writing its very first config.json: the folder holds one hidden temporary file.
    A new run starts in it; --resume starts afresh too, with a one-line notice."""
    for resume in (False, True):
        out = tmp_path / f"resume{resume}"
        out.mkdir()
        (out / ".config.json.abc.tmp").write_text('{"schema_ver')
        assert runner.run(FAST, out, resume=resume, progress=False).status == "completed"
        assert not (out / ".config.json.abc.tmp").exists()
        err = capsys.readouterr().err.strip().splitlines()
        if resume:
            assert len(err) == 1 and f"{out} holds no run yet, only a partial config.json" in err[0], err
        else:
            assert err == []


def test_resume_removes_a_leftover_checkpoint_temporary(tmp_path):
    folder = tmp_path / "l2_seed0"
    shutil.copytree(V1 / "killed" / "l2_seed0", folder)  # stopped after its first checkpoint
    (folder / ".checkpoint.pt.x.tmp").write_bytes(b"half a checkpoint")
    cfg = RunConfig.from_dict(read_json(folder / "config.json")["config"])
    assert runner.run(cfg, folder, resume=True, progress=False).status == "completed"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_messages_list_what_a_folder_holds_and_ignore_our_temporaries(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / ".status.json.k2j4.tmp").write_text("")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"r is not empty \(it holds notes.txt\); pass --resume"):
        runner.run(FAST, out, progress=False)
    with pytest.raises(ValueError, match=r"holds no config.json of a run \(it holds notes.txt\)"):
        runner.run(FAST, out, resume=True, progress=False)
    assert RunFolder(out).contents() == ["notes.txt"]


# -- item 3: --resume without checkpoint.pt ---------------------------------------------------------


def test_resume_refuses_a_run_whose_checkpoint_was_deleted(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress", *FLAGS]) == 0
    (out / "checkpoint.pt").unlink()
    before = (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--no-progress", "--resume", *FLAGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"cannot resume {out}: its checkpoint.pt is gone" in err[0] and "remove the folder" in err[0]
    assert (out / "metrics.jsonl").read_bytes() == before  # nothing rewritten


def test_resume_starts_afresh_a_run_killed_before_its_first_checkpoint(tmp_path, capsys):
    """No checkpoint yet and status.json still at step 0 (what the runner writes before its first
    checkpoint): silent with records only at t = 0, one line when later records are rewritten."""
    ref = runner.run(FAST, tmp_path / "ref", progress=False).records
    for kept, lines in ((1, 0), (3, 1)):
        out = tmp_path / f"kept{kept}"
        shutil.copytree(tmp_path / "ref", out)
        folder = RunFolder(out)
        folder.checkpoint_path.unlink()
        folder.keep_records(kept)
        folder.write_status("running", step=0, sde_time=0.0, records=1)
        capsys.readouterr()
        res = runner.run(FAST, out, resume=True, progress=False)
        assert res.status == "completed" and strip_wall_time(res.records) == strip_wall_time(ref)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == lines, err
        if lines:
            assert "was stopped before its first checkpoint: starting again from step 0" in err[0]


# -- item 7: folders that cannot be written ---------------------------------------------------------

needs_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="runs the CLI as nobody: needs root and setpriv"
)


@pytest.fixture
def shared():
    """A folder under /tmp that ``nobody`` can read but not write, with ``open/`` that it can."""
    base = Path(tempfile.mkdtemp(prefix="svag-perm-", dir="/tmp"))
    base.chmod(0o755)
    (base / "open").mkdir(mode=0o777)
    (base / "open").chmod(0o777)
    yield base
    shutil.rmtree(base)


# runs each argv through svag.cli.main in one process (one torch import), prints exit code and stderr of each
RUN_ALL = """
import contextlib, io, json, sys
from svag.cli import main
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    print(json.dumps([code, err.getvalue()]))
"""


def _as_nobody(base: Path, *argvs: list[str]) -> list[str]:
    """Run each argv as the user nobody; each must fail with exit status 2 and one line: the lines."""
    env = {**os.environ, "MPLCONFIGDIR": str(base / "open" / "mpl"), "SVAG_CACHE": str(base / "open" / "cache")}
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", RUN_ALL,
           json.dumps(argvs)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = []
    for argv, result in zip(argvs, proc.stdout.splitlines()):
        code, err = json.loads(result)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, code, err)
        lines.append(err.strip())
    assert len(lines) == len(argvs), proc.stdout
    return lines


@needs_nobody
def test_unwritable_folders_are_one_line_errors(shared):
    ro, cmp = shared / "run", shared / "cmp"
    assert main(["train", "--out", str(ro), "--no-progress", *FLAGS]) == 0
    write_json(ro / "status.json", {**read_json(ro / "status.json"), "status": "interrupted"})  # left to resume
    shutil.copytree(V1 / "compare", cmp)
    for p in (ro, cmp, *cmp.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    lines = _as_nobody(
        shared,
        ["train", "--out", str(shared / "new"), "--no-progress", *FLAGS],
        ["train", "--out", str(ro), "--resume", "--no-progress", *FLAGS],
        ["verify", "--quick", "--out", str(shared / "report")],
        ["plot", str(cmp)],
        ["plot", str(cmp), "--out", str(shared / "open" / "c.png")],
    )
    assert f"cannot write the run in {shared / 'new'}: {shared} is not writable (permission denied)" in lines[0]
    assert f"cannot resume the run in {ro}: {ro} is not writable (permission denied)" in lines[1]
    assert f"--out {shared / 'report'}: {shared} is not writable (permission denied)" in lines[2]
    assert f"cannot save the figure {cmp / 'compare.png'}: {cmp} is not writable" in lines[3]
    assert f"cannot write the summary table into {cmp}: {cmp} is not writable" in lines[4]


def test_a_file_where_a_folder_is_expected(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["verify", "--quick", "--out", str(tmp_path / "file" / "sub")]) == 2
    assert f"{tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "file" / "run"), "--no-progress", *FLAGS]) == 2
    assert f"{tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("out", "message"),
    [("", "it is a folder; give a file name in it, such as"), ("fig", "its name has no suffix"),
     ("fig.ktai6mto", "its suffix '.ktai6mto' is not a format matplotlib writes")],
)  # fmt: skip
def test_plot_out_says_which_suffixes_it_takes(tmp_path, capsys, out, message):
    assert main(["plot", str(V1 / "compare"), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert out == "" or "end it in one of .png, .pdf, .svg, " in err[0]
    assert list(tmp_path.iterdir()) == []


# -- item 8: modes follow the umask -----------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    shutil.copytree(V1 / "compare", tmp_path / "cmp")
    old = os.umask(umask)
    try:
        runner.run(replace(FAST, epochs=0.5), tmp_path / "r", progress=False)
        assert main(["plot", str(tmp_path / "cmp")]) == 0
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    files = [tmp_path / "r" / n for n in ("config.json", "env.json", "status.json", "checkpoint.pt", "metrics.jsonl")]
    files += [tmp_path / "cmp" / n for n in (sf.COMPARE_PNG, sf.SUMMARY_MD, sf.SUMMARY_CSV)]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: oct(want) for p in files}


# -- item 9: progress in a log or a pipe ------------------------------------------------------------


def test_train_progress_into_a_pipe_is_plain_lines(tmp_path):
    cmd = [sys.executable, "-m", "svag", "train", "--out", str(tmp_path / "r"), "--l", "2", *FLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 11, lines  # one per tenth (and one a minute)
    assert all(line.startswith("l=2 1 seed: ") for line in lines), lines
    assert " 100% t=3.2/3.2 loss=" in lines[-1] and "elapsed" in lines[-1], lines[-1]
    assert "eta" in lines[0] and "%" in lines[0]


def test_line_progress_prints_each_tenth_and_once_a_minute(capsys):
    now = [0.0]
    bar = LineProgress(
        10.0, initial=2.0, desc="all runs", value="t={n:.3g}/{total:.3g}", every=60, clock=lambda: now[0]
    )
    for _ in range(8):  # 2 -> 10 in steps of 1, 5 s each
        now[0] += 5
        bar.set_postfix(loss="0.5")
        bar.update(1.0)
    now[0] += 100
    bar.update(0.0)  # no movement, no line
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "all runs:  30% t=3/10 loss=0.5 elapsed 5s eta 35s"
    assert lines[-1] == "all runs: 100% t=10/10 loss=0.5 elapsed 40s"
    assert len(lines) == 8
    slow = LineProgress(100.0, desc="x", every=60, clock=lambda: now[0])
    now[0] += 61
    slow.update(1.0)  # 1 %: not a new tenth, but a minute has passed
    assert capsys.readouterr().err.splitlines() == ["x:   1% elapsed 1m01s eta 1h40m"]


def test_parallel_sweep_progress_into_a_pipe_is_plain_lines(tmp_path, capfd):
    from svag.experiments.executors import Job, run_jobs

    cfg = replace(FAST, epochs=0.5)
    jobs = [Job(cfg, [s], [tmp_path / f"s{s}"], [f"s{s}"]) for s in (0, 1)]
    assert run_jobs(jobs, n_jobs=2, progress=True, log=lambda m: None) == {"s0": "completed", "s1": "completed"}
    err = capfd.readouterr().err
    assert "\r" not in err and err.strip().splitlines()[-1].startswith("all runs: 100%")
    assert len(err.strip().splitlines()) <= 11
