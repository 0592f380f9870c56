"""The runner: records, the shared continuous-time grid, divergence, exact resume."""

import math
import random
import shutil
import signal
import subprocess
import time
from dataclasses import replace

import pytest

from helpers import FIXTURES, RELEASES, count_lines, interrupt_at_step, strip_wall_time, train_cmd
from svag import runner
from svag.config import RunConfig
from svag.records import read_json, read_jsonl
from svag.runner.loop import Group

FIELDS = {
    "sde_time", "step", "effective_step", "epoch", "lr", "train_loss", "train_acc", "test_loss",
    "test_acc", "weight_norm_sq", "grad_norm_sq", "wall_time",
}  # fmt: skip

FAST = RunConfig(
    data="teacher-student", n_train=256, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=2.0,
    eval_every=0.5, checkpoint_every=0.5, device="cpu",
)  # fmt: skip

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


def test_writes_records_config_env(tmp_path):
    res = runner.run(replace(FAST, l=2.0), tmp_path / "r", progress=False)
    assert res.status == "completed"
    rows = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert FIELDS <= set(rows[0])
    cfg = read_json(tmp_path / "r" / "config.json")
    assert cfg["config"]["l"] == 2.0 and cfg["derived"]["end_time"] == pytest.approx(2 * 16 * 0.2)
    assert {"torch", "device", "seed"} <= set(read_json(tmp_path / "r" / "env.json"))
    assert read_json(tmp_path / "r" / "status.json")["status"] == "completed"
    assert rows[-1]["effective_step"] == rows[-1]["step"] / 2
    assert rows[-1]["epoch"] == pytest.approx(2.0)


def test_same_time_grid_for_every_l(tmp_path):
    times = {}
    for l in (1.0, 3.0, 8.0):
        rows = runner.run(replace(FAST, l=l), tmp_path / f"l{l}", progress=False).records
        times[l] = [r["sde_time"] for r in rows]
    grid = [j * 0.5 * 16 * 0.2 for j in range(5)]
    for l, ts in times.items():
        assert ts == pytest.approx(grid, rel=1e-9, abs=1e-12), l


def test_multistep_schedule_reaches_milestones_in_time(tmp_path):
    """Shaped on time, a milestone is the time at which the SDE reaches it (``derived["schedule"]``)."""
    cfg = replace(FAST, schedule="multistep", milestones=(1.0,), gamma=0.1, l=2.0, schedule_unit="time")
    rows = runner.run(cfg, tmp_path / "r", progress=False).records
    derived = read_json(tmp_path / "r" / "config.json")["derived"]
    t1 = 1.0 * 16 * 0.2
    assert derived["schedule"]["milestones"] == [pytest.approx(t1)]
    assert derived["end_time"] == pytest.approx(t1 + 0.1 * t1)
    assert rows[-1]["lr"] == pytest.approx(0.02)
    assert rows[-1]["epoch"] == pytest.approx(2.0)


def test_divergence_stops_with_message_and_keeps_files(tmp_path):
    cfg = replace(FAST, lr=1e6, epochs=2.0)
    with pytest.raises(runner.RunDiverged, match=r"training loss became (nan|inf) at step \d+"):
        runner.run(cfg, tmp_path / "r", progress=False)
    status = read_json(tmp_path / "r" / "status.json")
    assert status["status"] == "diverged"
    assert read_jsonl(tmp_path / "r" / "metrics.jsonl")  # the t = 0 record is kept


def test_refuses_non_empty_folder_and_mismatched_resume(tmp_path):
    runner.run(FAST, tmp_path / "r", progress=False)
    (tmp_path / "r" / "notes.txt").write_text("mine")
    held = r"checkpoint.pt, config.json, env.json, metrics.jsonl, notes.txt and 1 more"
    with pytest.raises(ValueError, match=rf"is not empty \(it holds {held}\); pass --resume"):
        runner.run(FAST, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match=r"config differs in \['lr'\]"):
        runner.run(replace(FAST, lr=0.3), tmp_path / "r", resume=True, progress=False)


def test_resume_accepts_a_folder_written_before_a_field_existed(tmp_path):
    """A config field added later (here: sync_bn) is read as its default in older folders."""
    import json

    runner.run(FAST, tmp_path / "r", progress=False)
    path = tmp_path / "r" / "config.json"
    data = json.loads(path.read_text())
    del data["config"]["sync_bn"]
    path.write_text(json.dumps(data))
    assert runner.run(FAST, tmp_path / "r", resume=True, progress=False).status == "completed"
    with pytest.raises(ValueError, match=r"config differs in \['sync_bn'\]"):
        runner.run(replace(FAST, sync_bn=True), tmp_path / "r", resume=True, progress=False)


@pytest.mark.parametrize("unit", ["time", "step"])
def test_milestone_reached_up_to_rounding_switches_the_lr(tmp_path, unit):
    """8 steps of 0.1 sum to 0.7999999999999999 < 0.8 in floats: the milestone (the SDE's time 0.8, or step 8's
    start 8·0.1 on steps) still applies."""
    cfg = replace(FAST, lr=0.1, batch_size=16, epochs=1.0, schedule="multistep", milestones=(0.5,), gamma=0.1,
                  eval_every=0.25, checkpoint_every=1.0, schedule_unit=unit)  # fmt: skip
    rows = runner.run(cfg, tmp_path / "r", progress=False).records
    assert rows[-1]["epoch"] == pytest.approx(1.0)
    assert rows[-1]["sde_time"] == pytest.approx(0.8 + 8 * 0.01)
    assert rows[0]["lr"] == pytest.approx(0.1) and rows[-1]["lr"] == pytest.approx(0.01)


SIGNAL_CFG = replace(FAST, l=4.0, epochs=4.0, n_train=512, eval_every=0.25, checkpoint_every=0.5, weight_decay=1e-3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run that every signal test compares with."""
    ref = tmp_path_factory.mktemp("signals") / "ref"
    subprocess.run(train_cmd(ref, SIGNAL_CFG), check=True, capture_output=True)
    return ref


def _signal_and_resume(tmp_path, ref, sig: int, kills: int, seed: int, cfg=SIGNAL_CFG):
    """Send ``sig`` to a real `svag train` process at random points, resume until done; compare.

    Each signal lands after a random number of evaluation records (drawn with ``seed``), plus a
    random delay of up to 50 ms, so it hits training, evaluation or checkpoint writing. SIGKILL
    leaves the folder at its last checkpoint; SIGINT and SIGTERM let the step finish, checkpoint,
    mark the folder ``interrupted`` and exit with 128 + the signal number."""
    total = count_lines(ref / "metrics.jsonl")
    run_dir = tmp_path / "stopped"
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(2, total - 2), kills))
    stopped = 0
    for attempt in range(kills + 5):
        cmd = train_cmd(run_dir, cfg) + (["--resume"] if attempt else [])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if stopped < kills:
            deadline = time.monotonic() + 120
            while proc.poll() is None and count_lines(run_dir / "metrics.jsonl") < targets[stopped]:
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            if proc.poll() is None:
                proc.send_signal(sig)
                stopped += 1
        _, err = proc.communicate()
        if proc.returncode == 0:
            break
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL, err.decode()
        else:
            assert proc.returncode == 128 + sig, err.decode()
            assert read_json(run_dir / "status.json")["status"] == "interrupted"
            assert "--resume" in err.decode()
    assert stopped == kills, f"only {stopped} of {kills} signals landed before the run ended"
    a = strip_wall_time(read_jsonl(ref / "metrics.jsonl"))
    b = strip_wall_time(read_jsonl(run_dir / "metrics.jsonl"))
    assert len(a) == total and a == b
    assert all(math.isfinite(r["test_loss"]) for r in a)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
def test_signal_and_resume_bit_identical_fast(tmp_path, reference, sig):
    """Fast twin: one signal at a random point (seed 0)."""
    _signal_and_resume(tmp_path, reference, sig, kills=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: signal.Signals(s).name)
def test_signal_and_resume_bit_identical_many(tmp_path, sig):
    """Heavy: four signals at random points (seeds 1..3) of a 12-epoch run."""
    cfg = replace(SIGNAL_CFG, epochs=12.0)
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(ref, cfg), check=True, capture_output=True)
    _signal_and_resume(tmp_path, ref, sig, kills=4, seed=int(sig), cfg=cfg)


def test_gaussian_run_sigkill_and_resume_bit_identical(tmp_path):
    """A Gaussian-noise (Euler–Maruyama) run killed at a random point resumes exactly: its noise stream
    (seed tree "gaussian") is in the checkpoint. One SIGKILL (seed 0), 256 samples, l = 4."""
    cfg = replace(SIGNAL_CFG, gradient_noise="gaussian", n_train=256, epochs=2.0)
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(ref, cfg), check=True, capture_output=True)
    _signal_and_resume(tmp_path, ref, signal.SIGKILL, kills=1, seed=0, cfg=cfg)


def test_cosine_over_the_steps_sigkill_and_resume_bit_identical(tmp_path):
    """A cosine over the steps, whose checkpoints sit at step boundaries (Timeline.next_checkpoint), killed at
    a random point (seed 0) resumes exactly."""
    cfg = replace(SIGNAL_CFG, schedule="cosine", schedule_unit="step", epochs=2.0)
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(ref, cfg), check=True, capture_output=True)
    _signal_and_resume(tmp_path, ref, signal.SIGKILL, kills=1, seed=0, cfg=cfg)


def test_adam_run_sigkill_and_resume_bit_identical(tmp_path):
    """An Adam run (l = 2), whose records carry the preconditioned ratio (gn_ratio_pre, its accumulator in the
    checkpoint: checkpoints fall inside record intervals), killed at a random point (seed 0) resumes exactly."""
    cfg = replace(SIGNAL_CFG, optimizer="adam", lr=0.01, l=2.0, epochs=2.0, n_train=256, checkpoint_every=0.125)
    ref = tmp_path / "ref"
    subprocess.run(train_cmd(ref, cfg), check=True, capture_output=True)
    assert all(r["noise_count_pre"] and math.isfinite(r["gn_ratio_pre"]) for r in read_jsonl(ref / "metrics.jsonl")[1:])
    _signal_and_resume(tmp_path, ref, signal.SIGKILL, kills=1, seed=0, cfg=cfg)


@pytest.mark.parametrize("release", RELEASES)
def test_resumes_a_folder_written_by_an_earlier_release(tmp_path, monkeypatch, release):
    """A run that release 0.1.0 or 0.2.0 left after its first checkpoint (as a SIGKILL would; MLP, l = 2,
    32 of 64 steps) resumes with today's code. Bit for bit, both computed here: resumed, stopped again by
    SIGINT at step 45 and resumed once more, it ends with the records of the uninterrupted resume. And it
    continues the trajectory the release wrote for the uninterrupted run: the same steps, times and epochs,
    every value within 1e-5 relative (that file was written on another machine, whose float32 kernels may
    round otherwise; a lost random stream or optimizer state would differ by far more)."""
    old = FIXTURES / release
    for name in ("straight", "stopped"):
        shutil.copytree(old / "killed" / "l2_seed0", tmp_path / name)
    cfg = RunConfig.from_dict(read_json(tmp_path / "straight" / "config.json")["config"])
    straight = runner.run(cfg, tmp_path / "straight", resume=True, progress=False).records
    interrupt_at_step(monkeypatch, cfg, tmp_path / "stopped", 45, resume=True)
    assert read_json(tmp_path / "stopped" / "status.json")["step"] == 45
    again = runner.run(cfg, tmp_path / "stopped", resume=True, progress=False).records
    assert strip_wall_time(again) == strip_wall_time(straight)

    written = read_jsonl(old / "compare" / "l2_seed0" / "metrics.jsonl")
    assert len(straight) == len(written) == 5
    for got, want in zip(straight, written):
        for key, value in want.items():
            if key in ("step", "sde_time", "epoch", "effective_step") or not isinstance(value, float):
                assert got[key] == value, key
            elif key != "wall_time":
                assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key


def test_status_is_current_at_each_checkpoint(tmp_path, monkeypatch):
    """status.json says where the run is at every checkpoint: step, time, records, the last record."""
    seen = []
    original = Group.save

    def save_and_read(self, status="running"):
        original(self, status)
        seen.append(read_json(self.replicas[0].out / "status.json"))

    monkeypatch.setattr(Group, "save", save_and_read)
    rows = runner.run(FAST, tmp_path / "r", progress=False).records
    assert [s["status"] for s in seen] == ["running"] * len(seen)
    steps = [s["step"] for s in seen]
    assert steps == sorted(steps) and steps[0] > 0 and len(set(steps)) == len(steps)
    for s in seen:
        assert s["records"] >= 1 and s["last_record"]["sde_time"] <= s["sde_time"] and s["end_time"] > 0
    final = read_json(tmp_path / "r" / "status.json")
    assert final["status"] == "completed" and final["records"] == len(rows)
    assert final["last_record"]["sde_time"] == rows[-1]["sde_time"]


def test_a_step_shaped_schedule_checkpoints_at_step_boundaries(tmp_path, monkeypatch):
    """A cosine over the steps checkpoints every checkpoint_every epochs *of steps*: at l = 2, every
    2·4 SVAG steps of a 16-step SGD run. An interval of time at the base LR would checkpoint only once
    before the end here: the cosine's second half covers a fifth of its time."""
    saved = []
    original = Group.save

    def save_and_record(self, status="running"):
        original(self, status)
        saved.append(self.counters.step)

    monkeypatch.setattr(Group, "save", save_and_record)
    cfg = replace(FAST, n_train=128, batch_size=16, epochs=2.0, eval_every=1.0, checkpoint_every=0.5, l=2.0,
                  schedule="cosine", schedule_unit="step")  # fmt: skip
    runner.run(cfg, tmp_path / "r", progress=False)
    assert saved == [8, 16, 24, 32]
