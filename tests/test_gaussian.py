"""The Gaussian-noise step (P1's NGD = Euler–Maruyama of the SDE) against a loop over single samples.

Equivalence tests (same ``z`` through both implementations, float64): rtol 1e-10.
Statistical test of the noise covariance: stated at the test (seed, sample size, z-score tolerance 4.5 as
in ``tests/test_verify.py``); it runs in well under a second.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import svag
from helpers import tiny_mlp
from svag.analysis.stats import mc_check
from svag.gaussian import (
    finite_population_factor,
    gaussian_gradient,
    gaussian_step,
    gaussian_weights,
    noise_scale,
    weights_from_normals,
)
from svag.models import build_model
from svag.problems import Moments
from svag.seeds import generator as seed_generator
from svag.task import CrossEntropy, SquaredError

Z_TOL = 4.5
TASK = CrossEntropy()


def _mlp(seed=0):
    return tiny_mlp(seed, torch.get_default_dtype())


def _gn_cnn(seed=0):
    torch.manual_seed(seed)
    return build_model("cnn", input_shape=(1, 6, 6), num_classes=3, norm="gn", width=0.25)


def _data(shape, n=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def _loop_gradient(model, task, data, z, batch_size, v, f=1.0):
    """The slow reference: g_i by one autograd call per sample, then ḡ + √(v·f/(nB)) Σ_i z_i (g_i − ḡ)."""
    x, y = data
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(len(x)):
        loss = task.per_sample_loss(model(x[i : i + 1]), y[i : i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(rows)
    mean = g.mean(0)
    n = len(x)
    return mean + math.sqrt(v * f / (n * batch_size)) * (z[:, None] * (g - mean)).sum(0)


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


# -- the fast chunked path equals the loop over single samples ---------------------------------------
@pytest.mark.parametrize("make, shape", [(_mlp, (5,)), (_gn_cnn, (1, 6, 6))], ids=["mlp", "gn-cnn"])
@pytest.mark.parametrize("chunk", [1, 4, 11, None, 50])
def test_chunked_weighted_gradient_equals_per_sample_loop(make, shape, chunk):
    """n = 11, B = 3, v = 4 (l = 4), with and without the finite-population factor; chunk 4 does not divide n."""
    model, data = make(), _data(shape)
    z = torch.randn(11, generator=torch.Generator().manual_seed(5))
    for fp in (False, True):
        w = weights_from_normals(z, 3, 4.0, finite_population=fp)
        grads, loss = gaussian_gradient(model, TASK, data, w, chunk=chunk)
        f = finite_population_factor(11, 3) if fp else 1.0
        slow = _loop_gradient(model, TASK, data, z, 3, 4.0, f)
        torch.testing.assert_close(_flat(grads), slow, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(loss, TASK.loss(model(data[0]), data[1]), rtol=1e-12, atol=0)


def test_replica_rows_are_independent_single_model_gradients():
    """Weights (R, n) on R stacked chains give, row by row, each chain's own weighted gradient."""
    p = svag.problems.noisy_regression(n=9)
    R = 4
    x = torch.randn(R, p.dim)
    w = weights_from_normals(torch.randn(R, p.n_samples), p.batch_size, 2.0)
    data = (torch.arange(p.n_samples), torch.zeros(p.n_samples))

    def chains(rows):
        xs = x[rows].clone().requires_grad_(True)
        grads, loss = gaussian_gradient(
            lambda idx: p.per_sample_loss(xs, idx), lambda o, t: o, data, w[rows], params=[xs], chunk=4
        )
        return grads[0], loss

    joint, joint_loss = chains(list(range(R)))
    for r in range(R):
        g, loss = chains([r])
        torch.testing.assert_close(joint[r], g[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(joint_loss[r], loss[0], rtol=1e-13, atol=0)
    # and against the closed form ḡ + (1/n)Σ_i (w_i − 1) g_i with g_i(x) = a_i(a_iᵀx − y_i)
    for r in range(R):
        gi = p.per_sample_grads(x[r].numpy())
        expected = (w[r].numpy()[:, None] * gi).mean(0)
        np.testing.assert_allclose(joint[r].numpy(), expected, rtol=1e-11)


# -- the weights --------------------------------------------------------------------------------------
def test_weights_sum_to_n_and_come_from_the_stated_draw():
    gen = torch.Generator().manual_seed(7)
    w = gaussian_weights(13, 4, 8.0, gen)
    z = torch.randn(13, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(w, 1 + math.sqrt(8.0 * 13 / 4) * (z - z.mean()), rtol=0, atol=1e-14)
    assert abs(float(w.sum()) - 13) < 1e-12
    rows = gaussian_weights(13, 4, 8.0, gen, replicas=5, finite_population=True, dtype=torch.float32)
    assert rows.shape == (5, 13) and rows.dtype == torch.float32
    torch.testing.assert_close(rows.double().sum(1), torch.full((5,), 13.0), rtol=0, atol=1e-4)
    assert noise_scale(13, 4, 8.0, finite_population=True) == pytest.approx(math.sqrt(8 * 13 / 4 * 9 / 12), rel=1e-15)
    assert finite_population_factor(1, 1) == 0.0 and finite_population_factor(10, 1) == 1.0


@pytest.mark.parametrize("finite_population", [False, True])
def test_noise_is_gaussian_with_covariance_v_sigma1_over_b(finite_population):
    """Seed 11, R = 20000 draws of the weights for fixed per-sample gradients (n = 10, d = 3, B = 3, v = 3):
    mean, covariance (exact: v·f·Σ_1/B, Σ_1 with 1/n), E‖x‖² and third moment (0) within 4.5 SE; a
    Kolmogorov–Smirnov test of the standardized projection against N(0, 1) at p > 1e-3; and the test
    tells the wrong factor (n−1)/n apart (its z-score exceeds 4.5)."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    n, d, B, v, R = 10, 3, 3, 3.0, 20_000
    g = rng.standard_normal((n, d)) * np.array([1.0, 2.0, 0.5]) + np.array([0.3, -1.0, 2.0])
    gbar = g.mean(0)
    sigma1 = (g - gbar).T @ (g - gbar) / n
    f = (n - B) / (n - 1) if finite_population else 1.0
    w = gaussian_weights(n, B, v, torch.Generator().manual_seed(11), replicas=R, finite_population=finite_population)
    samples = w.numpy() @ g / n  # (1/n) Σ_i w_i g_i, one row per draw
    exact = Moments(gbar, v * f * sigma1 / B, np.zeros((d, d, d)))
    check = mc_check(samples, exact, np.array([1.0, 1.0, 0.0]))
    assert check["max_abs_z"] <= Z_TOL, check["z"]
    u = np.array([0.2, -0.5, 1.0])
    proj = (samples - gbar) @ u / math.sqrt(u @ exact.cov @ u)
    assert stats.kstest(proj, "norm").pvalue > 1e-3
    wrong = Moments(gbar, exact.cov * (n - 1) / n, exact.third)
    assert mc_check(samples, wrong)["max_abs_z"] > Z_TOL


# -- the step ----------------------------------------------------------------------------------------
def test_step_is_euler_maruyama_update_with_the_optimizer_variance_factor():
    """SVAG(l = 4, λ = 0.1): x ← x − (η/l)(ḡ + √(l/(nB))Σ z_i(g_i − ḡ) + λx), z from a copy of the generator."""
    model, data = _mlp(), _data((5,))
    before = [p.detach().clone() for p in model.parameters()]
    opt = svag.SVAG(model.parameters(), lr=0.3, l=4, weight_decay=0.1)
    assert opt.clock().variance_factor == 4.0
    gen = seed_generator(0, "gaussian")
    z = torch.randn(11, generator=seed_generator(0, "gaussian"), dtype=torch.float64)
    noisy = _loop_gradient(model, TASK, data, z, 3, 4.0)
    full_loss = TASK.loss(model(data[0]), data[1]).detach()
    out = gaussian_step(opt, model, TASK, data, batch_size=3, generator=gen, chunk=4)
    torch.testing.assert_close(out.loss, full_loss, rtol=1e-12, atol=0)
    assert out.noise_scale == pytest.approx(math.sqrt(4 * 11 / 3), rel=1e-15)
    x0 = _flat(before)
    expected = x0 - 0.3 / 4 * (noisy + 0.1 * x0)
    torch.testing.assert_close(_flat([p.detach() for p in model.parameters()]), expected, rtol=1e-10, atol=1e-13)
    assert opt.sde_time == pytest.approx(0.3 / 4)


def test_plain_torch_optimizer_counts_as_l_1_and_frozen_parameters_are_skipped():
    model, data = _mlp(), _data((5,))
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    gaussian_step(opt, model, SquaredError(3), data, batch_size=11, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model[0].weight, frozen, rtol=0, atol=0)
    assert model[0].weight.grad is None


def test_float32_model_runs_with_float64_draws():
    model, data = _mlp().float(), tuple(t.float() if t.is_floating_point() else t for t in _data((5,)))
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    out = gaussian_step(opt, model, TASK, data, batch_size=2, generator=torch.Generator().manual_seed(0), chunk=3)
    assert out.loss.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())


# -- refusals ------------------------------------------------------------------------------------------
def _step(model=None, **kw):
    model = _mlp() if model is None else model
    opt = kw.pop("opt", None) or svag.SVAG(model.parameters(), lr=0.1, l=2)
    task = kw.pop("task", TASK)
    args = {"batch_size": 3, "generator": torch.Generator().manual_seed(0), "chunk": 4, **kw}
    return gaussian_step(opt, model, task, _data((5,)), **args)


def test_batchnorm_in_train_mode_is_refused_eval_mode_allowed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"BatchNorm in train mode.*'1' is BatchNorm1d.*GroupNorm, LayerNorm"):
        _step(model)
    _step(model.eval())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"batch_size": 0}, r"batch_size must be an integer in \[1, 11\].*got 0"),
        ({"batch_size": 12}, r"batch_size must be an integer in \[1, 11\] \(at most the n = 11.*got 12"),
        ({"batch_size": 2.0}, r"batch_size must be an integer.*got 2\.0"),
        ({"chunk": 0}, r"chunk must be an integer >= 1 \(samples per forward/backward\) or None, got 0"),
        ({"chunk": 1.5}, r"chunk must be an integer >= 1.*got 1\.5"),
    ],
)
def test_bad_batch_size_and_chunk_raise_before_the_draw(kw, match):
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    with pytest.raises(ValueError, match=match):
        _step(generator=gen, **kw)
    assert torch.equal(gen.get_state(), state)


def test_mean_loss_groups_with_different_l_and_no_trainable_parameter_are_refused():
    with pytest.raises(ValueError, match=r"one loss per sample, shape \(4,\).*Task.loss is not per-sample"):
        _step(task=TASK.loss)
    model = _mlp()
    opt = svag.SVAG([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1, l=2.0)
    opt.param_groups[1]["l"] = 4.0  # SVAG refuses groups of different l; one changed in place reaches the step
    with pytest.raises(ValueError, match=r"one variance factor for all param groups, got \[2\.0, 4\.0\]"):
        _step(model, opt=opt)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="none of the optimizer's parameters requires grad"):
        _step(model, opt=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="inputs, targets"):
        gaussian_gradient(_mlp(), TASK, (torch.zeros(3, 5), torch.zeros(4)), torch.ones(3))
