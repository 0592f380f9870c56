"""SVAGAdam / SVAGAdamW / SVAGRMSprop: P2's SVAG for adaptive methods, under torch.optim's optimizer contract."""

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import svag
from helpers import assert_same_parameters, tiny_loss, tiny_mlp, train_side_by_side
from svag.adaptive import (
    SVAGAdam,
    SVAGAdamW,
    SVAGRMSprop,
    svag_adam,
    svag_beta,
    svag_decoupled_weight_decay,
    transformed_hyperparameters,
)

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


@pytest.fixture(autouse=True)
def _hand_built_gradients(monkeypatch):
    """These tests check the update rule on gradients they build by hand (``loss.backward()`` at
    ``l > 1``): the documented opt-out of the amplified-gradient check. The check itself is tested in
    ``tests/test_open_step.py``."""
    monkeypatch.setattr(svag.optim.SVAGOptimizer, "check_amplified", False)


OPTIMIZERS = {
    "adam": lambda params, **kw: SVAGAdam(params, **kw),
    "adamw": lambda params, **kw: SVAGAdamW(params, **kw),
    "rmsprop": lambda params, **kw: SVAGRMSprop(params, **kw),
}


# -- l = 1 is the optimizer being simulated, bit for bit -----------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
@pytest.mark.parametrize("foreach", [False, None])  # None: torch's default (single-tensor on CPU)
def test_adam_l1_bit_identical_to_torch_adam(dtype, wd, foreach):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = SVAGAdam(a.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, l=1)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, foreach=foreach)
    train_side_by_side([(a, opt_a), (b, opt_b)], 25)
    assert_same_parameters(a, b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(opt_a.state[pa]["exp_avg"], opt_b.state[pb]["exp_avg"])
        assert torch.equal(opt_a.state[pa]["exp_avg_sq"], opt_b.state[pb]["exp_avg_sq"])
        assert opt_a.state[pa]["step"] == int(opt_b.state[pb]["step"]) == 25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("foreach", [False, None])  # None: torch's default (single-tensor on CPU)
def test_adamw_l1_bit_identical_to_torch_adamw_across_a_state_dict_round_trip(dtype, foreach):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    hp = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.3}
    opt_a = SVAGAdamW(a.parameters(), l=1, **hp)
    opt_b = torch.optim.AdamW(b.parameters(), foreach=foreach, **hp)
    train_side_by_side([(a, opt_a), (b, opt_b)], 12)
    assert_same_parameters(a, b)
    c = copy.deepcopy(a)  # the SVAG run continues from a state_dict, in lockstep with torch's AdamW
    opt_c = SVAGAdamW(c.parameters(), lr=99.0, l=4)
    opt_c.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    train_side_by_side([(c, opt_c), (b, opt_b)], 13, start=12)
    assert_same_parameters(c, b)
    for pc, pb in zip(c.parameters(), b.parameters()):
        assert torch.equal(opt_c.state[pc]["exp_avg"], opt_b.state[pb]["exp_avg"])
        assert torch.equal(opt_c.state[pc]["exp_avg_sq"], opt_b.state[pb]["exp_avg_sq"])
        assert opt_c.state[pc]["step"] == int(opt_b.state[pb]["step"]) == 25


def test_adamw_default_hyperparameters_equal_torch_default_adamw():
    a, b = tiny_mlp(), tiny_mlp()
    train_side_by_side([(a, SVAGAdamW(a.parameters(), lr=0.01)), (b, torch.optim.AdamW(b.parameters(), lr=0.01))], 5)
    assert_same_parameters(a, b)


def test_adam_default_hyperparameters_equal_torch_default_adam():
    a, b = tiny_mlp(), tiny_mlp()
    train_side_by_side([(a, SVAGAdam(a.parameters(), lr=1e-3)), (b, torch.optim.Adam(b.parameters(), lr=1e-3))], 10)
    assert_same_parameters(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_rmsprop_l1_bit_identical_to_adam_with_beta1_zero(dtype, wd):
    """P2's code runs RMSprop as ``torch.optim.Adam(betas=(0, β))``."""
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = SVAGRMSprop(a.parameters(), lr=0.01, beta=0.9, eps=1e-6, weight_decay=wd)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01, betas=(0.0, 0.9), eps=1e-6, weight_decay=wd, foreach=False)
    train_side_by_side([(a, opt_a), (b, opt_b)], 25)
    assert_same_parameters(a, b)


@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_rmsprop_without_bias_correction_l1_bit_identical_to_torch_rmsprop(wd):
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = SVAGRMSprop(a.parameters(), lr=0.01, beta=0.9, eps=1e-6, weight_decay=wd, bias_correction=False)
    opt_b = torch.optim.RMSprop(b.parameters(), lr=0.01, alpha=0.9, eps=1e-6, weight_decay=wd, foreach=False)
    train_side_by_side([(a, opt_a), (b, opt_b)], 25)
    assert_same_parameters(a, b)


@pytest.mark.parametrize("l", [2.0, 4.0, 8.0, 2.5])
def test_adam_l_equals_torch_adam_with_transformed_hyperparameters(l):
    """Given the same (amplified) gradients, SVAGAdam(l) is the official code's construction:
    ``torch.optim.Adam(lr/l, 1 - (1 - β)/l², eps·l)``, bit for bit."""
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = SVAGAdam(a.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-3, l=l)
    betas = (1 - (1 - 0.9) / l**2, 1 - (1 - 0.999) / l**2)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01 / l, betas=betas, eps=1e-8 * l, weight_decay=1e-3, foreach=False)
    train_side_by_side([(a, opt_a), (b, opt_b)], 10)
    assert_same_parameters(a, b)


# -- a slow, obviously correct reference ---------------------------------------------------------


def _reference_adam(x0, grads, lr, beta1, beta2, eps, wd):
    """Adam (RMSprop when beta1 = 0) on a list of Python floats, one coordinate at a time."""
    x, m, v = list(x0), [0.0] * len(x0), [0.0] * len(x0)
    for k, g in enumerate(grads, start=1):
        for i in range(len(x)):
            d = g[i] + wd * x[i]
            m[i] = beta1 * m[i] + (1 - beta1) * d
            v[i] = beta2 * v[i] + (1 - beta2) * d * d
            m_hat = m[i] / (1 - beta1**k)
            v_hat = v[i] / (1 - beta2**k)
            x[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return x


def _feed(opt, p, grads):
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()


# float64, 8 steps of fixed gradients: agreement to 1e-12 (rounding only)
GRADS = [[0.3, -1.2, 0.05], [0.1, -0.9, -0.2], [-0.4, 0.7, 0.01], [0.2, 0.2, 0.2]] * 2
X0 = [1.0, -2.0, 0.5]


@pytest.mark.parametrize("l", [1.0, 3.0])
def test_rmsprop_matches_slow_reference(l):
    p = nn.Parameter(torch.tensor(X0))
    _feed(SVAGRMSprop([p], lr=0.05, beta=0.9, eps=1e-3, weight_decay=0.1, l=l), p, GRADS)
    # the SVAG transformation written out: lr/l, 1 - (1 - β)/l², eps·l; β1 = 0 stays 0
    expected = _reference_adam(X0, GRADS, 0.05 / l, 0.0, 1 - 0.1 / l**2, 1e-3 * l, 0.1)
    torch.testing.assert_close(p.detach(), torch.tensor(expected), rtol=0, atol=1e-12)


@pytest.mark.parametrize("l", [1.0, 3.0])
def test_adam_matches_slow_reference(l):
    p = nn.Parameter(torch.tensor(X0))
    _feed(SVAGAdam([p], lr=0.05, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1, l=l), p, GRADS)
    expected = _reference_adam(X0, GRADS, 0.05 / l, 1 - 0.2 / l**2, 1 - 0.1 / l**2, 1e-3 * l, 0.1)
    torch.testing.assert_close(p.detach(), torch.tensor(expected), rtol=0, atol=1e-12)


def test_functional_core_matches_class():
    a = nn.Parameter(torch.tensor(X0))
    b = torch.tensor(X0)
    _feed(SVAGAdam([a], lr=0.05, l=2.0, weight_decay=0.1), a, GRADS[:3])
    m, v = torch.zeros(3), torch.zeros(3)
    for k, g in enumerate(GRADS[:3], start=1):
        svag_adam(
            [b], [torch.tensor(g)], [m], [v], [k], lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, l=2
        )
    assert torch.equal(a.detach(), b)


def test_weight_decay_not_amplified_first_step():
    """Step 1 of Adam is ``x − η'·d/(|d| + ε')`` with ``d = g + λx``: λ enters as is, ε' = ε·l."""
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SVAGAdam([p], lr=0.5, l=4, weight_decay=0.1, eps=1e-3)
    p.grad = torch.tensor([0.3, 0.7])
    opt.step()
    d = torch.tensor([0.3 + 0.1 * 1.0, 0.7 + 0.1 * -2.0])
    expected = torch.tensor([1.0, -2.0]) - 0.125 * d / (d.abs() + 4e-3)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


# -- the transformed hyperparameters (P2's table) ------------------------------------------------


# lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8 under η/ℓ, 1 − (1 − β)/ℓ², ε·ℓ, worked by hand
TABLE = {
    2: (5e-4, (0.975, 0.99975), 2e-8),
    4: (2.5e-4, (0.99375, 0.9999375), 4e-8),
    8: (1.25e-4, (0.9984375, 0.999984375), 8e-8),
}


@pytest.mark.parametrize("l", sorted(TABLE))
def test_transformed_hyperparameters_table(l):
    lr, betas, eps = TABLE[l]
    hp = transformed_hyperparameters(1e-3, (0.9, 0.999), 1e-8, l)
    assert hp["lr"] == pytest.approx(lr, rel=1e-14)
    assert hp["betas"] == pytest.approx(betas, rel=1e-14)
    assert hp["eps"] == pytest.approx(eps, rel=1e-14)
    # RMSprop's single β keeps its shape: 1 − 0.001/ℓ²
    assert transformed_hyperparameters(1e-3, 0.999, 1e-8, l)["betas"] == pytest.approx(betas[1], rel=1e-14)


def test_transformed_hyperparameters_l1_is_exact_and_zero_beta_stays_zero():
    # 1 - (1 - 0.3) = 0.30000000000000004 in floats: l = 1 must not round-trip through it
    assert transformed_hyperparameters(0.1, (0.3, 0.999), 1e-8, 1) == {"lr": 0.1, "betas": (0.3, 0.999), "eps": 1e-8}
    assert transformed_hyperparameters(0.1, (0.0, 0.99), 1e-8, 4)["betas"][0] == 0.0


@given(
    beta=st.floats(min_value=0.0, max_value=0.999999, exclude_max=False),
    l=st.floats(min_value=1.0, max_value=64.0),
    lr=st.floats(min_value=1e-6, max_value=1.0),
    eps=st.floats(min_value=0.0, max_value=1.0),
)
def test_transformation_keeps_p2_sde_constants(beta, l, lr, eps):
    """c = (1 − β)/η² and ε0 = ε·η are the same for the run and its SVAG (η' = η/ℓ).

    β' is stored as a float near 1 (as torch.optim.Adam stores it), so 1 − β' carries an absolute
    rounding error of up to ~1 ulp of 1 (2.2e-16): that is the tolerance on (1 − β')·ℓ².
    """
    hp = transformed_hyperparameters(lr, beta, eps, l)
    assert 0.0 <= hp["betas"] < 1.0
    assert hp["lr"] == pytest.approx(lr / l, rel=1e-15)
    assert hp["eps"] * hp["lr"] == pytest.approx(eps * lr, rel=1e-12, abs=0)
    if beta > 0:
        assert (1 - hp["betas"]) * l**2 == pytest.approx(1 - beta, rel=1e-12, abs=2.3e-16 * l**2)


def test_svag_beta_validates():
    with pytest.raises(ValueError, match=r"beta must be a real number in \[0, 1\), got 1.0"):
        svag_beta(1.0, 2)
    with pytest.raises(ValueError, match=r"l must be .*>= 1, got 0.5"):
        svag_beta(0.9, 0.5)


# -- continuous time and the training step -------------------------------------------------------


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_sde_time_advances_by_lr_over_l_squared_and_survives_state_dict(make):
    model = tiny_mlp()
    opt = make(model.parameters(), lr=0.2, l=4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # a step without any gradient adds no time (test_optim)
    for _ in range(3):
        opt.step()
    assert opt.sde_time == pytest.approx(3 * (0.2 / 4) ** 2, rel=1e-15)
    opt2 = make(tiny_mlp().parameters(), lr=0.2, l=4)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.sde_time == opt.sde_time


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("mode", ["accumulate", "fused", "reference"])
def test_train_step_uses_coefficients_of_l_squared(make, mode):
    """With lr = 0 the step leaves x alone and p.grad keeps the gradient train_step built."""
    l = 2.0
    model = tiny_mlp()
    opt = make(model.parameters(), lr=0.0, l=l)
    assert opt.variance_factor(opt.param_groups[0]) == l**2
    b1, b2 = torch.randn(8, 5), torch.randn(8, 5)

    def loss_fn(x):
        return model(x).pow(2).mean()

    params = list(model.parameters())
    g1 = torch.autograd.grad(loss_fn(b1), params)
    g2 = torch.autograd.grad(loss_fn(b2), params)
    before = [p.detach().clone() for p in params]
    svag.train_step(opt, loss_fn, b1, b2, mode=mode)
    a1, a2 = svag.coefficients(l**2)
    assert (a1, a2) != pytest.approx(svag.coefficients(l))
    for p, x, u, w in zip(params, before, g1, g2):
        torch.testing.assert_close(p.grad, a1 * u + a2 * w, rtol=0, atol=1e-12)
        assert torch.equal(p, x)


def test_train_step_l1_is_plain_adam():
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = SVAGAdam(a.parameters(), lr=0.01)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01)
    for k in range(5):
        x = torch.randn(8, 5, generator=torch.Generator().manual_seed(k))
        svag.train_step(opt_a, lambda x: a(x).pow(2).mean(), x, None)
        svag.train_step(opt_b, lambda x: b(x).pow(2).mean(), x, None)
    assert_same_parameters(a, b)


# -- AdamW's decoupled decay: the same decay per unit of continuous time for every l -------------


@pytest.mark.parametrize("l", [1, 2, 4])
def test_adamw_decay_per_unit_time_is_the_same_for_every_l(l):
    """Zero gradients: x ← (1 − (η/ℓ)(λ/ℓ))x per SVAG step. After ℓ²k steps (time kη²) the decay is
    (1 − ηλ/ℓ²)^{ℓ²k} = (1 − ηλ)^k (1 + O(k(ηλ)²)); here ηλ = 0.01, k = 10: tolerance 2k(ηλ)² = 2e-3."""
    lr, wd, k = 0.1, 0.1, 10
    x = nn.Parameter(torch.linspace(-1.0, 2.0, 5, dtype=torch.float64))
    x0 = x.detach().clone()
    opt = SVAGAdamW([x], lr=lr, weight_decay=wd, l=l)
    for _ in range(l * l * k):
        x.grad = torch.zeros_like(x)
        opt.step()
    assert opt.sde_time == pytest.approx(k * lr**2, rel=1e-12)  # P2's clock: ℓ² SVAG steps per step
    torch.testing.assert_close(x.detach(), x0 * (1 - lr * wd / l**2) ** (l * l * k), rtol=1e-12, atol=0)
    ratio = x.detach().norm() / x0.norm()
    assert ratio.item() == pytest.approx((1 - lr * wd) ** k, rel=2 * k * (lr * wd) ** 2)
    assert ratio.item() == pytest.approx(math.exp(-k * lr * wd), rel=2 * k * (lr * wd) ** 2)  # the SDE: rate λ/η


def test_svag_decoupled_weight_decay_is_lambda_over_l():
    assert svag_decoupled_weight_decay(0.3, 1) == 0.3 and svag_decoupled_weight_decay(0.3, 4) == 0.3 / 4
    lr, wd, l = 0.02, 0.1, 8.0  # η'λ'/(η')² = λ/η: the decay rate per unit of time
    assert (lr / l) * svag_decoupled_weight_decay(wd, l) / (lr / l) ** 2 == pytest.approx(wd / lr, rel=1e-15)
    with pytest.raises(ValueError, match=r"weight_decay must be a finite number >= 0, got -0.1"):
        svag_decoupled_weight_decay(-0.1, 2)
    with pytest.raises(ValueError, match=r"l must be .*>= 1, got 0.5"):
        svag_decoupled_weight_decay(0.1, 0.5)


def test_adamw_l_equals_adam_step_after_decay_by_lr_over_l_times_wd_over_l():
    """One step at l = 4 from a nonzero state: x ← (1 − (η/4)(λ/4))x, then Adam's step with no decay."""
    l, lr, wd = 4.0, 0.05, 0.2
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = SVAGAdamW(a.parameters(), lr=lr, weight_decay=wd, l=l)
    opt_b = SVAGAdam(b.parameters(), lr=lr, weight_decay=0.0, l=l)
    for k in range(3):
        opt_a.zero_grad()
        opt_b.zero_grad()
        tiny_loss(a, k).backward()
        tiny_loss(b, k).backward()
        with torch.no_grad():
            for p in b.parameters():
                p.mul_(1 - (lr / l) * (wd / l))
        opt_a.step()
        opt_b.step()
    assert_same_parameters(a, b)


def test_adamw_clock_names_and_coupling_refusals():
    opt = SVAGAdamW(tiny_mlp().parameters(), lr=0.1, l=2)
    assert opt.clock() == SVAGAdam.clock_for(2) == SVAGAdamW.clock_for(2, weight_decay=0.5)
    assert opt.names() == {"simulated": "AdamW", "svag": "SVAG-AdamW"}
    assert opt.param_groups[0]["decoupled_weight_decay"] is True and opt.param_groups[0]["weight_decay"] == 1e-2
    adam = SVAGAdam(tiny_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"SVAGAdam's weight decay is coupled L2.*use SVAGAdamW"):
        adam.load_state_dict(opt.state_dict())
    assert "decoupled_weight_decay" not in adam.param_groups[0]
    with pytest.raises(ValueError, match=r"SVAGAdamW's weight decay is decoupled, got .*=False; .*use SVAGAdam"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "decoupled_weight_decay": False})
    assert len(opt.param_groups) == 1


# -- torch.optim's optimizer contract ------------------------------------------------------------


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_goes_downhill(make):
    model = tiny_mlp()
    opt = make(model.parameters(), lr=0.05, l=2)
    first = tiny_loss(model, 0).item()
    for _ in range(50):
        opt.zero_grad()
        tiny_loss(model, 0).backward()
        opt.step()
    assert tiny_loss(model, 0).item() < 0.9 * first


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_sparse_gradients_are_refused_before_any_update(make):
    emb, dense = torch.nn.Embedding(5, 3, sparse=True), torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in (*dense.parameters(), *emb.parameters())]
    opt = make([{"params": dense.parameters()}, {"params": emb.parameters()}], lr=0.1, l=2)
    dense(emb(torch.tensor([1, 3]))).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip((*dense.parameters(), *emb.parameters()), before))
    assert opt.sde_time == 0.0 and len(opt.state) == 0


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_no_grad_no_change(make):
    model = tiny_mlp()
    before = copy.deepcopy(model.state_dict())
    opt = make(model.parameters(), lr=0.5, l=2, weight_decay=0.1)
    opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert len(opt.state) == 0


@pytest.mark.parametrize(
    ("make", "kwargs"),
    [
        (OPTIMIZERS["adam"], {"betas": (0.8, 0.99), "eps": 1e-6}),
        (OPTIMIZERS["adamw"], {"betas": (0.8, 0.99), "eps": 1e-6}),
        (OPTIMIZERS["rmsprop"], {"beta": 0.99, "eps": 1e-6}),
        (OPTIMIZERS["rmsprop"], {"beta": 0.99, "eps": 1e-6, "bias_correction": False}),
    ],
)
def test_state_dict_round_trip_in_lockstep(make, kwargs):
    a = tiny_mlp()
    opt_a = make(a.parameters(), lr=0.01, l=3, weight_decay=1e-3, **kwargs)
    train_side_by_side([(a, opt_a)], 5)
    b = copy.deepcopy(a)
    opt_b = make(b.parameters(), lr=99.0, l=7)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert opt_b.param_groups[0]["lr"] == 0.01 and opt_b.param_groups[0]["l"] == 3
    keys = {"step", "exp_avg", "exp_avg_sq"} if isinstance(opt_a, SVAGAdam) else {"step", "exp_avg_sq"}
    assert all(set(s) == keys for s in opt_b.state.values())
    train_side_by_side([(a, opt_a), (b, opt_b)], 5, start=5)
    assert_same_parameters(a, b)
    assert opt_a.sde_time == opt_b.sde_time


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_param_groups_behave_as_separate_optimizers(make):
    a, b = tiny_mlp(), tiny_mlp()
    la, lb = list(a.children()), list(b.children())
    opt_a = make(
        [{"params": la[0].parameters()}, {"params": la[2].parameters(), "lr": 0.05, "weight_decay": 0.0}],
        lr=0.02,
        l=2.0,
        weight_decay=0.01,
    )
    opt_b1 = make(lb[0].parameters(), lr=0.02, l=2.0, weight_decay=0.01)
    opt_b2 = make(lb[2].parameters(), lr=0.05, l=2.0, weight_decay=0.0)
    for k in range(5):
        for o in (opt_a, opt_b1, opt_b2):
            o.zero_grad()
        tiny_loss(a, k).backward()
        tiny_loss(b, k).backward()
        for o in (opt_a, opt_b1, opt_b2):
            o.step()
    assert_same_parameters(a, b)
    assert opt_a.sde_time == pytest.approx(5 * (0.02 / 2) ** 2)
    assert opt_a.variance_factor(opt_a.param_groups[1]) == 4.0


@pytest.mark.parametrize("make", [svag.SVAG, *OPTIMIZERS.values()], ids=["sgd", *OPTIMIZERS.keys()])
def test_deterministic_for_a_seed(make):
    """Every SVAG optimizer (this file and test_optim.py): same seed, same parameters, bitwise."""

    def run():
        model = tiny_mlp(3)
        opt = make(model.parameters(), lr=0.01, l=2)
        g = torch.Generator().manual_seed(7)
        for _ in range(10):
            x1, x2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
            svag.train_step(opt, lambda x: model(x).pow(2).mean(), x1, x2)
        return torch.cat([p.flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


BAD_COMMON = [
    ({"lr": -0.1}, r"lr must be a finite number >= 0, got -0.1"),
    ({"lr": float("nan")}, r"lr must be .*got nan"),
    ({"lr": 0.1, "l": 0.5}, r"l must be .*>= 1, got 0.5"),
    ({"lr": 0.1, "weight_decay": -1.0}, r"weight_decay must be .*got -1.0"),
    ({"lr": 0.1, "eps": -1e-8}, r"eps must be a finite number >= 0, got -1e-08"),
    ({"lr": 0.1, "eps": float("inf")}, r"eps must be .*got inf"),
]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        *BAD_COMMON,
        ({"lr": 0.1, "betas": (1.0, 0.999)}, r"betas\[0\] must be a real number in \[0, 1\), got 1.0"),
        ({"lr": 0.1, "betas": (0.9, -0.1)}, r"betas\[1\] must be .*\[0, 1\), got -0.1"),
        ({"lr": 0.1, "betas": (0.9,)}, r"betas must be a pair .*got \(0.9,\)"),
    ],
)
@pytest.mark.parametrize("cls", [SVAGAdam, SVAGAdamW])
def test_adam_bad_hyperparameters_raise(kwargs, match, cls):
    with pytest.raises(ValueError, match=match):
        cls(tiny_mlp().parameters(), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        *BAD_COMMON,
        ({"lr": 0.1, "beta": 1.0}, r"beta must be a real number in \[0, 1\), got 1.0"),
        ({"lr": 0.1, "beta": -0.5}, r"beta must be .*got -0.5"),
        ({"lr": 0.1, "bias_correction": 1}, r"bias_correction must be True or False, got 1"),
    ],
)
def test_rmsprop_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SVAGRMSprop(tiny_mlp().parameters(), **kwargs)


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_add_param_group_validates(make):
    opt = make(tiny_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="l must be"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "l": 0.0})
    with pytest.raises(ValueError, match="eps must be"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "eps": -1.0})
    with pytest.raises(ValueError, match="real parameters only"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2, dtype=torch.complex128))]})


# ---- the preconditioner's weights w = 1/(√v̂ + ε) (the preconditioned signal-to-noise ratio, svag.noise) ----

TORCH_TWINS = {  # (svag optimizer at l = 1, the torch optimizer it equals, w from torch's state)
    "adam": (lambda ps: SVAGAdam(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-3),
             lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-3), "exp_avg_sq", 0.9, 1e-3, True),
    "adamw": (lambda ps: SVAGAdamW(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1), "exp_avg_sq",
              0.9, 1e-3, True),
    "rmsprop": (lambda ps: SVAGRMSprop(ps, lr=0.01, beta=0.9, eps=1e-3),
                lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.0, 0.9), eps=1e-3), "exp_avg_sq", 0.9, 1e-3, True),
    "rmsprop-torch": (lambda ps: SVAGRMSprop(ps, lr=0.01, beta=0.9, eps=1e-3, bias_correction=False),
                      lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, eps=1e-3), "square_avg", 0.9, 1e-3, False),
}  # fmt: skip


@pytest.mark.parametrize("name", TORCH_TWINS)
def test_preconditioner_weights_are_those_of_torchs_state(name):
    """l = 1, float64: after 3 steps side by side with its torch twin, w = 1/(√(v/(1 − β2^k)) + ε) from torch's
    own state (RMSprop without bias correction: 1/(√v + ε)); before any step there are none."""
    make, make_torch, key, beta2, eps, bias = TORCH_TWINS[name]
    ours, theirs = tiny_mlp(), tiny_mlp()
    opt, ref = make(list(ours.parameters())), make_torch(list(theirs.parameters()))
    assert opt.preconditioner_weights() is None
    train_side_by_side([(ours, opt), (theirs, ref)], steps=3)
    weights = opt.preconditioner_weights()
    for w, p in zip(weights, theirs.parameters(), strict=True):
        state = ref.state[p]
        k = int(state["step"])
        v_hat = state[key] / (1 - beta2**k) if bias else state[key]
        torch.testing.assert_close(w, 1 / (v_hat.sqrt() + eps), rtol=1e-14, atol=0)


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_preconditioner_weights_at_l_use_svags_transformed_beta_and_eps(make):
    """l = 2: the update divides by √(v/(1 − β2'^k)) + ε·l with 1 − β2' = (1 − β2)/l² (P2), read off the state;
    ``params`` picks and orders the parameters; a parameter not stepped yet has none; a foreign one raises."""
    model = tiny_mlp()
    params = list(model.parameters())
    opt = make(params, lr=0.01, eps=1e-3, l=2.0)
    params[0].requires_grad_(False)  # never stepped: no state
    for k in range(2):
        opt.zero_grad()
        tiny_loss(model, k).backward()
        opt.step()
    weights = opt.preconditioner_weights(params[::-1])
    assert weights[-1] is None
    beta2 = svag_beta(0.999, 2.0)
    for w, p in zip(weights[:-1], params[::-1][:-1]):
        v = opt.state[p]["exp_avg_sq"]
        torch.testing.assert_close(w, 1 / ((v / (1 - beta2**2)).sqrt() + 2e-3), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match=r"params\[0\] is not a parameter of this"):
        opt.preconditioner_weights([nn.Parameter(torch.zeros(2))])


def test_preconditioner_weights_of_stacked_replicas_are_per_replica():
    """A stacked (K, ...) parameter (the ensembles' layout) gets (K, ...) weights; slice k equals the weights of
    replica k's parameter stepped alone with the same gradients (float64, 1e-15)."""
    gen = torch.Generator().manual_seed(0)
    stacked = nn.Parameter(torch.randn(2, 3, 4, generator=gen, dtype=torch.float64))
    alone = [nn.Parameter(stacked.detach()[k].clone()) for k in range(2)]
    opts = [SVAGAdamW([p], lr=0.01) for p in (stacked, *alone)]
    for _ in range(3):
        g = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
        for p, grad in zip((stacked, *alone), (g, g[0], g[1])):
            p.grad = grad.clone()
        for opt in opts:
            opt.step()
    (w,) = opts[0].preconditioner_weights()
    assert w.shape == (2, 3, 4)
    for k in range(2):
        torch.testing.assert_close(w[k], opts[k + 1].preconditioner_weights()[0], rtol=1e-15, atol=0)
