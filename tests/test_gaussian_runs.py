"""Gaussian-noise runs in the runner (``gradient_noise="gaussian"``: P1's NGD at l = 1, Euler–Maruyama
of the SDE with step η/l at l > 1): the same clock and records as SVAG, a reproducible noise stream,
bit-identical resume, stacked seeds, and the refusals: tiny teacher-student runs (256 samples, 2 epochs,
< 1 s each). Then scripts/svag_vs_euler_maruyama.py: a fast twin (seconds) and a `slow` test (2 min)."""

import math
import os
import signal
from dataclasses import replace

import pytest
import torch

from helpers import repo_module, strip_wall_time, tiny_mlp
from svag import runner
from svag.config import RunConfig
from svag.experiments.compare import use_ensemble
from svag.records import read_json, read_jsonl
from svag.runner import entry
from svag.runner.distributed import Dist
from svag.runner.loop import Group
from svag.runner.recorder import Recorder

FAST = RunConfig(
    data="teacher-student", n_train=256, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=2.0,
    eval_every=0.5, checkpoint_every=0.5, device="cpu", gradient_noise="gaussian", gaussian_chunk=100,
)  # fmt: skip

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)
NOISE_KEYS = ("G", "N", "G_se", "N_se", "GN_cov", "gn_ratio", "gn_ratio_se", "noise_count")


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
    assert strip_wall_time(_run(tmp_path, "again", l=2.0)) == strip_wall_time(a)
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


@pytest.mark.parametrize("seeds", [[0], [0, 1]], ids=["single", "stacked"])
def test_kill_after_a_checkpoint_then_resume_is_bit_identical(tmp_path, monkeypatch, seeds):
    """Die in the middle of the run (after the 6th record, past the checkpoint at t = 1 epoch: the
    records after it are rewritten on resume); resume; compare with the uninterrupted run."""
    cfg = replace(FAST, l=2.0, epochs=3.0, eval_every=0.25, checkpoint_every=1.0)

    def train(name, resume=False):
        folders = [tmp_path / name / f"seed{s}" for s in seeds]
        return runner.run_replicas(cfg, seeds, folders, resume=resume, progress=False)

    want = [strip_wall_time(r.records) for r in train("ref")]
    original = Recorder.record
    calls = []

    def record_then_die(self, *args, **kw):
        original(self, *args, **kw)
        calls.append(1)
        if len(calls) == 6:
            raise _Killed

    monkeypatch.setattr(Recorder, "record", record_then_die)
    with pytest.raises(_Killed):
        train("killed")
    monkeypatch.setattr(Recorder, "record", original)
    folder = tmp_path / "killed" / "seed0"
    assert len(read_jsonl(folder / "metrics.jsonl")) == 6
    state = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert "gauss_gen" in state and state["step"] > 0
    got = train("killed", resume=True)
    assert all(r.status == "completed" for r in got) and [strip_wall_time(r.records) for r in got] == want


def test_sigint_finishes_the_step_checkpoints_and_resumes_bit_identically(tmp_path, monkeypatch):
    cfg = replace(FAST, l=4.0, epochs=2.0, eval_every=0.25, checkpoint_every=2.0)
    want = strip_wall_time(_run(tmp_path, "ref", cfg))
    original = Group._gaussian_step
    steps = []

    def step_with_signal(self):
        steps.append(1)
        if len(steps) == 37:  # between the records (every 8 steps at l = 4): mid-interval
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Group, "_gaussian_step", step_with_signal)
    with pytest.raises(runner.RunInterrupted):
        runner.run(cfg, tmp_path / "stopped", progress=False)
    assert read_json(tmp_path / "stopped" / "status.json")["status"] == "interrupted"
    assert read_json(tmp_path / "stopped" / "status.json")["step"] == 37
    res = runner.run(cfg, tmp_path / "stopped", resume=True, progress=False)
    assert res.status == "completed" and strip_wall_time(res.records) == want


def test_stacked_seeds_write_what_their_single_runs_write(tmp_path):
    """Three seeds trained as one ensemble (shared chunk inputs, one z stream per replica) against the
    three single runs: equal up to the rounding of batched float32 kernels (relative 1e-6; how many ulp
    depends on the CPU's kernels: 8e-9 on one machine, 0 on another)."""
    cfg = replace(FAST, l=2.0)
    stacked = runner.run_replicas(cfg, [0, 1, 2], [tmp_path / f"e{s}" for s in range(3)], progress=False)
    for seed, res in enumerate(stacked):
        single = _run(tmp_path, f"s{seed}", cfg, seed=seed)
        assert len(res.records) == len(single)
        for a, b in zip(res.records, single):
            assert a["step"] == b["step"] and a["sde_time"] == b["sde_time"]
            for key in ("train_loss", "test_loss", "weight_norm_sq", "grad_norm_sq"):
                assert a[key] == pytest.approx(b[key], rel=1e-6), key  # float32: a few ulp of batched kernels
    assert stacked[0].records[-1]["train_loss"] != stacked[1].records[-1]["train_loss"]


def test_use_ensemble_stacks_gaussian_runs_only_when_asked():
    assert use_ensemble(FAST, 4, "auto") is False  # seed by seed: activations of seeds × chunk samples
    assert use_ensemble(FAST, 4, "on") is True
    assert use_ensemble(FAST, 4, "off") is False
    assert use_ensemble(replace(FAST, gradient_noise="minibatch"), 4, "auto") is True


def test_weights_of_stacked_replicas_are_those_of_their_own_streams():
    from svag.gaussian import gaussian_weights
    from svag.seeds import generator

    rows = gaussian_weights(50, 5, 4.0, [generator(s, "gaussian") for s in (3, 7)], replicas=2)
    for row, seed in zip(rows, (3, 7)):
        assert torch.equal(row, gaussian_weights(50, 5, 4.0, generator(seed, "gaussian")))
    with pytest.raises(ValueError, match=r"one generator per replica: got 2 generators and replicas=3"):
        gaussian_weights(50, 5, 4.0, [generator(0, "gaussian")] * 2, replicas=3)


@pytest.mark.parametrize("subset", [False, True], ids=["all-parameters", "optimizer-holds-a-subset"])
def test_step_gradient_equals_the_reference_gradient(subset):
    """gaussian_step accumulates into p.grad (a plain backward, or one restricted to the optimizer's
    parameters); its update equals the one built from gaussian_gradient (autograd.grad) with the same z."""
    import svag
    from svag.gaussian import gaussian_gradient, gaussian_step, gaussian_weights
    from svag.task import make_task

    model = tiny_mlp(0, torch.get_default_dtype())
    data = (torch.randn(23, 5), torch.randint(0, 3, (23,)))
    task = make_task("cross_entropy", 3)
    params = list(model[2].parameters()) if subset else list(model.parameters())
    opt = svag.SVAG(params, lr=0.1, l=3.0)
    w = gaussian_weights(23, 4, 3.0, torch.Generator().manual_seed(5))
    grads, _ = gaussian_gradient(model, task, data, w, params=params, chunk=10)
    want = [p.detach() - 0.1 / 3 * g for p, g in zip(params, grads)]
    gaussian_step(opt, model, task, data, batch_size=4, generator=torch.Generator().manual_seed(5), chunk=10)
    for p, x in zip(params, want):
        torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-14)
    if subset:
        assert all(p.grad is None for p in model[0].parameters())  # not the optimizer's: untouched


def test_refuses_multi_process(tmp_path, monkeypatch):
    monkeypatch.setattr(entry, "setup", lambda device, batch_size: (Dist(0, 2, 0), device))
    with pytest.raises(ValueError, match=r"gradient_noise gaussian runs in one process .* without torchrun"):
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
    from svag.runner import loop

    load = loop.load_dataset

    def with_augment(*args, **kw):
        ds = load(*args, **kw)
        ds.augment = lambda x, gen: pytest.fail("augmentation applied in a gaussian run")
        return ds

    monkeypatch.setattr(loop, "load_dataset", with_augment)
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
    assert main(["compare", "--out", str(tmp_path / "c"), "--ls", "1,2", "--seeds", "2", *tiny]) == 0
    names = sorted(p.name for p in (tmp_path / "c").iterdir() if p.is_dir())
    assert names == ["l1_seed0", "l1_seed1", "l2_seed0", "l2_seed1"]
    for name in names:  # --ensemble auto: gaussian runs train seed by seed
        assert read_json(tmp_path / "c" / name / "env.json")["trained_with_replicas"] == 1
    a = read_jsonl(tmp_path / "t" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "c" / "l2_seed0" / "metrics.jsonl")
    assert strip_wall_time(a) == strip_wall_time(b)
    assert main(["compare", "--out", str(tmp_path / "e"), "--ls", "2", "--seeds", "2", "--ensemble", "on", *tiny]) == 0
    assert read_json(tmp_path / "e" / "l2_seed0" / "env.json")["trained_with_replicas"] == 2
    assert main(["train", "--out", str(tmp_path / "bn"), "--norm", "bn", *tiny]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


# -- scripts/svag_vs_euler_maruyama.py: SVAG(l) vs Euler–Maruyama(l) on an MNIST-1D MLP ---------------------
def _script():
    return repo_module("scripts/svag_vs_euler_maruyama.py", "svag_vs_euler_maruyama")


def test_svag_vs_em_script_fast_twin(tmp_path, capsys):
    """The script's machinery at toy size (--quick: 128 samples, B 32, l = 1, 4, seeds 0 and 1, 1 epoch;
    a few seconds): every run completes, every distance, interval and shrinkage is finite, the figure is drawn."""
    sve = _script()
    assert sve.main(["--quick", "--out", str(tmp_path / "out"), "--figure", str(tmp_path / "f.png")]) == 0
    data = read_json(tmp_path / "out" / "svag_vs_em.json")
    assert not data["failed"] and data["ls"] == [1.0, 4.0] and data["seeds"] == [0, 1]
    assert len(data["rows"]) == 2 * len(sve.METRICS)
    for row in data["rows"]:
        for key in ("svag_mean", "em_mean", "gap", "gap_se", "gap_low", "gap_high", "distance"):
            assert math.isfinite(row[key]), (row["l"], row["metric"], key)
        assert row["gap_low"] <= row["gap"] <= row["gap_high"]
    for fit in data["fits"].values():
        assert math.isfinite(fit["slope"])  # two points: a slope, no SE
    assert all(math.isfinite(s["shrink"]) and math.isfinite(s["se"]) for s in data["shrink"].values())
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert "fitted order of |gap| vs l, test_loss" in capsys.readouterr().out
    first = read_json(tmp_path / "out" / "em" / "l4_seed0" / "config.json")
    assert first["config"]["gradient_noise"] == "gaussian" and first["config"]["sampling"] == "replacement"


@pytest.mark.slow
def test_svag_vs_em_gap_shrinks_from_l1_to_l16(tmp_path):
    """The gap between SVAG(l) and Euler–Maruyama(l) at the EXPERIMENTS.md size (MNIST-1D MLP, n_train 256,
    B 8, η 0.2, 30 epochs, sampling with replacement), l = 1 and 16, seeds 0..7 paired (~2 min on a CPU
    core): the train-loss and ‖x‖² gaps shrink from l = 1 to l = 16 beyond their 95% t-intervals
    (:func:`shrinkage`'s lower end > 0; measured z ≈ 10 and 3), and |d̄| at l = 16 is below |d̄| at
    l = 1 for all three metrics."""
    sve = _script()
    base, seeds, out = sve.base_config(), list(range(8)), tmp_path / "runs"
    statuses = sve.train(base, [1.0, 16.0], seeds, out)
    assert all(s == "completed" for kind in statuses.values() for s in kind.values()), statuses
    rows = {(r["l"], r["metric"]): r for r in sve.distances(out, [1.0, 16.0], seeds)}
    for m in sve.METRICS:
        assert rows[(16.0, m)]["distance"] < rows[(1.0, m)]["distance"], m
    for m in ("train_loss", "weight_norm_sq"):
        assert rows[(1.0, m)]["excludes_zero"], rows[(1.0, m)]
        shrink = sve.shrinkage(out, seeds, m, 1.0, 16.0)
        assert shrink["low"] > 0, shrink


def test_gaussian_run_at_l_above_1_needs_no_room_for_two_disjoint_batches(tmp_path):
    """A Gaussian run draws no minibatch, so 2B > n (refused for SVAG's disjoint pairs) is fine."""
    from svag import runner
    from svag.config import RunConfig

    cfg = RunConfig(data="teacher-student", n_train=40, n_test=20, batch_size=32, l=2.0, epochs=0.5,
                    gradient_noise="gaussian", device="cpu")  # fmt: skip
    assert runner.run(cfg, tmp_path / "r", progress=False).status == "completed"
