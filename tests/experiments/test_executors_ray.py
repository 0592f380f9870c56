"""Sweeps as Ray tasks (``--cluster ray``) against a real local Ray cluster started here.

One cluster per module (``ray.init(num_cpus=2)``: two worker processes run tasks at once; its
temporary folder under the test's own, no dashboard, no usage statistics); the sweeps of the
tests use it as an existing connection, and one test drives it from a second process by its
address. Faults are real: a worker process is killed with SIGKILL after a random number of records
(``random.Random(seed)``), a driver process likewise. Runs are compared bit for bit with
uninterrupted runs trained with the same thread count (metrics except ``wall_time``)."""

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import count_lines, strip_wall_time
from svag import sweepfolder as sf
from svag.cli import main
from svag.config import RunConfig
from svag.experiments.executors import Executor, Job, run_job, run_jobs
from svag.records import read_json, read_jsonl

ray = pytest.importorskip("ray")  # the ray extra is installed wherever the tests run (CI included)

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--device", "cpu"]
RUN = RunConfig(data="teacher-student", n_train=512, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=4.0,
                eval_every=0.25, checkpoint_every=0.5, weight_decay=1e-3, device="cpu")  # fmt: skip
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}  # local, short-lived: no token file


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray instance with 2 CPUs for the whole module; its GCS address."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_ENV.items():
            mp.setenv(key, value)
        temp = tmp_path_factory.mktemp("ray")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


def _metrics(folder):
    return strip_wall_time(read_jsonl(Path(folder) / "metrics.jsonl"))


def _reference(cfg: RunConfig, seed: int, folder: Path) -> list[dict]:
    """The uninterrupted run, trained here with one thread as a Ray task trains it."""
    import torch

    threads = torch.get_num_threads()
    try:
        assert run_job(Job(cfg, [seed], [folder], ["ref"]), False, 1, False) == ["completed"]
    finally:
        torch.set_num_threads(threads)
    return _metrics(folder)


def _worker_pid(task: str) -> int | None:
    """The process whose title is ``ray::<task>`` (Ray names a busy worker after its task)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0].strip()
            except OSError:
                continue
            if title == f"ray::{task}".encode():
                return int(entry.name)
    return None


def _kill_worker_at(task: str, metrics: Path, at_record: int, rng: random.Random, killed: list, stop) -> None:
    """SIGKILL the worker running ``task`` once ``metrics`` holds ``at_record`` records (plus up to
    50 ms, so the kill lands in a step, an evaluation or a checkpoint write). After an earlier kill,
    only the worker of the retried task counts (a process other than the ones killed)."""
    while True:
        pid = _worker_pid(task)
        if pid is not None and pid not in killed and count_lines(metrics) >= at_record:
            break
        if stop.wait(0.005):  # the sweep ended first: the test reports the kills that did not land
            return
    time.sleep(rng.uniform(0, 0.05))
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)


def test_local_sweep_never_imports_ray(tmp_path):
    """The default executor needs nothing beyond svag: a local compare sweep runs without importing Ray."""
    code = (
        "import sys; from svag.cli import main; "
        f"code = main(['compare', '--out', {str(tmp_path / 'c')!r}, '--ls', '1', '--seeds', '1', '--epochs', "
        f"'0.5', '--no-progress', *{TINY!r}]); "
        "assert code == 0, code; assert 'ray' not in sys.modules, 'ray was imported'; print('no ray')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "no ray" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--address", "auto"], "--address apply to --cluster ray only, got --cluster local"),
        (["--cluster", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be a number > 0, got 0.0"),
        (["--cluster", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a number >= 0, got -1.0"),
        (["--cluster", "ray", "--retries", "-1"], "--retries must be an integer >= 0, got -1"),
        (["--cluster", "ray", "--jobs", "2", "--address", "auto"], "--jobs 2 sizes the embedded Ray instance"),
    ],
)
def test_bad_executor_flags_one_line_exit_2(tmp_path, capsys, flags, message):
    out = tmp_path / "c"
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "1", *TINY, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_lsr_verify_on_ray_equals_local(tmp_path, cluster, capsys):
    """`svag lsr --verify ... --cluster ray` gives the same run folders, tables and figure as locally."""
    args = ["--verify", "32,64", "--epochs", "2", "--milestones", "1.5", "--eval-every", "0.25", "--model", "mlp",
            "--norm", "bn", "--lr", "0.1", "--noise-fraction", "1", "--no-progress", *TINY]  # fmt: skip
    assert main(["--threads", "1", "lsr", "--out", str(tmp_path / "local"), *args]) == 0
    assert main(["lsr", "--out", str(tmp_path / "ray"), "--cluster", "ray", *args]) == 0
    printed = capsys.readouterr().out
    assert "running 3 job(s) as Ray tasks (1 CPU, 0 GPU each; shared folder)" in printed
    for run in ("B16", "B32", "B64"):
        assert _metrics(tmp_path / "ray" / run) == _metrics(tmp_path / "local" / run)
        assert read_json(tmp_path / "ray" / run / "status.json")["status"] == "completed"
    for table in (sf.VERDICTS_MD, sf.VERDICTS_CSV):
        assert (tmp_path / "ray" / table).read_text() == (tmp_path / "local" / table).read_text()
    assert (tmp_path / "ray" / sf.LSR_PNG).is_file()


@pytest.mark.slow
def test_embedded_ray_instance_from_the_command_line(tmp_path, cluster):
    """`--cluster ray` without --address starts (and stops) its own Ray instance: same runs as locally.
    Slow (Ray's start, 5-10 s here); the fast tests run the same tasks on the module's cluster."""
    common = ["--ls", "1,2", "--seeds", "1", "--epochs", "1", "--no-progress", *TINY]
    assert main(["--threads", "1", "compare", "--out", str(tmp_path / "local"), *common]) == 0
    with tempfile.TemporaryDirectory(prefix="svag-ray-") as temp:  # short: Ray's socket paths have 107 bytes
        env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": temp}
        proc = subprocess.run([sys.executable, "-m", "svag", "compare", "--out", str(tmp_path / "ray"), *common,
                               "--cluster", "ray", "--jobs", "2"], env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "started an embedded Ray instance on this machine: 2 CPU(s)" in proc.stdout
    for run in ("l1_seed0", "l2_seed0"):
        assert _metrics(tmp_path / "ray" / run) == _metrics(tmp_path / "local" / run)


def test_without_shared_folder_the_driver_writes_the_results(tmp_path, cluster, capfd):
    """``--worker-dir``: the run trains there (its checkpoint stays), the driver writes config, env,
    metrics and status into --out; the bar moves with the task's reports although --out gets nothing
    until the run ends (one run of 2048 steps, reports every 0.5 s); --resume then skips it."""
    out, scratch = tmp_path / "out", tmp_path / "workers"
    args = ["compare", "--out", str(out), "--ls", "8", "--seeds", "1", "--epochs", "4", "--eval-every", "0.25",
            "--checkpoint-every", "0.25", "--cluster", "ray", "--worker-dir", str(scratch), *TINY,
            "--n-train", "1024"]  # fmt: skip
    assert main(args) == 0
    kept = scratch / out.relative_to(out.anchor) / "l8_seed0"
    assert sorted(p.name for p in (out / "l8_seed0").iterdir()) == ["config.json", "env.json", "metrics.jsonl",
                                                                    "status.json"]  # fmt: skip
    assert (kept / "checkpoint.pt").is_file()
    status = read_json(out / "l8_seed0" / "status.json")
    assert status["status"] == "completed" and status["checkpoint_kept_at"].endswith(f":{kept}")
    assert _metrics(out / "l8_seed0") == _metrics(kept)
    err = capfd.readouterr().err
    shown = [int(line.split("%")[0].split()[-1]) for line in err.splitlines() if line.startswith("all runs:")]
    assert any(0 < p < 100 for p in shown) and shown[-1] == 100, err
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.parent != out}
    assert main([*args, "--resume"]) == 0
    assert "1 run(s) already completed, not run again: l8_seed0" in capfd.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.parent != out} == before


def test_bad_config_is_reported_once_and_not_retried(tmp_path, cluster):
    """A run failing on its worker (its data set is missing there) fails once; the others complete."""
    bad = RunConfig(data="fashion-mnist", data_root=str(tmp_path / "missing"), epochs=1.0, device="cpu")
    good = replace(RUN, epochs=1.0)
    jobs = [Job(good, [0], [tmp_path / "a"], ["a"]), Job(bad, [0], [tmp_path / "b"], ["b"])]
    lines: list[str] = []
    statuses = run_jobs(jobs, Executor("ray"), progress=False, log=lines.append)
    assert statuses["a"] == "completed"
    assert statuses["b"].startswith("failed: ") and "fashion-mnist" in statuses["b"]
    assert [line for line in lines if line.startswith("b: ")] == [f"b: {statuses['b']}"]
    assert not [line for line in lines if "attempt" in line], lines  # never started again


def _kill_and_retry(tmp_path, kills: int, seed: int) -> None:
    """Two runs as Ray tasks; the worker of the l = 4 run is SIGKILLed ``kills`` times at random
    records; Ray runs the task again, which resumes from the last checkpoint; both runs end equal
    to uninterrupted ones."""
    cfg = replace(RUN, l=4.0)
    ref = _reference(cfg, 0, tmp_path / "ref")
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(2, len(ref) - 2), kills))
    folder, killed, lines = tmp_path / "sweep" / "l4_seed0", [], []

    stop = threading.Event()

    def killer() -> None:
        for at in targets:
            _kill_worker_at("svag:l4_seed0", folder / "metrics.jsonl", at, rng, killed, stop)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    jobs = [Job(cfg, [0], [folder], ["l4_seed0"]), Job(replace(cfg, l=1.0), [0], [tmp_path / "sweep" / "l1_seed0"],
                                                        ["l1_seed0"])]  # fmt: skip
    statuses = run_jobs(jobs, Executor("ray", retries=kills), progress=False, log=lines.append)
    stop.set()
    thread.join()
    assert len(killed) == kills, f"only {len(killed)} of {kills} kills landed before the run ended"
    assert statuses == {"l4_seed0": "completed", "l1_seed0": "completed"}
    lost = [line for line in lines if "its worker was lost; running it again" in line]
    assert len(lost) == kills, lines
    assert _metrics(folder) == ref


def test_killed_worker_is_retried_and_resumes_bit_identical(tmp_path, cluster):
    """Fast twin: one SIGKILL of the worker at a random record (seed 0)."""
    _kill_and_retry(tmp_path, kills=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_worker_is_retried_and_resumes_bit_identical_many(tmp_path, cluster, seed):
    """Heavy: three SIGKILLs of the worker at random records (seeds 1..3)."""
    _kill_and_retry(tmp_path, kills=3, seed=seed)


def test_killed_driver_then_resume_skips_finished_runs(tmp_path, cluster, capsys):
    """Fast twin: the driver SIGKILLed (seed 0)."""
    _stop_driver_and_resume(tmp_path, cluster, capsys, signal.SIGKILL)


@pytest.mark.slow
def test_interrupted_driver_then_resume_skips_finished_runs(tmp_path, cluster, capsys):
    """Ctrl-C on the driver: it cancels its tasks and exits 130 naming --resume."""
    _stop_driver_and_resume(tmp_path, cluster, capsys, signal.SIGINT)


def _stop_driver_and_resume(tmp_path, cluster, capsys, sig: int) -> None:
    """A driver process (joined to the cluster by its address) stopped by ``sig`` after one run completed and
    while the other (64 times longer: it outlasts the short run's worker start on a loaded machine) is under way;
    `--resume` skips the finished run and continues the other from its
    checkpoint, ending equal to uninterrupted runs."""
    out = tmp_path / "sweep"
    common = ["--ls", "1,64", "--seeds", "1", "--epochs", "2", "--eval-every", "0.125", "--checkpoint-every", "0.5",
              "--ensemble", "off", "--no-progress", *TINY]  # fmt: skip
    args = ["compare", "--out", str(out), *common, "--cluster", "ray"]
    assert main(["--threads", "1", "compare", "--out", str(tmp_path / "ref"), *common]) == 0
    ref = _metrics(tmp_path / "ref" / "l64_seed0")
    rng = random.Random(0)
    # stop in the first third of the long run: the rest (seconds) outlasts the signal's delivery and the
    # cancellation even on a loaded machine, so the run is always caught unfinished
    at = rng.randrange(2, len(ref) // 3)
    env = {**os.environ, **RAY_ENV}
    driver = subprocess.Popen([sys.executable, "-m", "svag", *args, "--address", cluster], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    l1, long = out / "l1_seed0", out / "l64_seed0"
    deadline = time.monotonic() + 300  # generous: on a loaded 2-core machine the driver's start alone takes 30 s
    try:
        while (
            not (l1 / "status.json").is_file()
            or read_json(l1 / "status.json")["status"] != "completed"
            or count_lines(long / "metrics.jsonl") < at
        ):
            assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read().decode()[-3000:]
            time.sleep(0.005)
    except BaseException:
        driver.kill()  # not left running into the next tests
        driver.communicate()
        raise
    time.sleep(rng.uniform(0, 0.05))
    driver.send_signal(sig)
    _, err = driver.communicate()
    if sig == signal.SIGINT:
        assert driver.returncode == 130 and "continue it with --resume" in err.decode(), err.decode()[-3000:]
    killed_at = count_lines(long / "metrics.jsonl")
    while _worker_pid("svag:l64_seed0") is not None:  # Ray ends a dead driver's tasks (measured: 0.05 s)
        assert time.monotonic() < deadline + 60, "the dead driver's task is still running"
        time.sleep(0.005)
    # Ray stops a dead driver's tasks with SIGTERM: the run checkpoints and says so (or was killed outright)
    assert read_json(long / "status.json")["status"] in ("running", "interrupted"), (killed_at, len(ref))
    done_before = (l1 / "metrics.jsonl").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0
    assert "1 run(s) already completed, not run again: l1_seed0" in capsys.readouterr().out
    assert (l1 / "metrics.jsonl").stat().st_mtime_ns == done_before
    assert _metrics(long) == ref
    assert _metrics(l1) == _metrics(tmp_path / "ref" / "l1_seed0")


def test_received_results_need_a_known_status(tmp_path):
    from svag.runfolder import RunFolder

    folder = RunFolder(tmp_path / "r")
    with pytest.raises(ValueError, match="status must be one of"):
        folder.receive({"config.json": "{}", "status.json": '{"status": "done"}'}, "host:/x")
    with pytest.raises(ValueError, match=r"result files are config\.json, env\.json, metrics\.jsonl, status\.json"):
        folder.receive({"config.json": "{}", "checkpoint.pt": ""}, "host:/x")
    assert not folder.path.exists()


def test_worker_folder_mirrors_the_driver_path_and_tasks_are_named_after_runs(tmp_path):
    from svag.experiments.executors.ray import task_name, worker_folder

    assert worker_folder("/scratch", "/home/u/runs/cmp/l2_seed0") == Path("/scratch/home/u/runs/cmp/l2_seed0")
    assert worker_folder("~/w", "/r/a") == Path(os.path.expanduser("~/w")) / "r" / "a"
    assert worker_folder("/s", "/x/a") != worker_folder("/s", "/y/a")  # two sweeps never share a folder
    assert task_name(Job(RUN, [0], [tmp_path / "l2_seed0"], ["l2_seed0"])) == "svag:l2_seed0"
    assert task_name(Job(RUN, [0, 1, 2], [tmp_path / f"l2_seed{s}" for s in range(3)], [])) == "svag:l2_seed0+2"
