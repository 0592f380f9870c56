"""SVAG honours torch.optim's optimizer contract (cf. PyTorch's test/test_optim.py)."""

import copy

import pytest
import torch
from torch import nn

import svag


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))


def _loss(model, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=next(model.parameters()).dtype)
    y = torch.randint(0, 3, (16,), generator=g)
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_l1_bit_identical_to_sgd(dtype, wd):
    a, b = _model().to(dtype), _model().to(dtype)
    opt_a = svag.SVAG(a.parameters(), lr=0.3, l=1, weight_decay=wd)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=wd)
    for k in range(25):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            _loss(m, k).backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_step_rule_with_weight_decay_not_amplified():
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = svag.SVAG([p], lr=0.5, l=4, weight_decay=0.1)
    p.grad = torch.tensor([0.3, 0.7])
    opt.step()
    expected = torch.tensor([1.0, -2.0]) - (0.5 / 4) * (torch.tensor([0.3, 0.7]) + 0.1 * torch.tensor([1.0, -2.0]))
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_goes_downhill():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.5, l=2)
    first = _loss(model, 0).item()
    for _ in range(50):
        opt.zero_grad()
        _loss(model, 0).backward()
        opt.step()
    assert _loss(model, 0).item() < first


def test_no_grad_no_change():
    model = _model()
    before = copy.deepcopy(model.state_dict())
    opt = svag.SVAG(model.parameters(), lr=0.5, l=2, weight_decay=0.1)
    opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_sde_time_sums_lr_over_l_and_survives_state_dict():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.2, l=4)
    for _ in range(3):
        opt.step()
    assert opt.sde_time == pytest.approx(3 * 0.2 / 4, abs=1e-15)
    opt2 = svag.SVAG(_model().parameters(), lr=0.2, l=4)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.sde_time == opt.sde_time


def test_state_dict_round_trip_in_lockstep():
    a = _model()
    opt_a = svag.SVAG(a.parameters(), lr=0.1, l=3, weight_decay=1e-3)
    for k in range(5):
        opt_a.zero_grad()
        _loss(a, k).backward()
        opt_a.step()
    b = copy.deepcopy(a)
    opt_b = svag.SVAG(b.parameters(), lr=99.0, l=7)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["lr"] == 0.1 and opt_b.param_groups[0]["l"] == 3
    for k in range(5, 10):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            _loss(m, k).backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert opt_a.sde_time == opt_b.sde_time


def test_param_groups_behave_as_separate_optimizers():
    a, b = _model(), _model()
    layers = list(a.children())
    opt_a = svag.SVAG(
        [
            {"params": layers[0].parameters(), "l": 2.0},
            {"params": layers[2].parameters(), "lr": 0.05, "l": 8.0},
        ],
        lr=0.2,
        weight_decay=0.01,
    )
    lb = list(b.children())
    opt_b1 = svag.SVAG(lb[0].parameters(), lr=0.2, l=2.0, weight_decay=0.01)
    opt_b2 = svag.SVAG(lb[2].parameters(), lr=0.05, l=8.0, weight_decay=0.01)
    for k in range(5):
        for o in (opt_a, opt_b1, opt_b2):
            o.zero_grad()
        _loss(a, k).backward()
        _loss(b, k).backward()
        opt_a.step()
        opt_b1.step()
        opt_b2.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert opt_a.sde_time == pytest.approx(5 * 0.2 / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -0.1}, r"lr must be a finite number >= 0, got -0.1"),
        ({"lr": float("nan")}, r"lr must be .*got nan"),
        ({"lr": 0.1, "l": 0.5}, r"l must be .*>= 1, got 0.5"),
        ({"lr": 0.1, "weight_decay": -1.0}, r"weight_decay must be .*got -1.0"),
        ({"lr": 0.1, "momentum": 0.9}, r"does not take momentum .*0.9.*η/\(1-β\)"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        svag.SVAG(_model().parameters(), **kwargs)


def test_add_param_group_validates():
    opt = svag.SVAG(_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="l must be"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "l": 0.0})
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "momentum": 0.5})
