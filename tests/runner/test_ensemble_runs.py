"""Stacked runs of a user's model (torch.func) against the same seeds run one by one: every record.

The slow reference twin at the runner level: ``run`` seed after seed. A stacked ``run_replicas`` must
write the same records (every field: losses, metrics, ‖x‖², ‖∇L‖², the G/N pair estimates and
their SEs, P1's m-batch G/N; float64, relative 1e-9, observed <= 1e-12) and the same checkpoints;
a stacked run stopped and resumed ends bit for bit as the uninterrupted stacked run; a model the
trial step refuses (dropout) trains seed by seed, one line saying why, bit for bit the lone runs.
"""

import os
import signal
from dataclasses import replace

import pytest
import torch

from svag.config import RunConfig
from svag.experiments.compare import run_compare, use_ensemble
from svag.runfolder import RunFolder
from svag.runner import RunInterrupted, run, run_replicas
from svag.runner.ensemble import is_faster
from svag.runner.loop import Group

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)

SEEDS = [0, 1, 2]

PLUGIN = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, d, classes, p):
        super().__init__()
        self.inp, self.bn, self.out = nn.Linear(d, 24), nn.BatchNorm1d(24), nn.Linear(24, classes)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return self.out(self.drop(torch.tanh(self.bn(self.inp(x.reshape(x.shape[0], -1))))))


def make(input_shape, num_classes):
    return Net(input_shape[0], num_classes, 0.0)


def dropout(input_shape, num_classes):
    return Net(input_shape[0], num_classes, 0.3)
"""


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "user_model.py"
    path.write_text(PLUGIN)
    return str(path)


def _cfg(model, **kw):
    base = dict(data="teacher-student", n_train=256, n_test=128, model=model, lr=0.2, batch_size=16, epochs=1.0,
                eval_every=0.5, checkpoint_every=0.5, device="cpu", dtype="float64", l=2.0)  # fmt: skip
    return RunConfig(**{**base, **kw})


def _assert_same_records(alone, together, exact=False):
    assert len(alone) == len(together) > 0
    for a, b in zip(alone, together):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if key == "wall_time":
                continue
            if exact or not isinstance(value, float):
                assert b[key] == value, key
            else:
                assert b[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


CONFIGS = {
    "svag l=2, m-batch G/N": dict(noise_every=0.5, noise_batches=4),
    "sgd l=1, extra G/N batches": dict(l=1.0, noise_fraction=0.5),
}


@pytest.mark.parametrize("extra", CONFIGS.values(), ids=CONFIGS.keys())
def test_stacked_plugin_runs_equal_the_runs_alone(tmp_path, plugin, extra):
    cfg = _cfg(f"{plugin}:make", **extra)
    res = run_replicas(cfg, SEEDS, [tmp_path / f"e{s}" for s in SEEDS], progress=False)
    assert [r.status for r in res] == ["completed"] * 3
    for s, together in zip(SEEDS, res):
        alone = run(replace(cfg, seed=s), tmp_path / f"s{s}", progress=False)
        assert together.records[-1]["G"] is not None
        _assert_same_records(alone.records, together.records)
        sa = torch.load(tmp_path / f"s{s}" / "checkpoint.pt", weights_only=False)
        sb = torch.load(tmp_path / f"e{s}" / "checkpoint.pt", weights_only=False)
        assert sa["model"].keys() == sb["model"].keys()
        for n in sa["model"]:
            torch.testing.assert_close(sb["model"][n], sa["model"][n], rtol=1e-9, atol=1e-12)


def test_stacked_plugin_run_resumes_bit_identically(tmp_path, plugin, monkeypatch):
    cfg = _cfg(f"{plugin}:make")
    straight = run_replicas(cfg, SEEDS, [tmp_path / f"a{s}" for s in SEEDS], progress=False)
    original = Group.step

    def step_then_sigint(self):
        out = original(self)
        if self.counters.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Group, "step", step_then_sigint)
    with pytest.raises(RunInterrupted):
        run_replicas(cfg, SEEDS, [tmp_path / f"b{s}" for s in SEEDS], progress=False)
    monkeypatch.setattr(Group, "step", original)
    resumed = run_replicas(cfg, SEEDS, [tmp_path / f"b{s}" for s in SEEDS], resume=True, progress=False)
    for a, b in zip(straight, resumed):
        _assert_same_records(a.records, b.records, exact=True)


def test_a_model_that_cannot_be_stacked_trains_seed_by_seed(tmp_path, plugin, capsys):
    cfg = _cfg(f"{plugin}:dropout")
    res = run_replicas(cfg, SEEDS[:2], [tmp_path / f"e{s}" for s in SEEDS[:2]], progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training the 2 seeds of model" in err[0] and "one by one" in err[0], err
    assert "random operation" in err[0]
    for s, together in zip(SEEDS, res):
        alone = run(replace(cfg, seed=s), tmp_path / f"s{s}", progress=False)
        _assert_same_records(alone.records, together.records, exact=True)


def test_compare_stacks_a_plugin_model_and_writes_the_sequential_records(tmp_path, plugin):
    cfg = _cfg(f"{plugin}:make", epochs=0.5, checkpoint_every=0.0)
    assert use_ensemble(cfg, 2, "on") and not use_ensemble(cfg, 2, "off") and not use_ensemble(cfg, 1, "on")
    assert use_ensemble(cfg, 2, "auto") == is_faster(cfg.model, 2)
    run_compare(cfg, [1, 2], SEEDS[:2], tmp_path / "on", ensemble="on", progress=False, log=lambda m: None)
    run_compare(cfg, [1, 2], SEEDS[:2], tmp_path / "off", ensemble="off", progress=False, log=lambda m: None)
    names = sorted(p.name for p in (tmp_path / "off").iterdir() if p.is_dir())
    assert names == ["l1_seed0", "l1_seed1", "l2_seed0", "l2_seed1"]
    for name in names:
        on, off = (RunFolder(tmp_path / way / name).records() for way in ("on", "off"))
        assert RunFolder(tmp_path / "on" / name).env()["trained_with_replicas"] == 2
        _assert_same_records(off, on)
