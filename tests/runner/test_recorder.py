"""Records: the task's loss and metrics, G/N fields with their covariance, the shared time grid."""

import math
import os
import signal
from dataclasses import replace

import pytest

from svag import runner
from svag.config import RunConfig
from svag.noise import pool_window
from svag.runfolder import RunFolder
from svag.runner.loop import Group

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
    step = Group.step

    def step_then_sigint(self):
        out = step(self)
        if self.counters.step == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Group, "step", step_then_sigint)
    with pytest.raises(runner.RunInterrupted):
        runner.run(cfg, tmp_path / "r", progress=False)
    monkeypatch.setattr(Group, "step", step)
    kept = len(RunFolder(tmp_path / "r").records())
    res = runner.run(cfg, tmp_path / "r", resume=True, progress=False, sinks=[lambda n, k: ListSink(seen, n, k)])
    assert seen[0] == ("open", "r", kept) and seen[-1] == ("close", "r", None) and 0 < kept < len(res.records)
    assert [(i, row) for _, i, row in seen[1:-1]] == list(enumerate(res.records))[kept:]
