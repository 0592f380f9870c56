"""Records: the task's loss and metrics, G/N fields with their covariance, the shared time grid."""

import math
from dataclasses import replace

import pytest
import torch

from helpers import interrupt_at_step, strip_wall_time
from svag import runner
from svag.config import RunConfig
from svag.noise import pool_window
from svag.runfolder import RunFolder
from svag.runner.loop import Group
from svag.runner.recorder import NOISE_PRE_KEYS, Recorder

FAST = RunConfig(data="teacher-student", n_train=256, n_test=128, lr=0.2, batch_size=16, epochs=1.0,
                 eval_every=0.25, checkpoint_every=1.0, device="cpu", noise_fraction=0.5)  # fmt: skip


def test_another_loss_needs_no_edit_of_the_runner(tmp_path):
    """loss = mse (squared error to one-hot labels): records carry its loss and accuracy."""
    res = runner.run(replace(FAST, loss="mse"), tmp_path / "r", progress=False)
    derived = RunFolder(tmp_path / "r").derived()
    assert derived["task"] == "mse" and derived["metrics"] == ["acc"]
    first, last = res.records[0], res.records[-1]
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(last)
    assert 0 < last["train_loss"] < first["train_loss"] < 1  # mean squared error of one-hot targets
    ce = runner.run(FAST, tmp_path / "ce", progress=False).records[-1]
    assert ce["train_loss"] != last["train_loss"]


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_noise_fields_and_their_window_pool(tmp_path, l):
    """Every record after t = 0 carries G, N, their SEs and covariance; pooling the records of the run
    gives the count-weighted means (SGD: an extra batch at half the steps; SVAG: every step)."""
    rows = runner.run(replace(FAST, l=l), tmp_path / "r", progress=False).records
    assert rows[0]["G"] is None and rows[0]["noise_count"] is None
    for r in rows[1:]:
        assert r["noise_count"] > 1 and math.isfinite(r["GN_cov"]) and r["gn_ratio"] == pytest.approx(r["G"] / r["N"])
    pooled = pool_window(rows[1:])
    counts = [r["noise_count"] for r in rows[1:]]
    assert pooled.m == sum(counts)
    assert pooled.G == pytest.approx(sum(c * r["G"] for c, r in zip(counts, rows[1:])) / sum(counts), rel=1e-12)


class ListSink:
    """A record sink that keeps what it is handed (name, index, row) in a shared list."""

    def __init__(self, seen: list, name: str, kept: int) -> None:
        self.seen, self.name = seen, name
        seen.append(("open", name, kept))

    def add(self, row: dict, index: int) -> None:
        self.seen.append((self.name, index, dict(row)))

    def close(self) -> None:
        self.seen.append(("close", self.name, None))


def test_the_recorder_hands_every_record_to_each_sink(tmp_path):
    """Sinks (TensorBoard is one) receive each replica's records as metrics.jsonl holds them, numbered from
    the records the folder already keeps; a resumed run opens them at that number and closes them at the end."""
    seen: list = []
    cfg = replace(FAST, l=2.0, checkpoint_every=0.5)
    folders = [tmp_path / "a", tmp_path / "b"]
    results = runner.run_replicas(cfg, [0, 1], folders, progress=False, sinks=[lambda n, k: ListSink(seen, n, k)])
    assert [x for x in seen if x[0] == "open"] == [("open", "a", 0), ("open", "b", 0)]
    assert [x[:2] for x in seen if x[0] == "close"] == [("close", "a"), ("close", "b")]
    for folder, res in zip(folders, results):
        got = [(i, row) for name, i, row in seen if name == folder.name]
        assert [i for i, _ in got] == list(range(len(res.records))) and len(got) > 2
        assert [row for _, row in got] == RunFolder(folder).records()


def test_a_resumed_run_numbers_its_sinks_records_from_those_it_keeps(tmp_path, monkeypatch):
    """Stopped by SIGINT at step 10 (of 16), the run keeps its records up to its checkpoint; resumed, its
    sink opens at that count and receives the later records only, numbered on."""
    seen: list = []
    cfg = replace(FAST, checkpoint_every=0.25)
    interrupt_at_step(monkeypatch, cfg, tmp_path / "r", 10)
    kept = len(RunFolder(tmp_path / "r").records())
    res = runner.run(cfg, tmp_path / "r", resume=True, progress=False, sinks=[lambda n, k: ListSink(seen, n, k)])
    assert seen[0] == ("open", "r", kept) and seen[-1] == ("close", "r", None) and 0 < kept < len(res.records)
    assert [(i, row) for _, i, row in seen[1:-1]] == list(enumerate(res.records))[kept:]


ADAM = replace(FAST, optimizer="adam", lr=0.01, dtype="float64")


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_adaptive_runs_record_the_preconditioned_ratio(tmp_path, l):
    """Adam: each record after t = 0 carries G_pre, ..., noise_count_pre from the same pairs as G/N, less the
    first step's (no second moment yet); pool_window(suffix="_pre") pools them. SGD records hold None there."""
    rows = runner.run(replace(ADAM, l=l), tmp_path / "adam", progress=False).records
    assert all(rows[0][k] is None for k in NOISE_PRE_KEYS)
    for i, r in enumerate(rows[1:]):
        assert r["noise_count_pre"] == r["noise_count"] - (i == 0)
        assert r["gn_ratio_pre"] == pytest.approx(r["G_pre"] / r["N_pre"]) and r["gn_ratio_pre"] != r["gn_ratio"]
        assert r["N_pre"] > 0 and math.isfinite(r["GN_pre_cov"]) == (r["noise_count_pre"] > 1)
    pooled = pool_window(rows, suffix="_pre")
    assert pooled.m == sum(r["noise_count_pre"] for r in rows[1:])
    sgd = runner.run(replace(FAST, l=l), tmp_path / "sgd", progress=False).records
    assert all(r[k] is None for r in sgd for k in NOISE_PRE_KEYS) and sgd[-1]["noise_count"]


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_the_preconditioner_weights_are_taken_before_the_update(tmp_path, monkeypatch, l):
    """The weights a step's pair is weighed with are those of the optimizer's state before that step's update
    (independent of the pair; after it, v holds the pair's own gradient), at l = 1 (extra batch) and l = 2."""
    seen, before = [], {}
    step, add_pair = Group.step, Recorder.add_pair

    def step_noting_the_state(self):
        before["w"] = self.opt.preconditioner_weights(self.engine.params)
        return step(self)

    def add_pair_noting_weights(self, replicas, g1, g2, weights=None):
        seen.append((weights, before["w"]))
        return add_pair(self, replicas, g1, g2, weights)

    monkeypatch.setattr(Group, "step", step_noting_the_state)
    monkeypatch.setattr(Recorder, "add_pair", add_pair_noting_weights)
    runner.run(replace(ADAM, l=l, epochs=0.5), tmp_path / "r", progress=False)
    assert len(seen) > 2 and seen[0] == (None, None)
    for got, want in seen[1:]:
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_an_adam_run_stopped_mid_interval_resumes_bit_identically(tmp_path, monkeypatch):
    """Adam at l = 2, stopped by SIGINT at step 10 (inside the first record interval: the preconditioned
    accumulator holds 9 estimates in the checkpoint) and resumed, writes the records of the straight run."""
    cfg = replace(ADAM, l=2.0, checkpoint_every=0.5)
    straight = runner.run(cfg, tmp_path / "straight", progress=False).records
    interrupt_at_step(monkeypatch, cfg, tmp_path / "r", 10)
    assert RunFolder(tmp_path / "r").load_checkpoint()["acc_pre"]["count"] == 9
    again = runner.run(cfg, tmp_path / "r", resume=True, progress=False).records
    assert strip_wall_time(again) == strip_wall_time(straight) and straight[1]["noise_count_pre"]


def test_stacked_adam_replicas_record_their_own_preconditioned_ratio(tmp_path):
    """Two seeds trained stacked (one optimizer state of (K, ...) tensors) record the preconditioned ratio of
    their separate runs (float64, 1e-9)."""
    cfg = replace(ADAM, l=2.0, epochs=0.5)
    together = runner.run_replicas(cfg, [0, 1], [tmp_path / "e0", tmp_path / "e1"], progress=False)
    for seed, res in enumerate(together):
        alone = runner.run(replace(cfg, seed=seed), tmp_path / f"s{seed}", progress=False).records
        for a, b in zip(alone[1:], res.records[1:], strict=True):
            assert b["noise_count_pre"] == a["noise_count_pre"]
            for key in ("G_pre", "N_pre", "gn_ratio_pre"):
                assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), (seed, key)
