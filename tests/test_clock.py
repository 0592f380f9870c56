"""The clock: time per step, steps per original step, variance factor, heavy-ball LR (pure Python)."""

import json
import math

import pytest

import svag
from svag.clock import Clock, check_l, heavy_ball_lr, sgdm_lr


def test_clock_formulas():
    clock = Clock(power=2, l=4.0, lr_factor=2.0)
    assert clock.original_step_time(0.1) == pytest.approx((2.0 * 0.1) ** 2, rel=1e-15)
    assert clock.step_time(0.1) == pytest.approx((2.0 * 0.1 / 4.0) ** 2, rel=1e-15)
    assert clock.steps_per_original == clock.variance_factor == 16.0
    assert clock.steps_to(0.1, 0.4) == 160  # l²·T/(c·lr)² = 16·0.4/0.04
    sgd = Clock(power=1, l=3)
    assert (sgd.original_step_time(0.2), sgd.step_time(0.3), sgd.steps_per_original) == (0.2, 0.3 / 3, 3.0)
    assert sgd.steps_to(0.5, 5.0) == 30  # l·T/η
    assert Clock(1).steps_to(0.5, 0.0) == 0


@pytest.mark.parametrize(
    ("clock", "lr", "horizon"),
    [(Clock(1, 1.5), 0.5, 5.0), (Clock(2, 16.0), 0.1, 0.2), (Clock(1, 2.0, 1 / (1 - 0.9)), 0.01, 1.0)],
)
def test_clock_steps_to_times_step_time_is_the_horizon(clock, lr, horizon):
    k = clock.steps_to(lr, horizon)
    assert k * clock.step_time(lr) == pytest.approx(horizon, rel=1e-12)
    assert k / clock.steps_per_original * clock.original_step_time(lr) == pytest.approx(horizon, rel=1e-12)


def test_clock_steps_to_refuses_a_horizon_between_steps():
    with pytest.raises(ValueError, match=r"l·T/lr must be an integer number of SVAG steps, got 6.666.* step time 0.15"):
        Clock(1, 2.0).steps_to(0.3, 1.0)
    with pytest.raises(ValueError, match=r"l²·T/lr² must be an integer"):
        Clock(2).steps_to(0.1, 0.205)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got 0"):
        Clock(1).steps_to(0, 1.0)
    with pytest.raises(ValueError, match=r"horizon must be a finite number >= 0, got -1.0"):
        Clock(1).steps_to(0.1, -1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"power": 0}, r"power must be an integer >= 1, got 0"),
        ({"power": 1.0}, r"power must be an integer >= 1, got 1.0"),
        ({"power": 1, "l": 0.5}, r"l must be .*>= 1, got 0.5"),
        ({"power": 1, "lr_factor": 0.0}, r"lr_factor must be a finite number > 0, got 0.0"),
    ],
)
def test_clock_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Clock(**kwargs)


def test_clock_dict_round_trip():
    clock = Clock(2, 3.0, 1.25)
    d = json.loads(json.dumps(clock.to_dict()))
    assert d == {"power": 2, "l": 3.0, "lr_factor": 1.25}
    assert Clock.from_dict(d) == clock
    assert Clock.from_dict({"power": 1}) == Clock(1)
    with pytest.raises(ValueError, match="a clock needs keys power"):
        Clock.from_dict({"power": 1, "momentum": 0.9})


def test_heavy_ball_lr():
    assert heavy_ball_lr(0.1, 0.0) == 0.1
    assert heavy_ball_lr(0.1, 0.9) == pytest.approx(1.0, rel=1e-15)
    assert heavy_ball_lr(0.1, 0.9) == 0.1 * svag.SVAG.clock_for(heavy_ball=0.9).lr_factor  # one formula
    for bad in (1.0, -0.1, True):
        with pytest.raises(ValueError, match=rf"momentum must be a real number in \[0, 1\), got {bad!r}"):
            heavy_ball_lr(0.1, bad)


def test_sgdm_lr_inverts_heavy_ball_lr():
    assert heavy_ball_lr(sgdm_lr(0.2, 0.9), 0.9) == pytest.approx(0.2, rel=1e-15)
    with pytest.raises(ValueError, match=r"momentum must be a real number in \[0, 1\), got 1"):
        sgdm_lr(0.2, 1)


@pytest.mark.parametrize("bad", [0.5, math.inf, math.nan, "2", True])
def test_check_l(bad):
    with pytest.raises(ValueError, match="l must be a"):
        check_l(bad)
