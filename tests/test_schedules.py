import math
from dataclasses import replace

import pytest

from svag import runner
from svag import schedules as S
from svag.config import RunConfig


def test_constant_and_multistep():
    assert S.Constant(0.3)(123.0) == 0.3
    m = S.MultiStep(0.8, milestones=(10.0, 20.0), gamma=0.1)
    assert m(0) == 0.8 and m(9.999) == 0.8
    assert m(10.0) == pytest.approx(0.08) and m(25) == pytest.approx(0.008)


def test_cosine_triangle_warmup_shapes():
    c = S.Cosine(1.0, horizon=10.0, final_lr=0.01)
    assert c(0) == 1.0 and c(10) == pytest.approx(0.01) and c(5) == pytest.approx(0.505)
    tri = S.Triangle(1.0, peak_time=2.0, horizon=10.0, start_lr=0.1, final_lr=0.1)
    assert tri(0) == pytest.approx(0.1) and tri(2) == 1.0 and tri(10) == pytest.approx(0.1)
    assert tri(6) == pytest.approx(0.55)
    w = S.Warmup(S.Constant(2.0), warmup_time=4.0, start_factor=0.5)
    assert w(0) == 1.0 and w(2) == 1.5 and w(4) == 2.0 and w(100) == 2.0


def test_every_l_sees_the_same_lr_at_the_same_time(tmp_path):
    """Through the real runner (timeline, optimizer clock, schedule): a ×0.1 decay after one epoch
    lands at the same continuous time for SGD (l = 1) and SVAG (l = 4), so records at the same
    times carry the same lr, and SVAG took exactly l steps per SGD step before and after it."""
    cfg = RunConfig(data="teacher-student", n_train=128, n_test=64, model="mlp", lr=0.2, batch_size=16,
                    epochs=2.0, eval_every=0.25, schedule="multistep", milestones=(1.0,), gamma=0.1,
                    checkpoint_every=2.0, device="cpu")  # fmt: skip
    sgd, svag4 = (runner.run(replace(cfg, l=l), tmp_path / f"l{l}", progress=False).records for l in (1.0, 4.0))
    assert len(sgd) == len(svag4) == 6  # the time grid: t = 0, every quarter of epoch 1, the end
    assert [r["lr"] for r in sgd] == [r["lr"] for r in svag4]
    assert sorted({r["lr"] for r in sgd}) == pytest.approx([0.02, 0.2])  # the decay happened inside the run
    for a, b in zip(sgd, svag4):
        assert b["sde_time"] == pytest.approx(a["sde_time"], rel=1e-9, abs=1e-12)
        assert b["step"] == 4 * a["step"]


@pytest.mark.parametrize(
    "sched",
    [
        S.Constant(0.1),
        S.MultiStep(0.8, milestones=(3.0, 5.0)),
        S.Cosine(0.4, horizon=9.0),
        S.Triangle(0.4, peak_time=1.0, horizon=3.0),
        S.Warmup(S.Cosine(0.4, horizon=9.0), warmup_time=1.0),
        S.Triangle(0.4, peak_time=0.5, horizon=3.0, cycles=2),
        S.OnSteps(S.Warmup(S.Cosine(0.4, horizon=12), warmup_time=3.0), steps=12, power=2, lr_factor=1.0),
    ],
)
def test_round_trip_through_dict(sched):
    again = S.schedule_from_dict(S.schedule_to_dict(sched))
    assert again == sched
    assert all(again(t) == sched(t) for t in (0.0, 0.5, 2.0, 8.0))


def test_positive_everywhere_defaults():
    for sched in (S.Cosine(1.0, horizon=1.0), S.Triangle(1.0, peak_time=0.5, horizon=1.0)):
        assert min(sched(t / 100) for t in range(200)) > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: S.Constant(0.0), r"lr must be a finite number > 0 .*got 0.0"),
        (lambda: S.Constant(math.nan), "lr must be"),
        (lambda: S.MultiStep(0.1, milestones=(5.0, 2.0)), "milestones must be increasing"),
        (lambda: S.Triangle(0.1, peak_time=5.0, horizon=2.0), "peak_time must be in"),
        (lambda: S.Triangle(0.1, peak_time=1.5, horizon=4.0, cycles=3), r"peak_time must be in \(0, horizon/cycles"),
        (lambda: S.Triangle(0.1, peak_time=0.5, horizon=4.0, cycles=0), "cycles must be an integer >= 1, got 0"),
        (lambda: S.OnSteps(S.Constant(0.1), steps=0), r"steps must be an integer in \[1, "),
        (lambda: S.OnSteps(S.Constant(0.1), steps=2.5), "steps must be an integer"),
        (lambda: S.Warmup(S.Constant(0.1), warmup_time=1.0, start_factor=0.0), "start_factor must be"),
        (lambda: S.schedule_from_dict({"kind": "exp"}), "unknown schedule kind 'exp'; valid"),
        (
            lambda: S.schedule_from_dict({"kind": "constant", "lr": 1.0, "x": 2}),
            r"unknown field\(s\) \['x'\]",
        ),
    ],
)
def test_bad_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _triangle_reference(t, lr, peak, horizon, start, final, cycles):
    """Obviously correct: find the cycle by walking, then interpolate on its two legs."""
    cycle = horizon / cycles
    t = min(max(t, 0.0), horizon)
    k = 0
    while k < cycles - 1 and t >= (k + 1) * cycle:
        k += 1
    u = t - k * cycle
    if u <= peak:
        return start + (lr - start) * (u / peak)
    return lr + (final - lr) * ((u - peak) / (cycle - peak))


@pytest.mark.parametrize("cycles", [1, 2, 3])
def test_triangle_cycles_against_a_reference(cycles):
    tri = S.Triangle(0.8, peak_time=1.0, horizon=6.0 * cycles, start_lr=0.02, final_lr=0.04, cycles=cycles)
    for i in range(0, 601 * cycles + 50):
        t = i / 100
        want = _triangle_reference(t, 0.8, 1.0, 6.0 * cycles, 0.02, 0.04, cycles)
        assert tri(t) == pytest.approx(want, rel=1e-12, abs=1e-15), t
    peaks = [tri(1.0 + 6.0 * k) for k in range(cycles)]
    assert peaks == pytest.approx([0.8] * cycles)  # every cycle reaches lr at its own peak


def test_on_steps_is_the_per_step_schedule_of_its_shape_and_every_l_takes_l_p_times_its_steps():
    """``OnSteps(inner, K)`` equals ``PerStep([inner(0), …, inner(K−1)])``; driving an SVAG clock by
    ``lr = schedule(t)`` takes ``l^p`` steps at each of those LRs."""
    from svag.clock import TIME_RTOL, Clock

    inner = S.Triangle(0.5, peak_time=2.5, horizon=10, cycles=2)
    for power in (1, 2):
        on = S.OnSteps(inner, steps=10, power=power)
        ref = S.PerStep(tuple(inner(float(k)) for k in range(10)), power)
        assert on.horizon == ref.horizon
        for l in (1, 2, 4):
            clock, t, lrs = Clock(power, l), 0.0, []
            while t < on.horizon * (1 - TIME_RTOL):
                lr = on(t)
                lrs.append(lr)
                t += clock.step_time(lr)
            per = round(l**power)
            assert len(lrs) == on.svag_steps(l) == per * 10
            assert lrs == [lr for lr in ref.lrs for _ in range(per)]


def test_a_cosine_on_steps_through_the_runner(tmp_path):
    """``--schedule-unit step`` through the real runner: SGD takes ⌈epochs·n/B⌉ steps, SVAG at l = 2
    exactly twice as many, and both reach every evaluation time with the same LR."""
    cfg = RunConfig(data="teacher-student", n_train=128, n_test=64, model="mlp", lr=0.2, batch_size=16,
                    epochs=1.5, eval_every=0.25, schedule="cosine", schedule_unit="step", checkpoint_every=2.0,
                    device="cpu")  # fmt: skip
    sgd, svag2 = (runner.run(replace(cfg, l=l), tmp_path / f"l{l}", progress=False).records for l in (1.0, 2.0))
    assert sgd[-1]["step"] == 12 and svag2[-1]["step"] == 24  # 1.5 epochs × 128/16 steps
    assert [r["lr"] for r in sgd] == [r["lr"] for r in svag2]
    assert [r["sde_time"] for r in svag2] == pytest.approx([r["sde_time"] for r in sgd], rel=1e-9)
    assert sgd[-1]["lr"] < 0.05 * 0.2  # the cosine decayed inside the run
