import math

import pytest

from svag import schedules as S


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


def test_same_lr_of_t_for_every_l():
    """The schedule reads continuous time only: SVAG at l and SGD see the same lr(t)."""
    sched = S.MultiStep(0.5, milestones=(1.0,), gamma=0.1)
    for l in (1, 2, 4, 8):
        t, seen = 0.0, []
        while t < 2.0:
            lr = sched(t)
            seen.append((t, lr))
            t += lr / l
        assert all(lr == pytest.approx(0.5 if t < 1.0 else 0.05) for t, lr in seen)


@pytest.mark.parametrize(
    "sched",
    [
        S.Constant(0.1),
        S.MultiStep(0.8, milestones=(3.0, 5.0)),
        S.Cosine(0.4, horizon=9.0),
        S.Triangle(0.4, peak_time=1.0, horizon=3.0),
        S.Warmup(S.Cosine(0.4, horizon=9.0), warmup_time=1.0),
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
