"""Gaussian-noise runs in the runner (``gradient_noise="gaussian"``: P1's NGD at l = 1, Euler–Maruyama
of the SDE with step η/l at l > 1): the same clock and records as SVAG, a reproducible noise stream,
bit-identical resume, and the refusals. Tiny teacher-student runs (256 samples, 2 epochs, < 1 s each)."""

import os
import signal
from dataclasses import replace

import pytest
import torch

from svag import runner
from svag.config import RunConfig
from svag.distributed import Dist
from svag.experiments.compare import use_ensemble
from svag.records import read_json, read_jsonl

FAST = RunConfig(
    data="teacher-student", n_train=256, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=2.0,
    eval_every=0.5, checkpoint_every=0.5, device="cpu", gradient_noise="gaussian", gaussian_chunk=100,
)  # fmt: skip
NOISE_KEYS = ("G", "N", "G_se", "N_se", "GN_cov", "gn_ratio", "gn_ratio_se", "noise_count")


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def _run(tmp_path, name, cfg=FAST, **kw):
    return runner.run(replace(cfg, **kw), tmp_path / name, progress=False).records


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_records_at_the_times_and_steps_of_the_svag_run(tmp_path, l):
    gauss = _run(tmp_path, "gauss", l=l)
    svag = _run(tmp_path, "svag", l=l, gradient_noise="minibatch")
    assert [r["sde_time"] for r in gauss] == [r["sde_time"] for r in svag]
    assert [r["step"] for r in gauss] == [r["step"] for r in svag]
    assert set(gauss[0]) == set(svag[0])
    assert gauss[0]["train_loss"] == svag[0]["train_loss"]  # the same initialization (seed tree "init")
    assert gauss[-1]["train_loss"] != svag[-1]["train_loss"]  # ... and different noise
    for row in gauss:  # no minibatch pair: the G/N pair fields are None
        assert all(row[k] is None for k in NOISE_KEYS)
    derived = read_json(tmp_path / "gauss" / "config.json")["derived"]
    assert derived["gaussian_finite_population"] is True  # sampling "disjoint": SGD's per-batch covariance


def test_loss_decreases_and_the_seed_fixes_the_run(tmp_path):
    a = _run(tmp_path, "a", l=2.0)
    assert a[-1]["train_loss"] < 0.7 * a[0]["train_loss"]
    assert _strip(_run(tmp_path, "again", l=2.0)) == _strip(a)
    other = _run(tmp_path, "seed1", l=2.0, seed=1)
    assert other[-1]["train_loss"] != a[-1]["train_loss"]
    l1 = _run(tmp_path, "l1", l=1.0)
    assert l1[-1]["train_loss"] != a[-1]["train_loss"] and l1[-1]["step"] * 2 == a[-1]["step"]


def test_chunk_changes_only_rounding(tmp_path):
    a = _run(tmp_path, "c100", l=2.0)
    b = _run(tmp_path, "whole", l=2.0, gaussian_chunk=256)
    for x, y in zip(a, b):
        for key in ("train_loss", "test_loss", "weight_norm_sq", "grad_norm_sq"):
            assert y[key] == pytest.approx(x[key], rel=1e-5), key


def test_sampling_replacement_matches_the_with_replacement_covariance(tmp_path):
    disjoint = _run(tmp_path, "d", l=2.0)
    repl = _run(tmp_path, "r", l=2.0, sampling="replacement")
    assert read_json(tmp_path / "r" / "config.json")["derived"]["gaussian_finite_population"] is False
    assert repl[-1]["train_loss"] != disjoint[-1]["train_loss"]  # the noise scale differs by √((n−B)/(n−1))


def test_m_batch_measurement_still_works(tmp_path):
    rows = _run(tmp_path, "m", l=2.0, noise_every=1.0, noise_batches=8)
    measured = [r for r in rows if r.get("G_m") is not None]
    assert len(measured) >= 2 and all(r["N_m"] > 0 for r in measured)


class _Killed(Exception):
    """Stands for SIGKILL: the process dies where it is, the folder stays as it was."""


def test_kill_after_a_checkpoint_then_resume_is_bit_identical(tmp_path, monkeypatch):
    """Die in the middle of the run (after the 6th record, past the checkpoint at t = 1 epoch: the
    records after it are rewritten on resume); resume; compare with the uninterrupted run."""
    cfg = replace(FAST, l=2.0, epochs=3.0, eval_every=0.25, checkpoint_every=1.0)
    want = _strip(_run(tmp_path, "ref", cfg))
    original = runner.Recorder.record
    calls = []

    def record_then_die(self, *args, **kw):
        original(self, *args, **kw)
        calls.append(1)
        if len(calls) == 6:
            raise _Killed

    monkeypatch.setattr(runner.Recorder, "record", record_then_die)
    with pytest.raises(_Killed):
        runner.run(cfg, tmp_path / "killed", progress=False)
    monkeypatch.setattr(runner.Recorder, "record", original)
    assert len(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == 6
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert "gauss_gen" in state and state["step"] > 0
    res = runner.run(cfg, tmp_path / "killed", resume=True, progress=False)
    assert res.status == "completed" and _strip(res.records) == want


def test_sigint_finishes_the_step_checkpoints_and_resumes_bit_identically(tmp_path, monkeypatch):
    cfg = replace(FAST, l=4.0, epochs=2.0, eval_every=0.25, checkpoint_every=2.0)
    want = _strip(_run(tmp_path, "ref", cfg))
    original = runner._Run._gaussian_step
    steps = []

    def step_with_signal(self):
        steps.append(1)
        if len(steps) == 37:  # between the records (every 8 steps at l = 4): mid-interval
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(runner._Run, "_gaussian_step", step_with_signal)
    with pytest.raises(runner.RunInterrupted):
        runner.run(cfg, tmp_path / "stopped", progress=False)
    assert read_json(tmp_path / "stopped" / "status.json")["status"] == "interrupted"
    assert read_json(tmp_path / "stopped" / "status.json")["step"] == 37
    res = runner.run(cfg, tmp_path / "stopped", resume=True, progress=False)
    assert res.status == "completed" and _strip(res.records) == want


def test_refuses_stacked_seeds_and_use_ensemble_says_no(tmp_path):
    with pytest.raises(ValueError, match=r"gradient_noise gaussian trains one seed at a time .* got 2 seeds"):
        runner.run_replicas(FAST, [0, 1], [tmp_path / "a", tmp_path / "b"], progress=False)
    assert not (tmp_path / "a").exists()
    for mode in ("auto", "on"):
        assert use_ensemble(FAST, 4, mode) is False
        assert use_ensemble(replace(FAST, gradient_noise="minibatch"), 4, "on") is True


def test_refuses_multi_process(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "setup", lambda device, batch_size: (Dist(0, 2, 0), device))
    with pytest.raises(ValueError, match="gradient_noise gaussian runs in one process .* without torchrun"):
        runner.run(FAST, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"norm": "bn"}, "gradient_noise gaussian needs per-sample gradients, which BatchNorm does not have"),
        ({"gaussian_chunk": 0}, "gaussian_chunk must be an integer > 0, got 0"),
        ({"l": 0.5}, "l must be a finite real number >= 1, got 0.5"),
        ({"gradient_noise": "gauss"}, "gradient_noise must be one of minibatch, gaussian, got 'gauss'"),
    ],
)
def test_refuses_bad_config(tmp_path, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        runner.run(replace(FAST, **change), tmp_path / "r", progress=False)


def test_augmentation_is_not_applied_and_a_line_says_so(tmp_path, monkeypatch, capsys):
    import svag.data

    load = svag.data.load_dataset

    def with_augment(*args, **kw):
        ds = load(*args, **kw)
        ds.augment = lambda x, gen: pytest.fail("augmentation applied in a gaussian run")
        return ds

    monkeypatch.setattr(svag.data, "load_dataset", with_augment)
    rows = _run(tmp_path, "r", l=2.0)
    assert rows[-1]["epoch"] == pytest.approx(2.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["svag: teacher-student's training augmentation is not applied: a gaussian run's gradient is over "
                   "the un-augmented training set"]  # fmt: skip


def test_cli_train_and_compare(tmp_path, capsys):
    from svag.cli import main

    tiny = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--device",
            "cpu", "--no-progress", "--epochs", "1", "--eval-every", "0.5", "--gradient-noise", "gaussian"]  # fmt: skip
    assert main(["train", "--out", str(tmp_path / "t"), "--l", "2", *tiny]) == 0
    assert read_json(tmp_path / "t" / "config.json")["config"]["gradient_noise"] == "gaussian"
    assert main(["compare", "--out", str(tmp_path / "c"), "--ls", "1,2", "--seeds", "2", "--ensemble", "on", *tiny]) == 0
    names = sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir())
    assert names == ["l1_seed0", "l1_seed1", "l2_seed0", "l2_seed1"]
    for name in names:
        assert read_json(tmp_path / "c" / name / "env.json")["trained_with_replicas"] == 1
    a = read_jsonl(tmp_path / "t" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "c" / "l2_seed0" / "metrics.jsonl")
    assert _strip(a) == _strip(b)
    assert main(["train", "--out", str(tmp_path / "bn"), "--norm", "bn", *tiny]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
