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


@pytest.mark.parametrize(("unit", "records"), [("step", 9), ("time", 6)])
def test_every_l_sees_the_same_lr_at_the_same_time(tmp_path, unit, records):
    """Through the real runner (timeline, optimizer clock, schedule): a ×0.1 decay after one epoch
    lands at the same continuous time for SGD (l = 1) and SVAG (l = 4), so records at the same
    times carry the same lr, and SVAG took exactly l steps per SGD step before and after it. On steps
    the grid is every quarter epoch of steps (9 records); on time every quarter of epoch 1's time, whose
    second epoch at 0.1·lr covers only the last stretch (6 records)."""
    cfg = RunConfig(data="teacher-student", n_train=128, n_test=64, model="mlp", lr=0.2, batch_size=16,
                    epochs=2.0, eval_every=0.25, schedule="multistep", milestones=(1.0,), gamma=0.1,
                    checkpoint_every=2.0, device="cpu", schedule_unit=unit)  # fmt: skip
    sgd, svag4 = (runner.run(replace(cfg, l=l), tmp_path / f"l{l}", progress=False).records for l in (1.0, 4.0))
    assert len(sgd) == len(svag4) == records
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
        S.OnSteps(S.MultiStep(0.8, milestones=(3.0, 5.0)), steps=7, lr_factor=2.0),
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
        (lambda: S.OnSteps(S.Constant(0.1), steps=0), r"steps must be an integer >= 1, got 0"),
        (lambda: S.OnSteps(S.Cosine(0.1, horizon=1.0), steps=S.MAX_STEPS + 1), r"steps must be at most 10000000 for"),
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


def _multisteplr_lrs(lr: float, milestones: list[int], gamma: float, steps: int) -> list[float]:
    """The LR of each step of ``torch.optim.SGD`` + ``MultiStepLR(milestones, gamma)`` stepped once per step."""
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("milestones", [(7.0, 13.0), (6.25, 12.5), (7.0, 7.0), (3.0, 19.0, 25.0)])
def test_multistep_on_steps_is_multisteplr_stepped_per_step(milestones):
    """``OnSteps(MultiStep(η, milestones=m), K)``, driven by the runner's rule ``lr = schedule(t)``, gives step
    ``k`` the LR of ``MultiStepLR(milestones=⌈m⌉)`` bit for bit (η = 0.3, γ = 0.1: ``(η·γ)·γ = 0.003`` while
    ``η·γ² = 0.0030000000000000005``; two milestones on one step decay by ``γ²`` at once, as torch does; one
    at or past step K never applies), and SVAG at ``l`` takes ``l^p`` steps at each. No list per step is kept."""
    from svag.clock import TIME_RTOL, Clock

    inner = S.MultiStep(0.3, milestones=milestones, gamma=0.1)
    want = _multisteplr_lrs(0.3, [math.ceil(m) for m in milestones], 0.1, 19)
    assert len(set(want)) > 1
    for power in (1, 2):  # SGD's clock and Adam's
        on = S.OnSteps(inner, steps=19, power=power)
        assert not hasattr(on._per_step, "lrs") or len(on._per_step.lrs) < 19  # its phases, not one LR per step
        ends = [sum(lr**power for lr in want[:k]) for k in range(20)]
        assert [on.time_at(k) for k in range(20)] == pytest.approx(ends, rel=1e-12) and on.horizon == on.time_at(19)
        for l in (1, 2):
            clock, t, lrs = Clock(power, l), 0.0, []
            while t < on.horizon * (1 - TIME_RTOL):
                lrs.append(on(t * (1 + TIME_RTOL)))  # as the runner asks it
                t += clock.step_time(lrs[-1])
            assert len(lrs) == on.svag_steps(l) == l**power * 19
            assert lrs == [lr for lr in want for _ in range(l**power)]


@pytest.mark.determinism  # a bit-for-bit claim: at one and at two threads (conftest)
def test_multistep_through_the_runner_is_sgd_with_multisteplr(tmp_path):
    """The issue's criterion: ``svag.runner.run`` of a multistep at ``l = 1`` is the SGD run a user writes with
    ``torch.optim.lr_scheduler.MultiStepLR`` stepped per step, milestones ``⌈m·n/B⌉``, bit for bit, where
    ``n/B = 6.25`` is not an integer (milestones at epochs 1 and 2: steps 7 and 13; ⌈3·6.25⌉ = 19 steps).
    The hand-written loop draws the same batches from the same sampler and seed tree and starts from the
    same initialization; both are computed here."""
    import torch
    import torch.nn.functional as F

    from svag.build import build_models
    from svag.data import PairSampler, load_dataset
    from svag.runfolder import RunFolder
    from svag.seeds import stream_seed

    cfg = RunConfig(data="teacher-student", n_train=100, n_test=50, model="mlp", lr=0.3, batch_size=16, epochs=3.0,
                    schedule="multistep", milestones=(1.0, 2.0), gamma=0.1, eval_every=0.5, checkpoint_every=0.0,
                    dtype="float64", device="cpu", seed=3).validate()  # fmt: skip
    rows = runner.run(cfg, tmp_path / "run", progress=False).records
    ran = RunFolder(tmp_path / "run").load_checkpoint()["model"]

    ds = load_dataset(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed)
    x, y = ds.train_x.to(torch.float64), ds.train_y
    (model,) = build_models(cfg, [cfg.seed], ds, torch.device("cpu"), torch.float64)
    sampler = PairSampler(ds.n_train, cfg.batch_size, pairs=False, seed=stream_seed(cfg.seed, "data_order"))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    steps_per_epoch = ds.n_train / cfg.batch_size
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [math.ceil(m * steps_per_epoch) for m in cfg.milestones],
                                                 gamma=cfg.gamma)  # fmt: skip
    lrs = []
    for _ in range(math.ceil(cfg.epochs * steps_per_epoch)):
        i, _ = sampler.next()
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        F.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
        sched.step()

    assert len(lrs) == rows[-1]["step"] == 19 and lrs[7] == 0.3 * 0.1 and lrs[13] == 0.3 * 0.1 * 0.1
    assert [r["lr"] for r in rows[1:]] == [lrs[r["step"] - 1] for r in rows[1:]]  # the LR of each record's step
    assert rows[-1]["epoch"] == 19 / 6.25
    state = model.state_dict()
    assert list(ran) == list(state)
    for name, value in state.items():
        assert torch.equal(ran[name], value), name


def test_original_steps_counts_the_simulated_runs_steps():
    """``k(t) = ∫ dt/(c·lr)^p``: j at a step-shaped schedule's boundary T_j (and half-way through a step, j + ½);
    piecewise on a multistep shaped on time; the midpoint rule on a cosine from η to f over H gives its closed
    form ∫ dt/lr = H/√(η·f) (from ∫_0^π du/(a + b·cos u) = π/√(a² − b²), a = (η+f)/2, b = (η−f)/2)."""
    from svag.clock import Clock

    sgd, adam = Clock(1), Clock(2)
    for inner in (S.MultiStep(0.3, milestones=(7.0, 13.0), gamma=0.1), S.Cosine(0.3, horizon=19.0)):
        on = S.OnSteps(inner, steps=19, power=2)
        ends = [on.time_at(k) for k in range(20)]
        assert S.original_steps(on, ends, adam) == pytest.approx(list(range(20)), rel=1e-12, abs=1e-12)
        assert S.original_steps(on, [(ends[8] + ends[9]) / 2], adam) == pytest.approx([8.5], rel=1e-12)
    multi = S.MultiStep(0.2, milestones=(3.2,), gamma=0.5)  # 16 steps of 0.2, then steps of 0.1
    assert S.original_steps(multi, [0.0, 1.6, 3.2, 4.0], sgd) == pytest.approx([0, 8, 16, 24], rel=1e-12)
    cos = S.Cosine(1.0, horizon=10.0)  # to 1e-3: almost all of its steps in the tail
    exact = 10.0 / math.sqrt(1.0 * 1e-3)  # 316 steps, where time over the peak LR's step says 10
    assert S.original_steps(cos, [5.0, 10.0], sgd)[1] == pytest.approx(exact, rel=1e-9)
