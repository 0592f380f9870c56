"""The timeline: epochs converted to continuous time once, with the optimizer's clock."""

import pytest

from svag import schedules as S
from svag.clock import Clock
from svag.config import RunConfig
from svag.timeline import Timeline

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
    """Phase i at LR η·γ^i lasts its epochs × (n/B)·original_step_time(η·γ^i): the reference is a
    loop over the simulated run's own steps, adding the time of each step."""
    cfg = RunConfig(lr=0.3, batch_size=8, epochs=3.0, schedule="multistep", milestones=(1.0, 2.5), gamma=0.1)
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
