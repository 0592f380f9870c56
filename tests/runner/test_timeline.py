"""The timeline: epochs converted to continuous time once, with the optimizer's clock."""

import math

import pytest

from svag import schedules as S
from svag.clock import TIME_RTOL, Clock
from svag.config import RunConfig
from svag.runner.timeline import Timeline

SGD, ADAM = Clock(power=1), Clock(power=2)


def test_constant_lr_times_on_the_sgd_clock():
    """τ = (n/B)·η; the grid is every eval_every epochs and the end."""
    cfg = RunConfig(lr=0.2, batch_size=16, epochs=2.5, eval_every=1.0, checkpoint_every=0.5)
    tl = Timeline.of(cfg, 256, SGD)
    assert tl.time_per_epoch == pytest.approx(16 * 0.2)
    assert tl.end_time == pytest.approx(2.5 * 3.2)
    assert tl.eval_times == pytest.approx((0.0, 3.2, 6.4, 8.0))
    assert tl.checkpoint_interval == pytest.approx(1.6)
    assert isinstance(tl.schedule, S.Constant)


def test_adam_clock_squares_the_lr():
    cfg = RunConfig(optimizer="adam", lr=0.01, batch_size=16, epochs=1.0)
    tl = Timeline.of(cfg, 256, ADAM)
    assert tl.time_per_epoch == pytest.approx(16 * 0.01**2)


@pytest.mark.parametrize("clock", [SGD, ADAM, Clock(power=1, lr_factor=1 / (1 - 0.9))], ids=["sgd", "adam", "sgdm"])
def test_milestones_are_where_the_simulated_run_reaches_them(clock):
    """Shaped on time: phase i at LR η·γ^i lasts its epochs × (n/B)·original_step_time(η·γ^i): the
    reference is a loop over the simulated run's own steps, adding the time of each step (n/B = 8 steps
    per epoch: the milestones fall on step boundaries, where both shapes agree)."""
    cfg = RunConfig(lr=0.3, batch_size=8, epochs=3.0, schedule="multistep", milestones=(1.0, 2.5), gamma=0.1,
                    schedule_unit="time")  # fmt: skip
    n = 64
    tl = Timeline.of(cfg, n, clock)
    t, times = 0.0, []
    for step in range(int(3.0 * n / 8)):
        epoch = step * 8 / n
        if times.__len__() < 2 and epoch >= (1.0, 2.5)[len(times)]:
            times.append(t)
        t += clock.original_step_time(0.3 * 0.1 ** sum(epoch >= m for m in (1.0, 2.5)))
    assert tl.schedule.milestones == pytest.approx(tuple(times), rel=1e-12)
    assert tl.end_time == pytest.approx(t, rel=1e-12)


def test_noise_window_and_warmup_in_time():
    cfg = RunConfig(lr=0.1, batch_size=10, epochs=4.0, warmup=1.0, noise_window=(2.0, 3.0), noise_every=0.5)
    tl = Timeline.of(cfg, 100, SGD)
    tau = 10 * 0.1
    assert (tl.noise_from, tl.noise_to, tl.m_interval) == pytest.approx((2 * tau, 3 * tau, 0.5 * tau))
    assert isinstance(tl.schedule, S.Warmup) and tl.schedule.warmup_time == pytest.approx(tau)
    assert tl.to_dict()["schedule"]["kind"] == "warmup"


@pytest.mark.parametrize("clock", [SGD, ADAM], ids=["sgd", "adam"])
def test_cosine_on_steps_runs_over_the_simulated_runs_steps(clock):
    """``schedule_unit="step"``: K = ⌈epochs·n/B⌉ steps at ``η_k = cosine(k/K)`` (after a warm-up of
    warmup·n/B steps); the end is the time they cover, Σ original_step_time(η_k)."""
    cfg = RunConfig(lr=0.3, batch_size=16, epochs=2.5, warmup=0.5, schedule="cosine", schedule_unit="step").validate()
    n = 100  # 6.25 steps per epoch: K = ⌈15.625⌉ = 16
    tl = Timeline.of(cfg, n, clock)
    assert isinstance(tl.schedule, S.OnSteps) and tl.schedule.steps == 16
    lrs = []
    for k in range(16):
        cos = 0.3e-3 + (0.3 - 0.3e-3) * 0.5 * (1 + math.cos(math.pi * k / 16))
        lrs.append(cos * (0.1 + 0.9 * min(k / 3.125, 1.0)))
    assert tl.end_time == pytest.approx(sum(clock.original_step_time(lr) for lr in lrs), rel=1e-12)
    t = 0.0
    for lr in lrs:
        assert tl.schedule(t) == pytest.approx(lr, rel=1e-12)
        t += clock.original_step_time(lr)


def test_two_cycle_triangle_on_time_and_steps():
    base = dict(lr=0.4, batch_size=10, epochs=4.0, schedule="triangle", cycles=2)
    on_time = Timeline.of(RunConfig(**base, schedule_unit="time").validate(), 100, SGD)
    assert on_time.end_time == pytest.approx(4 * 10 * 0.4)
    assert [on_time.schedule(t) for t in (0.0, 4.0, 8.0, 12.0, 16.0)] == pytest.approx([0.004, 0.4, 0.004, 0.4, 0.004])
    on_steps = Timeline.of(RunConfig(**base).validate(), 100, SGD)  # the default: over the steps
    lrs = on_steps.schedule._per_step.lrs
    assert len(lrs) == 40 and lrs[10] == pytest.approx(0.4) and lrs[30] == pytest.approx(0.4)
    assert lrs[20] == pytest.approx(0.004) and lrs[0] == pytest.approx(0.004)


def test_too_many_steps_for_a_per_step_schedule():
    cfg = RunConfig(
        lr=0.1, batch_size=1, epochs=1e6, eval_every=1e3, checkpoint_every=1e3, schedule="cosine", schedule_unit="step"
    ).validate()
    with pytest.raises(ValueError, match=r"schedule_unit step keeps one LR per step: epochs=1e\+06"):
        Timeline.of(cfg, 100, SGD)


def test_on_steps_evaluates_at_the_simulated_runs_step_boundaries():
    """Every l reaches T_k exactly, so the grid sits there: k = round(j·eval_every·n/B), and the end."""
    cfg = RunConfig(lr=0.3, batch_size=16, epochs=2.5, eval_every=0.5, schedule="triangle", cycles=2,
                    schedule_unit="step").validate()  # fmt: skip
    tl = Timeline.of(cfg, 100, SGD)  # 6.25 steps per epoch, 16 steps
    steps = [0, 3, 6, 9, 12, 16]  # round(j·3.125) = 0, 3, 6, 9, 12, (16: 15.625 rounds to 16, the end)
    assert tl.eval_times == pytest.approx([tl.schedule.time_at(k) for k in steps], rel=1e-15)
    assert tl.eval_epochs == pytest.approx([k / 6.25 for k in steps])
    assert tl.eval_times[-1] == tl.end_time
    on_time = Timeline.of(RunConfig(lr=0.2, batch_size=16, epochs=2.0, eval_every=0.5), 256, SGD)
    assert on_time.eval_epochs == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_next_checkpoint_on_time_and_on_steps():
    """On time: every checkpoint_every·τ (bit for bit ``after + interval``). On steps: at T_k for
    k = round(j·checkpoint_every·n/B), then none (the end saves anyway). Off: never."""
    on_time = Timeline.of(RunConfig(lr=0.2, batch_size=16, epochs=2.0, checkpoint_every=0.5), 256, SGD)
    assert on_time.next_checkpoint(0.0) == on_time.checkpoint_interval == pytest.approx(1.6)
    assert on_time.next_checkpoint(1.6) == 1.6 + 1.6 and on_time.checkpoint_times == ()
    cfg = RunConfig(lr=0.3, batch_size=16, epochs=2.5, checkpoint_every=1.0, schedule="cosine").validate()
    tl = Timeline.of(cfg, 100, SGD)  # 6.25 steps per epoch, 16 steps: checkpoints at steps 6, 12 and 16
    want = [tl.schedule.time_at(k) for k in (6, 12, 16)]
    assert tl.checkpoint_times == pytest.approx(want, rel=1e-15)
    got, t = [], 0.0
    while (t := tl.next_checkpoint(t)) != math.inf:
        got.append(t)
    assert got == list(tl.checkpoint_times)
    off = Timeline.of(RunConfig(lr=0.3, batch_size=16, epochs=2.5, checkpoint_every=0.0, schedule="cosine"), 100, SGD)
    assert off.next_checkpoint(0.0) == math.inf


# the held-out large-batch case of issue 23: MNIST-1D's 9600 samples at B = 2048 (4.6875 steps per epoch)
LARGE_BATCH = dict(lr=6.4, batch_size=2048, epochs=75.0, schedule="multistep", milestones=(60.0,), gamma=0.1)


def _steps_taken(tl: Timeline, clock: Clock) -> list[float]:
    """The LR of every step a run on ``clock`` takes through ``tl`` (the runner's rule, no training)."""
    t, lrs = 0.0, []
    while t < tl.end_time * (1 - TIME_RTOL):
        lrs.append(tl.schedule(t * (1 + TIME_RTOL)))
        t += clock.step_time(lrs[-1])
    return lrs


@pytest.mark.parametrize("power", [1, 2], ids=["sgd", "adam"])
def test_multistep_on_steps_takes_multisteplrs_steps_at_every_l(power):
    """On steps (the default): ⌈75·4.6875⌉ = 352 steps of the simulated run, 282 = ⌈60·4.6875⌉ of them at η,
    as MultiStepLR(milestones=[282]) over 352 steps; at l = 2 exactly l^p times each. Shaped on time the decay
    sits at t = 60·τ = 1800, inside step 281, which runs at η for its whole length: 345 steps at l = 1."""
    cfg = RunConfig(**LARGE_BATCH).validate()
    for l in (1.0, 2.0):
        clock = Clock(power, l)
        tl = Timeline.of(cfg, 9600, clock)
        assert isinstance(tl.schedule, S.OnSteps) and tl.schedule.steps == 352
        assert tl.schedule.time_at(282) == pytest.approx(282 * 6.4**power, rel=1e-12)
        per = round(l**power)
        assert _steps_taken(tl, clock) == [6.4] * 282 * per + [6.4 * 0.1] * 70 * per
        assert tl.schedule.svag_steps(l) == 352 * per
        assert tl.eval_epochs[-1] == 352 * 2048 / 9600 and tl.eval_times[-1] == tl.end_time
    on_time = Timeline.of(RunConfig(**LARGE_BATCH, schedule_unit="time").validate(), 9600, SGD)
    lrs = _steps_taken(on_time, SGD)
    assert len(lrs) == 345 and lrs.count(6.4) == 282  # 7 steps (2% of the run) short of MultiStepLR's 352
    assert on_time.eval_epochs[-1] == pytest.approx(75.0, rel=1e-12)  # the SDE's count, not 1845/τ = 61.5


def test_on_steps_epochs_and_noise_window_are_the_simulated_runs_steps():
    """Step-shaped multistep: evaluations every eval_every·n/B steps over both phases, with the epochs the
    records count (k·B/n); the G/N window from the first step at or past START·n/B to the one at END·n/B."""
    cfg = RunConfig(**LARGE_BATCH, eval_every=10.0, noise_window=(50.0, 70.0)).validate()
    tl = Timeline.of(cfg, 9600, SGD)
    steps = [0, 47, 94, 141, 188, 234, 281, 328, 352]  # round(j·46.875), and the end
    assert tl.eval_epochs == tuple(k * 2048 / 9600 for k in steps)
    assert tl.eval_times == pytest.approx([tl.schedule.time_at(k) for k in steps], rel=1e-15)
    assert (tl.noise_from, tl.noise_to) == (tl.schedule.time_at(235), tl.schedule.time_at(329))  # ⌈234.4⌉, ⌈328.1⌉
    assert Timeline.of(RunConfig(**LARGE_BATCH).validate(), 9600, SGD).noise_to == math.inf


def test_time_shaped_epochs_are_the_simulated_runs_not_time_over_tau():
    """On time, eval_epochs count the steps that cover [0, t] (svag.schedules.original_steps), /(n/B): a
    decay by γ makes each later unit of time 1/γ steps; at a constant LR it is t/τ."""
    cfg = RunConfig(lr=0.2, batch_size=16, epochs=2.0, eval_every=0.5, schedule="multistep", milestones=(1.0,),
                    schedule_unit="time").validate()  # fmt: skip
    tl = Timeline.of(cfg, 256, SGD)  # τ = 3.2; the second epoch covers 0.32
    assert tl.eval_times == pytest.approx([0.0, 1.6, 3.2, 3.52])
    assert tl.eval_epochs == pytest.approx([0.0, 0.5, 1.0, 2.0], rel=1e-12)
    warm = Timeline.of(RunConfig(lr=0.2, batch_size=16, epochs=2.0, warmup=1.0).validate(), 256, SGD)
    # a linear warm-up from 0.1·η over τ: ∫ dt / (η·(0.1 + 0.9·t/τ)) = τ·ln(10)/(0.9·η) steps, i.e. ln(10)/0.9 epochs
    assert warm.eval_epochs[-1] == pytest.approx(math.log(10) / 0.9 + 1.0, rel=1e-6)


def test_a_multistep_needs_no_list_per_step():
    """A multistep on steps is held as its phases: 10^8 simulated steps are fine. With a warm-up it keeps one LR
    per step, and past MAX_STEPS it says so."""
    big = dict(lr=0.1, batch_size=1, epochs=1e6, eval_every=1e3, checkpoint_every=1e3, schedule="multistep",
               milestones=(5e5,))  # fmt: skip
    tl = Timeline.of(RunConfig(**big).validate(), 100, SGD)
    assert tl.schedule.steps == 10**8 and tl.schedule(tl.schedule.time_at(5 * 10**7)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"at most 1e\+07 are allowed for a multistep with a warm-up"):
        Timeline.of(RunConfig(**big, warmup=1.0).validate(), 100, SGD)
