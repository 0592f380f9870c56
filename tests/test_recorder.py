"""Records: the task's loss and metrics, G/N fields with their covariance, the shared time grid."""

import math
from dataclasses import replace

import pytest

from svag import runner
from svag.config import RunConfig
from svag.noise import pool_window
from svag.runfolder import RunFolder

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
