"""SVAG honours torch.optim's optimizer contract (cf. PyTorch's test/test_optim.py) and declares its clock."""

import copy
import pickle

import pytest
import torch
from torch import nn

import svag
from helpers import assert_same_parameters, tiny_loss, tiny_mlp, train_side_by_side
from svag.adaptive import SVAGAdam, SVAGAdamW, SVAGRMSprop
from svag.clock import Clock
from svag.optim import HeavyBallSGD

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


@pytest.fixture(autouse=True)
def _hand_built_gradients(monkeypatch):
    """These tests check the update rule on gradients they build by hand (``loss.backward()`` at
    ``l > 1``): the documented opt-out of the amplified-gradient check. The check itself is tested in
    ``tests/test_open_step.py``."""
    monkeypatch.setattr(svag.optim.SVAGOptimizer, "check_amplified", False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_l1_bit_identical_to_sgd(dtype, wd):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = svag.SVAG(a.parameters(), lr=0.3, l=1, weight_decay=wd)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=wd)
    train_side_by_side([(a, opt_a), (b, opt_b)], 25)
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
    model = tiny_mlp(dtype=torch.float32)
    opt = svag.SVAG(model.parameters(), lr=0.5, l=2)
    first = tiny_loss(model, 0).item()
    for _ in range(50):
        opt.zero_grad()
        tiny_loss(model, 0).backward()
        opt.step()
    assert tiny_loss(model, 0).item() < first


def test_no_grad_no_change():
    model = tiny_mlp(dtype=torch.float32)
    before = copy.deepcopy(model.state_dict())
    opt = svag.SVAG(model.parameters(), lr=0.5, l=2, weight_decay=0.1)
    opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def _zero_grads(model):
    """A gradient for every parameter (zero): a step then counts (see test_no_grad_no_time)."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def test_sde_time_sums_lr_over_l_and_survives_state_dict():
    model = tiny_mlp(dtype=torch.float32)
    opt = svag.SVAG(model.parameters(), lr=0.2, l=4)
    _zero_grads(model)
    for _ in range(3):
        opt.step()
    assert opt.sde_time == pytest.approx(3 * 0.2 / 4, abs=1e-15)
    opt2 = svag.SVAG(tiny_mlp(dtype=torch.float32).parameters(), lr=0.2, l=4)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.sde_time == opt.sde_time


def _continue_in_lockstep(run_a, run_b, ks) -> None:
    """Step two (model, optimizer) pairs on the same losses; they must stay bit-identical."""
    (a, opt_a), (b, opt_b) = run_a, run_b
    for k in ks:
        train_side_by_side([run_a, run_b], 1, start=k)
    assert_same_parameters(a, b)
    assert opt_a.sde_time == opt_b.sde_time


def test_state_dict_round_trip_in_lockstep():
    a = tiny_mlp(dtype=torch.float32)
    opt_a = svag.SVAG(a.parameters(), lr=0.1, l=3, weight_decay=1e-3)
    for k in range(5):
        opt_a.zero_grad()
        tiny_loss(a, k).backward()
        opt_a.step()
    b = copy.deepcopy(a)
    opt_b = svag.SVAG(b.parameters(), lr=99.0, l=7)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["lr"] == 0.1 and opt_b.param_groups[0]["l"] == 3
    _continue_in_lockstep((a, opt_a), (b, opt_b), range(5, 10))


def test_param_groups_behave_as_separate_optimizers():
    a, b = tiny_mlp(dtype=torch.float32), tiny_mlp(dtype=torch.float32)
    layers = list(a.children())
    opt_a = svag.SVAG(
        [
            {"params": layers[0].parameters()},
            {"params": layers[2].parameters(), "lr": 0.05, "weight_decay": 0.0},
        ],
        lr=0.2,
        l=2.0,
        weight_decay=0.01,
    )
    lb = list(b.children())
    opt_b1 = svag.SVAG(lb[0].parameters(), lr=0.2, l=2.0, weight_decay=0.01)
    opt_b2 = svag.SVAG(lb[2].parameters(), lr=0.05, l=2.0, weight_decay=0.0)
    for k in range(5):
        for o in (opt_a, opt_b1, opt_b2):
            o.zero_grad()
        tiny_loss(a, k).backward()
        tiny_loss(b, k).backward()
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
        ({"lr": 0.1, "momentum": 0.9}, r"does not take momentum .*0.9.*heavy_ball=β.*η/\(1-β\)"),
        ({"lr": 0.1, "heavy_ball": 1.0}, r"heavy_ball must be a real number in \[0, 1\), got 1.0"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        svag.SVAG(tiny_mlp(dtype=torch.float32).parameters(), **kwargs)


def test_add_param_group_validates():
    opt = svag.SVAG(tiny_mlp(dtype=torch.float32).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="l must be"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "l": 0.0})
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "momentum": 0.5})


# -- the clock: time is owned by the optimizer (P1 §2: t = k·η/l; P2 §5: t = k·η²) ------------------


ALL = {
    "sgd": lambda params, **kw: svag.SVAG(params, **kw),
    "sgd_heavy_ball": lambda params, **kw: svag.SVAG(params, heavy_ball=0.5, **kw),
    "adam": lambda params, **kw: SVAGAdam(params, **kw),
    "adamw": lambda params, **kw: SVAGAdamW(params, **kw),
    "rmsprop": lambda params, **kw: SVAGRMSprop(params, **kw),
    "sgdm": lambda params, l=1.0, **kw: HeavyBallSGD(params, momentum=0.5, **kw),
}
POWER = {"sgd": 1, "sgd_heavy_ball": 1, "adam": 2, "adamw": 2, "rmsprop": 2, "sgdm": 1}
FACTOR = {"sgd": 1.0, "sgd_heavy_ball": 2.0, "adam": 1.0, "adamw": 1.0, "rmsprop": 1.0, "sgdm": 2.0}


@pytest.mark.parametrize("name", ALL)
def test_clock_of_each_optimizer(name):
    l = 1.0 if name == "sgdm" else 4.0
    model = tiny_mlp()
    opt = ALL[name](model.parameters(), lr=0.2, l=l)
    clock = opt.clock()
    assert clock == Clock(POWER[name], l, FACTOR[name]) == opt.clock(opt.param_groups[0])
    assert opt.time_power == POWER[name]
    assert opt.time_increment(opt.param_groups[0]) == clock.step_time(0.2) == (FACTOR[name] * 0.2 / l) ** POWER[name]
    assert opt.variance_factor(opt.param_groups[0]) == l ** POWER[name] == clock.variance_factor
    hyper = {"heavy_ball": 0.5} if name == "sgd_heavy_ball" else {"momentum": 0.5} if name == "sgdm" else {}
    assert type(opt).clock_for(l, **hyper) == clock  # without an instance
    _zero_grads(model)
    for _ in range(3):
        opt.step()
    assert opt.sde_time == pytest.approx(3 * clock.step_time(0.2), rel=1e-15)


def test_clock_for_refuses_unknown_hyperparameters_and_momentum():
    assert SVAGAdam.clock_for(2.0, betas=(0.9, 0.99), eps=1e-6, lr=0.1) == Clock(2, 2.0)  # ignored: no effect on time
    with pytest.raises(TypeError, match=r"SVAGAdam.clock_for\(\) got unknown hyperparameters \['heavy_ball'\]"):
        SVAGAdam.clock_for(2.0, heavy_ball=0.5)
    with pytest.raises(ValueError, match="does not take momentum"):
        svag.SVAG.clock_for(2.0, momentum=0.9)
    with pytest.raises(ValueError, match=r"HeavyBallSGD is real SGDM \(l = 1\), got l=2"):
        HeavyBallSGD.clock_for(2, momentum=0.9)


def test_names_for_figures():
    names = [(c.simulated_name, c.svag_name) for c in (svag.SVAG, SVAGAdam, SVAGAdamW, SVAGRMSprop, HeavyBallSGD)]
    assert names == [
        ("SGD", "SVAG"),
        ("Adam", "SVAG-Adam"),
        ("AdamW", "SVAG-AdamW"),
        ("RMSprop", "SVAG-RMSprop"),
        ("SGDM", "SVAG of SGD at η/(1-β)"),
    ]


# -- heavy-ball momentum: SVAG(heavy_ball=β) and HeavyBallSGD ------------------------------------------


@pytest.mark.parametrize("l", [1.0, 4.0])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_heavy_ball_svag_is_plain_svag_at_lr_over_one_minus_beta(l, wd):
    """Bit for bit what the runner did before (SVAG at lr = η·(1/(1−β)), schedule included)."""
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = svag.SVAG(a.parameters(), lr=0.03, l=l, weight_decay=wd, heavy_ball=0.9)
    opt_b = svag.SVAG(b.parameters(), lr=0.03 * (1.0 / (1.0 - 0.9)), l=l, weight_decay=wd)
    assert opt_a.param_groups[0]["lr"] == 0.03  # the simulated run's η
    for k in range(10):
        if k == 5:  # a schedule sets group["lr"] = η(t)
            opt_a.param_groups[0]["lr"] = 0.01
            opt_b.param_groups[0]["lr"] = 0.01 * (1.0 / (1.0 - 0.9))
        train_side_by_side([(a, opt_a), (b, opt_b)], 1, start=k)
    assert_same_parameters(a, b)
    assert opt_a.sde_time == opt_b.sde_time


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
def test_heavy_ball_sgd_bit_identical_to_torch_sgd_with_momentum(dtype, wd):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = HeavyBallSGD(a.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=wd)
    train_side_by_side([(a, opt_a), (b, opt_b)], 25)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
        assert torch.equal(opt_a.state[pa]["momentum_buffer"], opt_b.state[pb]["momentum_buffer"])
    assert opt_a.sde_time == pytest.approx(25 * 0.05 / (1 - 0.9), rel=1e-13)  # η/(1−β) per step


def test_heavy_ball_sgd_sde_time_survives_state_dict():
    a = tiny_mlp()
    opt_a = HeavyBallSGD(a.parameters(), lr=0.05, momentum=0.5)
    for k in range(3):
        opt_a.zero_grad()
        tiny_loss(a, k).backward()
        opt_a.step()
    b = copy.deepcopy(a)
    opt_b = HeavyBallSGD(b.parameters(), lr=1.0)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.sde_time == opt_a.sde_time and opt_b.param_groups[0]["momentum"] == 0.5
    _continue_in_lockstep((a, opt_a), (b, opt_b), range(3, 6))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -0.1}, r"lr must be a finite number >= 0, got -0.1"),
        ({"lr": 0.1, "momentum": 1.0}, r"momentum must be a real number in \[0, 1\), got 1.0"),
        ({"lr": 0.1, "weight_decay": -1.0}, r"weight_decay must be .*got -1.0"),
    ],
)
def test_heavy_ball_sgd_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeavyBallSGD(tiny_mlp(dtype=torch.float32).parameters(), **kwargs)
    opt = HeavyBallSGD(tiny_mlp(dtype=torch.float32).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not Nesterov"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "nesterov": True})


def test_svag_loads_a_state_dict_saved_before_heavy_ball():
    opt = svag.SVAG(tiny_mlp(dtype=torch.float32).parameters(), lr=0.1, l=2)
    state = opt.state_dict()
    del state["param_groups"][0]["heavy_ball"]
    opt2 = svag.SVAG(tiny_mlp(dtype=torch.float32).parameters(), lr=0.5)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["heavy_ball"] == 0.0 and opt2.param_groups[0]["lr"] == 0.1


# -- the contract for every optimizer: copies, add_param_group, load_state_dict ----------------------


def _train(pairs, start, steps):
    for k in range(start, start + steps):
        for m, o in pairs:
            o.zero_grad()
            tiny_loss(m, k).backward()
            o.step()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copied_optimizer_steps_and_keeps_sde_time(name, how):
    model = tiny_mlp()
    opt = ALL[name](model.parameters(), lr=0.01)
    _train([(model, opt)], 0, 3)
    if how == "deepcopy":
        model2, opt2 = copy.deepcopy((model, opt))
    else:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    assert opt2.sde_time == opt.sde_time > 0
    assert all(p2 is q for p2, q in zip(opt2.param_groups[0]["params"], model2.parameters()))
    _train([(model, opt), (model2, opt2)], 3, 4)
    for pa, pb in zip(model.parameters(), model2.parameters()):
        assert torch.equal(pa, pb)
    assert opt2.sde_time == opt.sde_time
    alone = copy.deepcopy(opt)  # an optimizer copied alone steps too
    for group in alone.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    alone.step()
    assert alone.sde_time > opt.sde_time


@pytest.mark.parametrize("name", ALL)
def test_refused_param_group_is_not_kept(name):
    opt = ALL[name](tiny_mlp().parameters(), lr=0.1)
    p = nn.Parameter(torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"lr must be a finite number >= 0, got -1"):
        opt.add_param_group({"params": [p], "lr": -1})
    assert len(opt.param_groups) == 1
    p.grad = torch.ones_like(p)
    opt.step()
    assert torch.equal(p, torch.ones(2, dtype=torch.float64))
    opt.add_param_group({"params": [p]})  # the same parameter is accepted afterwards
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("lr", -3, r"lr must be a finite number >= 0, got -3"), ("l", 0.5, r"l must be .*>= 1, got 0.5")],
)
def test_load_state_dict_validates_groups_and_leaves_the_optimizer_unchanged(name, key, value, match):
    if name == "sgdm" and key == "l":
        key, value, match = "momentum", 1.5, r"momentum must be a real number in \[0, 1\), got 1.5"
    model = tiny_mlp()
    opt = ALL[name](model.parameters(), lr=0.01)
    _train([(model, opt)], 0, 2)
    state = copy.deepcopy(opt.state_dict())
    bad = copy.deepcopy(state)
    bad["param_groups"][0][key] = value
    bad["sde_time"] = 123.0
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    assert opt.state_dict()["param_groups"] == state["param_groups"]
    assert opt.sde_time == state["sde_time"]
    for p in model.parameters():
        for k, v in opt.state[p].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(state["state"][state_index(opt, p)][k]))
    with pytest.raises(ValueError, match=r"sde_time must be a finite number >= 0, got -1.0"):
        opt.load_state_dict({**state, "sde_time": -1.0})


def state_index(opt, p):
    return [id(q) for q in opt.param_groups[0]["params"]].index(id(p))


@pytest.mark.parametrize("name", ALL)
def test_no_grad_no_change_every_optimizer(name):
    model = tiny_mlp()
    before = copy.deepcopy(model.state_dict())
    opt = ALL[name](model.parameters(), lr=0.5, weight_decay=0.1)
    opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert opt.sde_time == 0.0  # no gradient at all: no update and no time (issue 11)
    _zero_grads(model)
    opt.step()  # a gradient (even zero) is a step: weight decay moves, time passes
    assert opt.sde_time == opt.time_increment(opt.param_groups[0]) > 0
    assert not torch.equal(model[0].weight, before["0.weight"])


@pytest.mark.parametrize("name", ["sgd", "sgd_heavy_ball"])
def test_sparse_gradient_with_weight_decay_is_refused_before_any_update(name):
    emb, dense = nn.Embedding(5, 3, sparse=True), nn.Linear(3, 1)
    before = [p.detach().clone() for p in (*dense.parameters(), *emb.parameters())]
    opt = ALL[name]([{"params": dense.parameters()}, {"params": emb.parameters(), "weight_decay": 0.1}], lr=0.1)
    dense(emb(torch.tensor([1, 3]))).sum().backward()
    with pytest.raises(ValueError, match=r"sparse gradient .* weight_decay=0.1; the decay term λx is dense"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip((*dense.parameters(), *emb.parameters()), before))
    assert opt.sde_time == 0.0
    ALL[name](emb.parameters(), lr=0.1).step()  # without weight decay a sparse gradient is applied, as by torch
