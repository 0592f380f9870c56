"""Exact moments of the verification problems: closed forms against obviously correct references
(step-by-step recursions, enumeration of every minibatch, scipy's expm), limits, and the 1/l rate.
All deterministic (no sampling), float64."""

import itertools

import numpy as np
import pytest
import torch

from svag import SVAG, coefficients
from svag.analysis.stats import fit_loglog_slope
from svag.problems.closed_form import (
    Moments,
    NoisyRegression,
    _moment_map,
    expm,
    gaussian_kernel_mean,
    gaussian_moments,
    geometric_sum,
    noisy_regression,
    ou_moments,
    regression_sde_moments,
    regression_svag_moments,
    skewed_quadratic,
    svag_moments,
    third_cumulant_factor,
)

LADDER = [1, 2, 4, 8, 16, 32]


def _recursive_svag_moments(p, l, k):
    """Slow reference: the linear recursions of SVAG's mean, covariance and third central moment,
    one step at a time, with the (3l−1)/2 factor written out."""
    h = p.lr / l
    M = np.eye(p.dim) - h * (p.curvature + p.weight_decay * np.eye(p.dim))
    m, C, K = p.x0.copy(), np.zeros((p.dim, p.dim)), np.zeros((p.dim,) * 3)
    for _ in range(k):
        m = M @ m + h * p.curvature @ p.center
        C = M @ C @ M.T + h**2 * l * p.noise_cov
        K = np.einsum("ia,jb,kc,abc->ijk", M, M, M, K) - h**3 * (3 * l - 1) / 2 * p.noise_third
    return Moments(m, C, K)


# -- helpers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("l", [1.0, 1.5, 2.0, 7.3, 32.0])
def test_third_cumulant_factor_is_3l_minus_1_over_2(l):
    a1, a2 = coefficients(l)
    assert third_cumulant_factor(l) == pytest.approx((3 * l - 1) / 2, rel=1e-13)
    assert a1**3 + a2**3 == pytest.approx((3 * l - 1) / 2, rel=1e-13)


def test_geometric_sum_matches_loop_and_handles_ratio_one():
    r = np.array([0.3, -0.9, 1.0, 0.999])
    for k in (0, 1, 5, 40):
        loop = sum(r**j for j in range(k)) if k else np.zeros_like(r)
        np.testing.assert_allclose(geometric_sum(r, k), loop, rtol=1e-12, atol=0)


def test_expm_matches_eigendecomposition_and_scipy():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((4, 4))
    sym = 3.0 * (s + s.T)
    lam, q = np.linalg.eigh(sym)
    np.testing.assert_allclose(expm(sym), q @ np.diag(np.exp(lam)) @ q.T, rtol=1e-11)
    np.testing.assert_array_equal(expm(np.zeros((3, 3))), np.eye(3))
    linalg = pytest.importorskip("scipy.linalg")
    for scale in (0.1, 1.0, 20.0):
        a = scale * rng.standard_normal((13, 13))
        np.testing.assert_allclose(expm(a), linalg.expm(a), rtol=1e-10, atol=1e-12 * np.abs(linalg.expm(a)).max())


# -- the OU problem -------------------------------------------------------------------------------
def test_minibatch_noise_moments_by_enumerating_every_pair_of_batches():
    """Enumerate all n^B × n^B equally likely (γ1, γ2) (with replacement): the amplified noise
    a1 ξ̄_1 + a2 ξ̄_2 has mean 0, covariance lΣ and third cumulant ((3l−1)/2)·κ_1/B² exactly."""
    p = skewed_quadratic()
    batches = np.array(list(itertools.product(range(p.n_samples), repeat=p.batch_size)))
    means = p.noise[batches].mean(1)  # ξ̄ for every minibatch, (n^B, d)
    for l in (1.0, 3.0, 8.0):
        a1, a2 = coefficients(l)
        zeta = (a1 * means[:, None, :] + a2 * means[None, :, :]).reshape(-1, p.dim)
        np.testing.assert_allclose(zeta.mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(zeta.T @ zeta / len(zeta), l * p.noise_cov, rtol=1e-12)
        third = np.einsum("ia,ib,ic->abc", zeta, zeta, zeta) / len(zeta)
        np.testing.assert_allclose(third, third_cumulant_factor(l) * p.noise_third, rtol=1e-11, atol=1e-12)


def test_quadratic_minibatch_loss_gradient_per_replica():
    p = skewed_quadratic()
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-1.0, 1.0]], requires_grad=True)
    idx = torch.tensor([[0, 3], [5, 5], [1, 0]])
    p.minibatch_loss(x, idx).backward()
    for r in range(3):
        expected = p.curvature @ (x[r].detach().numpy() - p.center) + p.noise[idx[r].numpy()].mean(0)
        np.testing.assert_allclose(x.grad[r].numpy(), expected, rtol=1e-13)


def test_closed_form_svag_moments_equal_step_by_step_recursion():
    p = skewed_quadratic()
    for l, k in ((1.0, 10), (2.5, 7), (8.0, 80), (32.0, 320)):
        fast, slow = svag_moments(p, l, k), _recursive_svag_moments(p, l, k)
        np.testing.assert_allclose(fast.mean, slow.mean, rtol=1e-12)
        np.testing.assert_allclose(fast.cov, slow.cov, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(fast.third, slow.third, rtol=1e-9, atol=1e-14)


def test_zero_steps_and_zero_time_give_the_initial_point():
    p = skewed_quadratic(x0=np.array([0.5, -0.2]))
    for mom in (svag_moments(p, 4.0, 0), ou_moments(p, 0.0)):
        np.testing.assert_allclose(mom.mean, p.x0, rtol=1e-14)  # x* + Q·I·Qᵀ(x0 − x*): rounding only
        np.testing.assert_array_equal(mom.cov, 0)
        np.testing.assert_array_equal(mom.third, 0)


def test_ou_moments_stationary_limit_solves_lyapunov_equation():
    p = skewed_quadratic()
    mom = ou_moments(p, 400.0)
    D = p.drift
    np.testing.assert_allclose(mom.mean, p.fixed_point, rtol=1e-12)
    np.testing.assert_allclose(D @ mom.cov + mom.cov @ D, p.lr * p.noise_cov, rtol=1e-12)


def test_ou_moments_equal_generic_moment_ode_solved_by_expm():
    """Cross-check of two independent closed forms: eigenbasis integrals vs exp(tF) of the moment ODE."""
    p = skewed_quadratic()
    D, b = p.drift, p.curvature @ p.center

    def rate(m, s):
        mb = np.outer(m, b)
        return -D @ m + b, -D @ s - s @ D + mb + mb.T + p.lr * p.noise_cov

    gen = _moment_map(rate, p.dim)
    gen[0, 0] = 0.0
    z = expm(p.horizon * gen) @ np.concatenate([[1.0], p.x0, np.outer(p.x0, p.x0).ravel()])
    exact = ou_moments(p, p.horizon)
    np.testing.assert_allclose(z[1:3], exact.mean, rtol=1e-12)
    np.testing.assert_allclose(z[3:].reshape(2, 2), exact.second, rtol=1e-11)


def test_svag_moments_approach_ou_as_l_grows():
    p = skewed_quadratic()
    sde = ou_moments(p, p.horizon)
    for l, tol in ((1e3, 2e-3), (1e5, 2e-5)):
        mom = svag_moments(p, l)
        assert np.abs(mom.mean - sde.mean).max() < tol
        assert np.abs(mom.cov - sde.cov).max() < tol * 10
        assert abs(mom.skewness([1.0, 0.0])) < tol * 50


def test_ou_weak_error_falls_like_one_over_l():
    """Exact weak errors on l = 1..32: log-log slope in [−1.2, −0.8], and halving at the large end."""
    p = skewed_quadratic()
    sde = ou_moments(p, p.horizon)
    moms = [svag_moments(p, l) for l in LADDER]
    mean_err = [np.linalg.norm(m.mean - sde.mean) for m in moms]
    sq_err = [abs(m.mean_sq_norm - sde.mean_sq_norm) for m in moms]
    for err in (mean_err, sq_err):
        assert all(a > b for a, b in itertools.pairwise(err))
        assert -1.2 <= fit_loglog_slope(LADDER, err).slope <= -0.8
        assert err[-2] / err[-1] == pytest.approx(2.0, rel=0.05)


def test_exact_skewness_is_nonzero_for_sgd_and_vanishes_like_one_over_l():
    p = skewed_quadratic()
    skew = [abs(svag_moments(p, l).skewness([1.0, 0.0])) for l in LADDER]
    assert skew[0] > 0.5  # SGD with this skewed noise is far from Gaussian
    assert all(a > b for a, b in itertools.pairwise(skew))
    assert -1.2 <= fit_loglog_slope(LADDER, skew).slope <= -0.8


# -- the regression problem ---------------------------------------------------------------------
def test_regression_noise_cov_by_enumerating_every_minibatch():
    """Σ(x) = Σ_1(x)/B is the exact covariance of the minibatch gradient over all n^B equally likely
    batches drawn with replacement; the gradients come from autograd through ``minibatch_loss``."""
    p = noisy_regression(batch_size=2)
    x0 = np.array([0.4, -1.0, 2.0])
    batches = torch.tensor(list(itertools.product(range(p.n_samples), repeat=2)))
    x = torch.tensor(x0).repeat(len(batches), 1).requires_grad_(True)
    p.minibatch_loss(x, batches).backward()
    g = x.grad.numpy()
    full = p.hessian @ x0 - p.moment
    np.testing.assert_allclose(g.mean(0), full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.cov(g.T, bias=True), p.noise_cov(x0), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(p.per_sample_grads(x0).mean(0), full, rtol=1e-12, atol=1e-13)


def test_expected_noise_cov_is_exact_for_a_two_point_distribution():
    p = noisy_regression()
    x1, x2 = np.array([1.0, 2.0, -1.0]), np.array([-0.5, 0.0, 3.0])
    np.testing.assert_allclose(p.expected_noise_cov(x1, np.outer(x1, x1)), p.noise_cov(x1), rtol=1e-12)
    mean = (x1 + x2) / 2
    second = (np.outer(x1, x1) + np.outer(x2, x2)) / 2
    expected = (p.noise_cov(x1) + p.noise_cov(x2)) / 2
    np.testing.assert_allclose(p.expected_noise_cov(mean, second), expected, rtol=1e-12)
    loss = p.expected_loss(Moments(mean, second - np.outer(mean, mean)))
    assert loss == pytest.approx((p.loss(x1) + p.loss(x2)) / 2, rel=1e-13)


def test_regression_moments_at_start_and_limit():
    p = noisy_regression(x0=np.array([1.0, 0.0, -1.0]))
    for mom in (regression_svag_moments(p, 4.0, 0), regression_sde_moments(p, 0.0)):
        np.testing.assert_allclose(mom.mean, p.x0, atol=1e-15)
        np.testing.assert_allclose(mom.cov, 0, atol=1e-14)
    sde = regression_sde_moments(p)
    near = regression_svag_moments(p, 1e4)
    np.testing.assert_allclose(near.mean, sde.mean, atol=1e-3)
    np.testing.assert_allclose(near.cov, sde.cov, atol=1e-4)


def test_regression_svag_moments_equal_one_step_at_a_time():
    """The matrix power equals applying the exact one-step moment update k times by hand."""
    p = noisy_regression()
    l, k = 4.0, 23
    h = p.lr / l
    M = np.eye(3) - h * (p.hessian + p.weight_decay * np.eye(3))
    b = p.moment
    m, s = p.x0.copy(), np.outer(p.x0, p.x0)
    for _ in range(k):
        noise = h**2 * l * p.expected_noise_cov(m, s)
        s = M @ s @ M.T + h * (np.outer(M @ m, b) + np.outer(b, M @ m)) + h**2 * np.outer(b, b) + noise
        m = M @ m + h * b
    mom = regression_svag_moments(p, l, k)
    np.testing.assert_allclose(mom.mean, m, rtol=1e-12)
    np.testing.assert_allclose(mom.second, s, rtol=1e-11)


def test_regression_exact_distance_shrinks_like_one_over_l():
    p = noisy_regression()
    sde = regression_sde_moments(p)
    moms = [regression_svag_moments(p, l) for l in LADDER]
    loss_err = [abs(p.expected_loss(m) - p.expected_loss(sde)) for m in moms]
    sq_err = [abs(m.mean_sq_norm - sde.mean_sq_norm) for m in moms]
    for err in (loss_err, sq_err):
        assert all(a > b for a, b in itertools.pairwise(err))
        assert err[-2] / err[-1] == pytest.approx(2.0, rel=0.05)  # order 1 in 1/l at the large end
        assert -1.3 <= fit_loglog_slope(LADDER, err).slope <= -0.8


# -- validation ----------------------------------------------------------------------------------
def test_bad_arguments_raise_with_the_value_and_what_is_valid():
    p = skewed_quadratic()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        skewed_quadratic(batch_size=0)
    with pytest.raises(ValueError, match="mean zero"):
        skewed_quadratic(noise=np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        skewed_quadratic(curvature=-np.eye(2))
    assert p.steps(1.5) == 15 == SVAG.clock_for(1.5).steps_to(p.lr, p.horizon)  # l·T/η = 1.5 · 5 / 0.5
    with pytest.raises(ValueError, match="must be an integer number of SVAG steps"):
        p.steps(1.33)
    with pytest.raises(ValueError, match=r"l must be a finite real number >= 1, got 0\.5"):
        svag_moments(p, 0.5)
    with pytest.raises(ValueError, match="features must be"):
        NoisyRegression(np.ones((4, 2)), np.ones(3))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        noisy_regression(lr=0.0)


# -- the Gaussian-noise iteration (NGD = Euler–Maruyama with Δt = η/l) -----------------------------------
def test_gaussian_moments_are_svags_mean_and_covariance_with_zero_third_moment():
    """Same conditional covariance lΣ_1/B (with replacement) ⇒ identical mean/covariance recursions, for every l."""
    ou, reg = skewed_quadratic(), noisy_regression()
    for l in (*LADDER, 2.5):
        g, s = gaussian_moments(ou, l), svag_moments(ou, l)
        np.testing.assert_allclose(g.mean, s.mean, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(g.cov, s.cov, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(g.third, 0.0)
        g, s = gaussian_moments(reg, l), regression_svag_moments(reg, l)
        np.testing.assert_allclose(g.mean, s.mean, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(g.cov, s.cov, rtol=1e-13, atol=1e-15)
        assert g.third is None


def test_gaussian_moments_equal_step_by_step_recursion_with_finite_population_factor():
    """x ← x − h(∇L + λx + ζ), Cov(ζ|x) = l·f·Σ_1(x)/B with f = (n−B)/(n−1), written out one step at a time."""
    for p in (skewed_quadratic(), noisy_regression()):
        l, k = 4.0, 17
        f = (p.n_samples - p.batch_size) / (p.n_samples - 1)
        h = p.lr / l
        if isinstance(p, NoisyRegression):
            hess, b = p.hessian, p.moment
        else:
            hess, b = p.curvature, p.curvature @ p.center
        M = np.eye(p.dim) - h * (hess + p.weight_decay * np.eye(p.dim))
        m, s = p.x0.copy(), np.outer(p.x0, p.x0)
        for _ in range(k):
            sigma = p.expected_noise_cov(m, s) if isinstance(p, NoisyRegression) else p.noise_cov
            s = (
                M @ s @ M.T
                + h * (np.outer(M @ m, b) + np.outer(b, M @ m))
                + h**2 * np.outer(b, b)
                + h**2 * l * f * sigma
            )
            m = M @ m + h * b
        mom = gaussian_moments(p, l, k, finite_population=True)
        np.testing.assert_allclose(mom.mean, m, rtol=1e-12)
        np.testing.assert_allclose(mom.second, s, rtol=1e-11)


def test_gaussian_kernel_mean_equals_gauss_hermite_quadrature():
    """E exp(−‖x‖²/2) for x ~ N(m, C) against a 40×40 Gauss–Hermite rule (exact for this smooth integrand to ~1e-15)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    m, c = np.array([0.7, -1.3]), np.array([[0.8, 0.3], [0.3, 0.5]])
    chol = np.linalg.cholesky(c)
    grid = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)
    x = m + grid @ chol.T
    quad = float(np.outer(weights, weights).ravel() @ np.exp(-0.5 * (x**2).sum(1)))
    assert gaussian_kernel_mean(Moments(m, c)) == pytest.approx(quad, rel=1e-12)


def test_gaussian_weak_error_falls_like_one_over_l_and_meets_svag_in_the_limit():
    """Exact, l = 1..32. The Gaussian iteration's weak errors vs the SDE (E x, E‖x‖², E exp(−‖x‖²/2) on OU; E L and
    E‖x‖² on regression) fall like 1/l (log-log slope in [−1.2, −0.8], halving at the large end); its gap to
    SVAG at the same l is 0 in mean/covariance and SVAG's skewness (slope in [−1.2, −0.8]) in the third moment."""
    ou, reg = skewed_quadratic(), noisy_regression()
    ou_sde, reg_sde = ou_moments(ou, ou.horizon), regression_sde_moments(reg)
    g_ou = [gaussian_moments(ou, l) for l in LADDER]
    g_reg = [gaussian_moments(reg, l) for l in LADDER]
    errors = {
        "ou_mean": [np.linalg.norm(m.mean - ou_sde.mean) for m in g_ou],
        "ou_sq_norm": [abs(m.mean_sq_norm - ou_sde.mean_sq_norm) for m in g_ou],
        "ou_kernel": [abs(gaussian_kernel_mean(m) - gaussian_kernel_mean(ou_sde)) for m in g_ou],
        "reg_loss": [abs(reg.expected_loss(m) - reg.expected_loss(reg_sde)) for m in g_reg],
        "reg_sq_norm": [abs(m.mean_sq_norm - reg_sde.mean_sq_norm) for m in g_reg],
    }
    for name, err in errors.items():
        assert all(a > b for a, b in itertools.pairwise(err)), name
        assert -1.2 <= fit_loglog_slope(LADDER, err).slope <= -0.8, name
        assert err[-2] / err[-1] == pytest.approx(2.0, rel=0.05), name
    third_gap = [abs(svag_moments(ou, l).skewness([1.0, 0.0]) - 0.0) for l in LADDER]
    assert -1.2 <= fit_loglog_slope(LADDER, third_gap).slope <= -0.8
    assert third_gap[-1] < third_gap[0] / 20
