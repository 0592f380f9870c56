"""The momentum and adaptive studies (``svag.problems.studies``): exact formulas, Monte-Carlo checks, measured rates.

Statistical tests (all seeds fixed, so every run is deterministic; float64 via conftest):
* SGDM stationary covariance vs ``torch.optim.SGD(momentum=β)``: fast ``R = 20000`` chains, seed 0; slow
  (``-m slow``) ``R = 200000``, seed 1. β ∈ {0.5, 0.9} at η_eff = 0.4, burn-in to a covariance deficit ≤ 1e-9.
  Tolerance ``Z_TOL = 5`` SE for every moment of ``(x, buf)`` (mean, covariance entries, E‖z‖², Tr Cov x).
  Power: the same sample must reject SGD's formula at η_eff by more than 8 SE (measured at R = 20000: 20 and 28 SE).
* Adaptive SVAG: ``R = 20000`` replicas, seed 0, ℓ ∈ {1, 2, 4}: the distance ℓ=1→2 exceeds ℓ=2→4 by more than
  ``3·(SE_12 + SE_24)`` (measured margins: 8.4–16.8 such units, so a correct implementation cannot flake).
Whole file: about 10 s on 2 busy cores (one torch thread).
"""

import itertools
import math

import numpy as np
import pytest
import torch

import svag
from svag.adaptive import SVAGAdam, SVAGRMSprop
from svag.analysis.stats import fit_loglog_slope
from svag.problems import ou_moments, skewed_quadratic
from svag.problems.studies import (
    AdaptiveStudyConfig,
    adaptive_problem,
    adaptive_rows,
    continuous_lyapunov,
    discrete_lyapunov,
    momentum_rows,
    sde_stationary_cov,
    sgd_stationary_cov,
    sgdm_cov_after,
    sgdm_eigen_variances,
    sgdm_mc_rows,
    sgdm_stationary_cov,
    sgdm_transition,
    simulate_sgdm,
)

Z_TOL = 5.0
FAST_R, SLOW_R, FAST_SEED, SLOW_SEED = 20_000, 200_000, 0, 1
MC_BETAS, MC_EFFECTIVE_LR, BURN_IN_TOL = (0.5, 0.9), 0.4, 1e-9
LADDER = (0.4, 0.2, 0.1, 0.05, 0.025, 0.0125)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one intra-op thread (two measured ~20× slower on a shared 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# -- exact formulas ---------------------------------------------------------------------------------
def test_lyapunov_solvers_satisfy_their_equations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    t = 0.9 * a / max(abs(np.linalg.eigvals(a)))
    q = rng.normal(size=(4, 4))
    q = q @ q.T
    p = discrete_lyapunov(t, q)
    np.testing.assert_allclose(p, t @ p @ t.T + q, rtol=0, atol=1e-11)
    d = a @ a.T + np.eye(4)
    c = continuous_lyapunov(d, q)
    np.testing.assert_allclose(d @ c + c @ d.T, q, rtol=0, atol=1e-11)
    with pytest.raises(ValueError, match="spectral radius < 1"):
        discrete_lyapunov(1.1 * t / 0.9, q)


def test_sde_stationary_cov_is_the_long_time_limit_of_ou_moments():
    p = skewed_quadratic()
    np.testing.assert_allclose(sde_stationary_cov(p, p.lr), ou_moments(p, 400.0).cov, rtol=1e-12, atol=0)


@pytest.mark.parametrize("lr", [0.5, 0.1, 0.01])
def test_sgdm_at_beta_0_is_sgd_exactly(lr):
    """β = 0: the x block is plain SGD's stationary covariance, and buf = d = D(x − x*) + ζ has ``DCD + Σ``."""
    p = skewed_quadratic()
    d = p.dim
    cov = sgdm_stationary_cov(p, lr, 0.0)
    sgd = sgd_stationary_cov(p, lr)
    np.testing.assert_allclose(cov[:d, :d], sgd, rtol=1e-12, atol=0)
    np.testing.assert_allclose(cov[d:, d:], p.drift @ sgd @ p.drift + p.noise_cov, rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("effective_lr", [0.8, 0.1, 0.01])
def test_sgdm_lyapunov_matches_the_eigenbasis_closed_form(beta, effective_lr):
    """Two derivations agree: the vec-trick Lyapunov solve and the decoupled 1-d heavy-ball variances."""
    p = skewed_quadratic()
    lr = (1 - beta) * effective_lr
    _, q = np.linalg.eigh(p.drift)
    cov_x = sgdm_stationary_cov(p, lr, beta)[: p.dim, : p.dim]
    np.testing.assert_allclose(np.diag(q.T @ cov_x @ q), sgdm_eigen_variances(p, lr, beta), rtol=1e-10, atol=0)


def test_sgdm_cov_after_k_steps_matches_the_recursion():
    p, lr, beta = skewed_quadratic(), 0.1, 0.8
    t, b = sgdm_transition(p, lr, beta)
    src = b @ p.noise_cov @ b.T
    cov = np.zeros_like(src)
    for k in range(60):
        np.testing.assert_allclose(sgdm_cov_after(p, lr, beta, k), cov, rtol=0, atol=1e-12)
        cov = t @ cov @ t.T + src


def test_ratio_to_sgd_at_effective_lr_tends_to_1_with_slope_1():
    """Tr Cov SGDM(η, β) / Tr Cov SGD(η/(1−β)) → 1 from below as η → 0 over η_eff = 0.4 ... 0.0125: fitted
    slope of log|ratio − 1| vs log η in [0.95, 1.10] (exact: 1.03 at β = 0.5, 1.01 at β = 0.9); at the smallest η
    the first-order prediction holds to 2%; and SGDM is closer to the SDE than SGD at the same η_eff."""
    rows = momentum_rows(skewed_quadratic(), (0.5, 0.9), LADDER)
    for beta in (0.5, 0.9):
        sub = [r for r in rows if r["beta"] == beta]
        gaps = [r["ratio_minus_1"] for r in sub]
        assert all(g < 0 for g in gaps) and all(abs(a) > abs(b) for a, b in itertools.pairwise(gaps))
        assert 0.95 <= fit_loglog_slope([r["lr"] for r in sub], np.abs(gaps)).slope <= 1.10
        last = sub[-1]
        assert abs(last["ratio"] - last["ratio_first_order"]) <= 0.02 * abs(last["ratio_minus_1"])
        assert all(0 < r["sgdm_vs_sde"] < r["sgd_vs_sde"] for r in sub)


# -- Monte-Carlo: the vectorized replicas are independent runs, and the formula matches them ----------
def _rowwise_equals_joint(make_opt, loss_of, batches, x0, atol):
    def run(rows):
        x = torch.nn.Parameter(x0[rows].clone())
        opt = make_opt(x)
        for b in batches:
            svag.train_step(opt, lambda idx: loss_of(x, idx), b[0][rows], b[1][rows])
        return x.detach()

    joint = run(list(range(len(x0))))
    for r in range(len(x0)):
        torch.testing.assert_close(joint[r], run([r])[0], rtol=0, atol=atol)


@pytest.mark.parametrize("kind", ["sgdm", "adam", "rmsprop"])
def test_replica_rows_are_independent_runs(kind):
    """One (R, d) parameter = R separate single-row runs fed the same batches (SGD momentum, SVAGAdam at ℓ = 4,
    SVAGRMSprop at ℓ = 4)."""
    p, R, k = adaptive_problem(), 4, 15
    gen = torch.Generator().manual_seed(5)
    batches = torch.randint(p.n_samples, (k, 2, R, p.batch_size), generator=gen)
    x0 = torch.randn(R, p.dim, generator=gen, dtype=torch.float64)
    makers = {
        "sgdm": lambda x: torch.optim.SGD([x], lr=0.05, momentum=0.9, weight_decay=p.weight_decay),
        "adam": lambda x: SVAGAdam([x], lr=0.1, betas=(0.9, 0.99), weight_decay=p.weight_decay, l=4),
        "rmsprop": lambda x: SVAGRMSprop([x], lr=0.1, beta=0.99, weight_decay=p.weight_decay, l=4),
    }
    _rowwise_equals_joint(makers[kind], p.minibatch_loss, batches, x0, atol=1e-13)


def _check_sgdm_mc(replicas, seed):
    rows = sgdm_mc_rows(skewed_quadratic(), MC_BETAS, MC_EFFECTIVE_LR, replicas, seed, BURN_IN_TOL)
    for r in rows:
        assert r["burn_in_bias"] <= 1e-8
        assert r["max_abs_z_state"] <= Z_TOL, r
        assert abs(r["z_sgdm"]) <= Z_TOL, r
        assert abs(r["z_sgd"]) > 8, r  # the test has the power to tell SGDM from SGD at η_eff
    return rows


def test_sgdm_stationary_cov_matches_torch_sgd_momentum_fast():
    """R = 20000, seed 0: every moment of (x, buf) and Tr Cov x within 5 SE of the exact SGDM formula."""
    _check_sgdm_mc(FAST_R, FAST_SEED)


@pytest.mark.slow
def test_sgdm_stationary_cov_matches_torch_sgd_momentum_slow():
    """R = 200000, seed 1."""
    _check_sgdm_mc(SLOW_R, SLOW_SEED)


def test_simulate_sgdm_refuses_beta_0():
    with pytest.raises(ValueError, match="beta must be in"):
        simulate_sgdm(skewed_quadratic(), 0.1, 0.0, 10, 3, 0)


# -- adaptive SVAG ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SVAGAdam, SVAGRMSprop])
def test_adaptive_steps_are_l_squared_T_over_lr_squared(cls):
    """The study asks the optimizer's clock for its steps: k = ℓ²T/η² (P2)."""
    assert [cls.clock_for(l).steps_to(0.1, 0.2) for l in (1, 2, 4, 16)] == [20, 80, 320, 5120]
    with pytest.raises(ValueError, match=r"l²·T/lr² must be an integer number of SVAG steps"):
        cls.clock_for(1).steps_to(0.1, 0.205)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_adaptive_svag_distances_shrink_fast(optimizer):
    """R = 20000, seed 0, ℓ ∈ {1, 2, 4}, η = 0.1, T = 0.2 (20 steps of the simulated run), B = 1: for E‖x_T‖² and
    E uᵀx_T, |E_1 − E_2| − |E_2 − E_4| > 3·(SE_12 + SE_24); and |E_ℓ uᵀx_T| (limit 0) falls from ℓ = 1 to 4."""
    cfg = AdaptiveStudyConfig(ls=(1, 2, 4), replicas=FAST_R, seed=FAST_SEED)
    rows, (p12, p24) = adaptive_rows(adaptive_problem(cfg.batch_size), cfg, optimizer)
    for key in ("sq_norm", "mean_u"):
        margin = p12[f"{key}_dist"] - p24[f"{key}_dist"]
        assert margin > 3 * (p12[f"{key}_dist_se"] + p24[f"{key}_dist_se"]), (key, p12, p24)
    first, last = rows[0], rows[-1]
    assert abs(first["mean_u"]) - abs(last["mean_u"]) > 3 * math.hypot(first["mean_u_se"], last["mean_u_se"])
