"""svag.runner.budget: what a run implies (batches, optimizer steps, memory) is refused before it starts.

Sizes are chosen so that each refusal holds on any machine (terabytes of data or parameters).
"""

import math

import pytest

from svag.config import RunConfig
from svag.data import DataError, data_size, load_dataset
from svag.optim import SVAG
from svag.runner.budget import MAX_STEPS, check_budget, optimizer_steps
from svag.runner.timeline import Timeline
from svag.schedules import Constant, Cosine

TINY = dict(data="teacher-student", n_train=256, n_test=64, batch_size=16, epochs=1.0, device="cpu")


def test_a_small_run_passes_and_counts_its_steps():
    budget = check_budget(RunConfig(**TINY, l=4.0))
    assert (budget.n_train, budget.n_test) == (256, 64)
    assert budget.steps == pytest.approx(1.0 * 256 / 16 * 4, rel=1e-12)  # epochs · n/B · l at constant LR
    assert budget.data_bytes == (256 + 64) * 20 * 4


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"batch_size": 1000}, r"batch_size=1000 is larger than the training set \(n_train=256\)"),
        (
            {"l": 2.0, "batch_size": 200},
            r"batch_size=200: SVAG \(l=2\) draws two disjoint .* 2·B = 400 > n_train = 256",
        ),
        ({"l": 1e9}, r"this run takes 1.6e\+10 optimizer steps .* at most 1e\+09"),
        ({"n_train": 10**12}, r"n_train=1000000000000 \+ n_test=64 samples of shape \(20,\) take .* GiB"),
        ({"width": 1e7}, r"width=1e\+07 makes a layer of mlp too large to allocate"),
        ({"width": 1e4}, r"width=10000 gives mlp 1.64e\+12 parameters × 1 seed\(s\), at least .* GiB"),
        ({"width": 1e-3}, r"width 0.001 leaves a layer of 128 channels .* needs width >= 1/128"),
        ({"data": "cifar10", "n_train": 60000}, r"cifar10 has 50000 train samples, got n_train=60000"),
        ({"data": "imagenet"}, r"unknown data set 'imagenet'"),
    ],
)
def test_refusals_name_the_value_and_the_limit(change, match):
    with pytest.raises(ValueError, match=match):
        check_budget(RunConfig(**{**TINY, **change}))


def test_replacement_sampling_allows_2b_above_n():
    check_budget(RunConfig(**{**TINY, "l": 2.0, "batch_size": 200, "sampling": "replacement"}))


def test_steps_match_the_runners_count():
    """The estimate is what the runner would do: at constant LR exactly; with a decayed LR (cosine,
    floor 1e-3·η) within 1% of stepping the schedule (each step covers step_time(lr(t)))."""
    clock = SVAG.clock_for(2.0)
    assert optimizer_steps(Constant(0.1), 5.0, clock) == pytest.approx(5.0 / 0.05, rel=1e-12)
    sched, end = Cosine(0.1, horizon=2.0), 2.0
    t, k = 0.0, 0
    while t < end:
        t += clock.step_time(sched(t))
        k += 1
    assert optimizer_steps(sched, end, clock) == pytest.approx(k, rel=0.01)
    assert MAX_STEPS == 10**9


def test_data_size_matches_what_the_loaders_return():
    for name, n_train, n_test in (("teacher-student", 50, 20), ("mnist1d", None, None)):
        size = data_size(name, n_train, n_test)
        ds = load_dataset(name, n_train=n_train, n_test=n_test)
        assert (size.n_train, size.n_test, size.input_shape, size.num_classes) == (
            ds.n_train, ds.n_test, ds.input_shape, ds.num_classes)  # fmt: skip
    with pytest.raises(DataError, match=r"fashion-mnist has 10000 test samples, got n_test=10001; pass at most 10000"):
        data_size("fashion-mnist", n_test=10001)


def test_records_are_bounded_by_epochs_over_the_interval_for_any_gamma():
    """RunConfig.validate bounds records by epochs/eval_every: true because gamma <= 1 never lengthens a phase."""
    cfg = RunConfig(**TINY, schedule="multistep", milestones=(0.25, 0.5), gamma=1.0, eval_every=0.125).validate()
    clock = SVAG.clock_for(1.0)
    assert len(Timeline.of(cfg, 256, clock).eval_times) == math.floor(cfg.epochs / cfg.eval_every) + 1


def test_steps_of_a_schedule_over_the_steps_are_exact():
    """``OnSteps``: l^p SVAG steps per step of the simulated run, exactly; a non-integer l^p falls back to the
    integral, which stepping the schedule misses by less than one step per schedule step (a step that
    straddles a boundary covers its time at the earlier LR)."""
    from svag.clock import Clock
    from svag.schedules import Cosine, OnSteps

    sched = OnSteps(Cosine(0.1, horizon=40), steps=40)
    assert optimizer_steps(sched, sched.horizon, Clock(1, 4.0)) == 160.0
    adam = OnSteps(Cosine(0.1, horizon=40), steps=40, power=2)  # Adam's clock: l² = 4 steps per step
    assert optimizer_steps(adam, adam.horizon, Clock(2, 2.0)) == 160.0
    clock, t, k = Clock(1, 1.5), 0.0, 0
    while t < sched.horizon * (1 - 1e-9):
        t += clock.step_time(sched(t))
        k += 1
    assert abs(optimizer_steps(sched, sched.horizon, clock) - k) < sched.steps
    assert optimizer_steps(sched, sched.horizon, clock) == pytest.approx(1.5 * 40, rel=0.01)  # ∫ = l·steps
