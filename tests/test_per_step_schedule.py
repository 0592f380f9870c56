"""A per-step schedule of the simulated run carried to every l, on SGD's clock (t = Σ η) and Adam's (t = Σ η²)."""

import math

import pytest
import torch
from torch import nn

import svag
from svag.schedules import PerStep, schedule_from_dict, schedule_to_dict


def _warmup_cosine(n=12, peak=0.05, warmup=3):
    """A GPT script's schedule, written per step: linear warm-up from peak/warmup, then cosine to peak/10."""
    out = []
    for k in range(n):
        if k < warmup:
            out.append(peak * (k + 1) / warmup)
        else:
            frac = (k - warmup) / (n - warmup - 1)
            out.append(peak / 10 + 0.5 * (peak - peak / 10) * (1 + math.cos(math.pi * frac)))
    return out


def _drive(opt, schedule, steps, model):
    """SVAG steps with group["lr"] = schedule(sde_time); the LR of each step."""
    seen = []
    for k in range(steps):
        lr = schedule(opt.sde_time)
        for group in opt.param_groups:
            group["lr"] = lr
        seen.append(lr)
        g = torch.Generator().manual_seed(k)
        b1, b2 = [(torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(2)]
        svag.train_step(opt, lambda b: nn.functional.cross_entropy(model(b[0]), b[1]), b1, b2)
    return seen


@pytest.mark.parametrize(
    ("make", "power"),
    [(lambda p, l: svag.SVAG(p, lr=1.0, l=l), 1), (lambda p, l: svag.SVAGAdamW(p, lr=1.0, l=l, weight_decay=0.1), 2)],
)
@pytest.mark.parametrize("l", [1, 2, 4])
def test_every_l_takes_l_to_the_p_steps_at_each_lr_of_the_simulated_run(make, power, l):
    lrs = _warmup_cosine()
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = make(model.parameters(), l)
    sched = PerStep.for_optimizer(lrs, opt)
    assert sched.power == power and sched.svag_steps(l) == l**power * len(lrs)
    seen = _drive(opt, sched, sched.svag_steps(l), model)
    assert seen == [lr for lr in lrs for _ in range(l**power)]
    assert opt.sde_time == pytest.approx(sum(lr**power for lr in lrs), rel=1e-12)
    assert sched.horizon == pytest.approx(opt.sde_time, rel=1e-12)


def test_at_l1_it_is_the_per_step_schedule_of_torch_adamw_bit_for_bit():
    lrs = _warmup_cosine(n=10, peak=0.01)
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opt_a = svag.SVAGAdamW(a.parameters(), lr=lrs[0], weight_decay=0.1)
    opt_b = torch.optim.AdamW(b.parameters(), lr=lrs[0], weight_decay=0.1)
    sched = PerStep.for_optimizer(lrs, opt_a)
    _drive(opt_a, sched, len(lrs), a)
    for k, lr in enumerate(lrs):
        opt_b.param_groups[0]["lr"] = lr
        g = torch.Generator().manual_seed(k)
        x, y = torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)
        opt_b.zero_grad()
        nn.functional.cross_entropy(b(x), y).backward()
        opt_b.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_heavy_ball_clock_and_round_trip_and_bad_input():
    sched = PerStep.for_clock([0.1, 0.2], svag.SVAG.clock_for(2.0, heavy_ball=0.5))
    assert sched.lr_factor == 2.0 and sched.horizon == pytest.approx(0.6)
    assert sched(0.0) == 0.1 and sched(0.2) == 0.2 and sched(100.0) == 0.2
    assert schedule_from_dict(schedule_to_dict(sched)) == sched
    with pytest.raises(ValueError, match=r"lrs\[1\] must be a finite number > 0 \(time stops at lr = 0\), got 0"):
        PerStep([0.1, 0])
    with pytest.raises(ValueError, match="must hold the LR of at least one step"):
        PerStep([])
    with pytest.raises(ValueError, match=r"l\^p = 2\.25 is not an integer"):
        PerStep([0.1], power=2).svag_steps(1.5)


def test_time_at_a_step_is_the_sum_of_the_steps_before_it():
    s = PerStep((0.1, 0.2, 0.4), power=2)
    assert [s.time_at(k) for k in range(4)] == pytest.approx([0.0, 0.01, 0.05, 0.21], rel=1e-12)
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match=r"step must be an integer in \[0, 3\]"):
            s.time_at(bad)
