"""The runner's micro-batches (``--micro-batches M``) and its free G/N from them (``--noise-source microbatch``,
issue 25): the update of the unsplit step up to rounding, the same trajectory as ``pairs`` and agreement of
the two estimators within their pooled interval, stacked seeds equal to single runs.

Statistical check (test_micro_estimate_agrees_with_pairs_on_the_same_trajectory): teacher-student MLP, seed 0,
float64, 4 SGD-equivalent epochs of B = 16 (64 steps), every step estimated by both (pairs: an extra batch per
step, noise_fraction 1); the two pooled windows' G, N and G/N differ by less than 3 SEs of their difference
(the estimates are independent given the trajectory: the extra batch vs the step's own micro-batches).
"""

from dataclasses import replace

import pytest

from svag.config import RunConfig
from svag.noise import pool_window
from svag.records import read_jsonl
from svag.runner import run, run_replicas

FAST = RunConfig(
    data="teacher-student", n_train=256, n_test=128, model="mlp", lr=0.2, batch_size=16, epochs=2.0,
    eval_every=0.5, checkpoint_every=0.0, device="cpu", dtype="float64",
)  # fmt: skip


def _rows(path):
    return read_jsonl(path / "metrics.jsonl")


def test_micro_batches_give_the_unsplit_run_up_to_rounding(tmp_path):
    """float64: every record's train and test loss of M = 4 equals M = 1 within 1e-10 (relative)."""
    run(FAST, tmp_path / "a", progress=False)
    run(replace(FAST, micro_batches=4), tmp_path / "b", progress=False)
    for a, b in zip(_rows(tmp_path / "a"), _rows(tmp_path / "b"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-10)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-10)


def test_micro_estimate_agrees_with_pairs_on_the_same_trajectory(tmp_path):
    cfg = replace(FAST, micro_batches=4, epochs=4.0, noise_fraction=1.0)
    run(cfg, tmp_path / "pairs", progress=False)
    run(replace(cfg, noise_source="microbatch"), tmp_path / "micro", progress=False)
    pairs, micro = _rows(tmp_path / "pairs"), _rows(tmp_path / "micro")
    for a, b in zip(pairs, micro, strict=True):  # the estimate does not touch the trajectory
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-12)
        if b["G"] is not None:  # the record at t = 0 has no estimate
            assert a["noise_source"] == "pairs" and b["noise_source"] == "microbatch"
    p, m = pool_window(pairs), pool_window(micro)
    assert p.m == m.m == 64
    for name in ("G", "N", "ratio"):
        diff = getattr(m, name) - getattr(p, name)
        se = (getattr(m, f"{name}_se") ** 2 + getattr(p, f"{name}_se") ** 2) ** 0.5
        assert abs(diff) < 3 * se, (name, getattr(m, name), getattr(p, name), se)


def test_micro_noise_every_kth_step_pools_those_steps_of_the_same_trajectory(tmp_path):
    """--micro-noise-every 4: the trajectory is bit for bit unchanged and a quarter of the 32 steps are measured."""
    cfg = replace(FAST, micro_batches=4, noise_source="microbatch")
    run(cfg, tmp_path / "all", progress=False)
    run(replace(cfg, micro_noise_every=4), tmp_path / "k", progress=False)
    every, kth = _rows(tmp_path / "all"), _rows(tmp_path / "k")
    for a, b in zip(every, kth, strict=True):
        assert b["train_loss"] == a["train_loss"]
    assert pool_window(every).m == 32 and pool_window(kth).m == 8


def test_stacked_seeds_equal_single_runs(tmp_path):
    """Two seeds stacked (micro-batches split along the batch axis, per-replica sums) write the records of the
    two single runs: losses and G, N within 1e-9 (relative; batched kernels round differently)."""
    cfg = replace(FAST, micro_batches=2, noise_source="microbatch")
    run_replicas(cfg, [0, 1], [tmp_path / "e0", tmp_path / "e1"], progress=False)
    for s in (0, 1):
        run(replace(cfg, seed=s), tmp_path / f"s{s}", progress=False)
        for a, b in zip(_rows(tmp_path / f"s{s}"), _rows(tmp_path / f"e{s}"), strict=True):
            assert (a["G"] is None) == (b["G"] is None)  # the record at t = 0 has no estimate
            for key in ("train_loss", "G", "N") if a["G"] is not None else ("train_loss",):
                assert b[key] == pytest.approx(a[key], rel=1e-9), key


def test_svag_runs_with_micro_batches(tmp_path):
    """l = 2 with M = 2: the pairs of SVAG's two batches still record G/N; the run equals M = 1 up to rounding."""
    run(replace(FAST, l=2.0), tmp_path / "a", progress=False)
    run(replace(FAST, l=2.0, micro_batches=2), tmp_path / "b", progress=False)
    for a, b in zip(_rows(tmp_path / "a"), _rows(tmp_path / "b"), strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-10)
        assert b["G"] == (None if a["G"] is None else pytest.approx(a["G"], rel=1e-8))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(micro_batches=3), "micro_batches must divide batch_size=16 (equal micro-batches), got 3"),
        (dict(micro_batches=0), "micro_batches must be an integer > 0, got 0"),
        (dict(noise_source="ranks"), "noise_source must be one of pairs, microbatch, got 'ranks'"),
        (dict(noise_source="microbatch"), "noise_source microbatch needs --micro-batches >= 2"),
        (dict(noise_source="microbatch", micro_batches=2, l=2.0), "noise_source microbatch applies to l = 1"),
        (dict(micro_batches=2, gradient_noise="gaussian"), "micro_batches applies to minibatch runs"),
        (dict(micro_noise_every=0), "micro_noise_every must be an integer > 0, got 0"),
        (dict(micro_noise_every=2.5), "micro_noise_every must be an integer > 0, got 2.5"),
    ],
)
def test_bad_values_raise(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replace(FAST, **change).validate()
