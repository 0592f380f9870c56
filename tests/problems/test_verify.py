"""Monte-Carlo runs of the real ``svag.SVAG`` + ``svag.train_step`` against the exact moments, the
Euler–Maruyama reference of the state-dependent problem, and the ``svag verify`` command.

Statistical tests (each states its own sizes below; all seeds fixed, so every run is deterministic):
* z-score tolerance ``Z_TOL = 4.5`` for every moment compared with its exact value (mean: exact SE
  ``√(C_ii/R)``; covariance entries, ``E‖x‖²``, third moment, ``E L``: sample SEs). With ~10–40 z-scores
  per test the chance that a correct implementation fails is below 1e-3.
* fast twins: ``R = 4000`` replicas, seed 0; slow (``-m slow``, about a minute each on 2 cores):
  ``R = 50000`` (OU, regression distances) / ``30000`` (regression moments), seed 1.
* Gaussian-noise step (``svag.gaussian``): fast ``R = 4000``, seed 0 (about 2 s); slow ``R = 30000``, seed 1,
  l = 1..32 on both problems (about two minutes).
"""

import math

import numpy as np
import pytest
import torch

import svag
from svag.analysis.stats import mc_check
from svag.cli import main
from svag.problems import (
    gaussian_kernel_mean,
    gaussian_moments,
    noisy_regression,
    regression_svag_moments,
    skewed_quadratic,
    svag_moments,
)
from svag.problems.report import plot_verification
from svag.problems.verify import (
    VerifyConfig,
    gaussian_rows,
    l_ladder,
    regression_rows,
    simulate_em,
    simulate_gaussian,
    simulate_svag,
)
from svag.records import read_json

Z_TOL = 4.5
FAST_R, FAST_SEED = 4000, 0
SLOW_R_OU, SLOW_R_REG, SLOW_SEED = 50_000, 30_000, 1
U = np.array([1.0, 0.0])  # the skewed noise coordinate of the OU problem


# -- the vectorized Monte-Carlo is exactly R independent SVAG runs ----------------------------------
@pytest.mark.parametrize("make", [skewed_quadratic, noisy_regression])
def test_replica_rows_are_exactly_independent_svag_runs(make):
    """One (R, d) parameter driven by svag.SVAG + train_step equals R separate single-chain runs fed
    the same batches, and the hand-written SVAG update x ← x − (η/l)(a1 g1 + a2 g2 + λx)."""
    p, l, R, k = make(), 4.0, 5, 12
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(p.n_samples, (k, 2, R, p.batch_size), generator=gen)

    def run(rows):
        x = torch.nn.Parameter(torch.tensor(p.x0).repeat(len(rows), 1))
        opt = svag.SVAG([x], lr=p.lr, l=l, weight_decay=p.weight_decay)
        for j in range(k):
            svag.train_step(opt, lambda b: p.minibatch_loss(x, b), idx[j, 0, rows], idx[j, 1, rows])
        return x.detach()

    joint = run(list(range(R)))
    for r in range(R):
        torch.testing.assert_close(joint[r], run([r])[0], rtol=0, atol=1e-13)
    a1, a2 = svag.coefficients(l)
    x = torch.tensor(p.x0).repeat(R, 1)
    for j in range(k):
        g = []
        for b in idx[j]:
            xg = x.clone().requires_grad_(True)
            p.minibatch_loss(xg, b).backward()
            g.append(xg.grad)
        x = x - p.lr / l * (a1 * g[0] + a2 * g[1] + p.weight_decay * x)
    torch.testing.assert_close(joint, x, rtol=0, atol=1e-12)


# -- Monte-Carlo SVAG vs exact finite-l moments ---------------------------------------------------
def _ou_max_z(ls, R, seed):
    p = skewed_quadratic()
    return {l: mc_check(simulate_svag(p, l, R, seed), svag_moments(p, l), U)["max_abs_z"] for l in ls}


def test_ou_monte_carlo_matches_exact_moments_fast():
    """R = 4000, seed 0, l ∈ {1, 4}: mean, covariance, E‖x‖², third moment along x_1 within 4.5 SE."""
    zs = _ou_max_z([1, 4], FAST_R, FAST_SEED)
    assert max(zs.values()) <= Z_TOL, zs


@pytest.mark.slow
def test_ou_monte_carlo_matches_exact_moments_slow():
    """R = 50000, seed 1, l = 1..32."""
    zs = _ou_max_z(l_ladder(32), SLOW_R_OU, SLOW_SEED)
    assert max(zs.values()) <= Z_TOL, zs


def test_monte_carlo_skewness_falls_with_l():
    """R = 4000, seed 0: the sample skewness of x_1 at l = 16 is far below that at l = 1 (SGD), by more
    than 5 normal-theory SEs √(6/R) of their difference; each matches its exact value (the third
    moment's z-score is inside ``mc_check``)."""
    p = skewed_quadratic()
    out = {l: mc_check(simulate_svag(p, l, FAST_R, FAST_SEED), svag_moments(p, l), U) for l in (1, 16)}
    se = math.sqrt(2) * out[1]["skewness_se"]
    assert abs(out[1]["skewness"]) - abs(out[16]["skewness"]) > 5 * se
    assert max(o["max_abs_z"] for o in out.values()) <= Z_TOL


def test_regression_monte_carlo_matches_exact_moments_fast():
    """R = 4000, seed 0, l = 2, and Euler–Maruyama with 4 substeps vs its exact moments."""
    p = noisy_regression()
    z_svag = mc_check(simulate_svag(p, 2, FAST_R, FAST_SEED), regression_svag_moments(p, 2))["max_abs_z"]
    z_em = mc_check(simulate_em(p, 4, FAST_R, FAST_SEED), regression_svag_moments(p, 4))["max_abs_z"]
    assert max(z_svag, z_em) <= Z_TOL, (z_svag, z_em)


@pytest.mark.slow
def test_regression_monte_carlo_matches_exact_moments_slow():
    """R = 30000, seed 1, l = 1..32 and Euler–Maruyama with 16 substeps."""
    p = noisy_regression()
    zs = {l: mc_check(simulate_svag(p, l, SLOW_R_REG, SLOW_SEED), regression_svag_moments(p, l)) for l in l_ladder(32)}
    zs["em"] = mc_check(simulate_em(p, 16, SLOW_R_REG, SLOW_SEED), regression_svag_moments(p, 16))
    assert max(z["max_abs_z"] for z in zs.values()) <= Z_TOL, {k: z["max_abs_z"] for k, z in zs.items()}


# -- state-dependent noise: SVAG approaches the Euler–Maruyama simulation of the SDE --------------
def _check_distances(rows, first, last, keys):
    for r in rows:  # each MC distance agrees with the exact distance between SVAG and EM
        for key in ("loss", "sq_norm"):
            assert abs(r[f"{key}_mc_dist"] - r[f"{key}_em_gap"]) <= Z_TOL * r[f"{key}_mc_se"], (r["l"], key)
    a, b = rows[first], rows[last]
    for key in keys:  # and it shrinks, beyond the (conservative) sum of the two SEs
        assert a[f"{key}_mc_dist"] - b[f"{key}_mc_dist"] > 3 * (a[f"{key}_mc_se"] + b[f"{key}_mc_se"]), key


def test_regression_distance_to_sde_shrinks_fast():
    """R = 6000, seed 0, EM Δt = η/8, l ∈ {1, 4}: |Ê L_SVAG − Ê L_EM| falls by more than 3 SE."""
    rows, ref = regression_rows(noisy_regression(), [1, 4], 6000, FAST_SEED, 8)
    _check_distances(rows, 0, 1, ["loss"])
    assert ref["mc_max_abs_z"] <= Z_TOL


@pytest.mark.slow
def test_regression_distance_to_sde_shrinks_slow():
    """R = 50000, seed 1, EM Δt = η/16, l = 1..8: both E L and E‖x‖² distances fall by more than 3 SE."""
    rows, ref = regression_rows(noisy_regression(), [1, 2, 4, 8], SLOW_R_OU, SLOW_SEED, 16)
    _check_distances(rows, 0, 3, ["loss", "sq_norm"])
    assert ref["mc_max_abs_z"] <= Z_TOL


# -- the Gaussian-noise step (NGD = Euler–Maruyama with Δt = η/l) vs its exact moments ---------------------
def _gaussian_z(p, l, R, seed, finite_population=False):
    """max |z| of real gaussian_step runs against gaussian_moments (OU: also third moment 0 along x_1 and
    E exp(−‖x‖²/2)), and the sample skewness with its SE."""
    ex = gaussian_moments(p, l, finite_population=finite_population)
    samples = simulate_gaussian(p, l, R, seed, finite_population=finite_population)
    if ex.third is None:
        return mc_check(samples, ex)["max_abs_z"], None
    check = mc_check(samples, ex, U)
    kernel = np.exp(-0.5 * (samples**2).sum(1))
    z_kernel = (kernel.mean() - gaussian_kernel_mean(ex)) / (kernel.std(ddof=1) / math.sqrt(R))
    return max(check["max_abs_z"], abs(z_kernel)), (check["skewness"], check["skewness_se"])


def test_gaussian_monte_carlo_matches_exact_moments_fast():
    """R = 4000, seed 0: OU at l ∈ {1, 4} and with the finite-population factor at l = 2, regression at l = 2;
    every z within 4.5. At l = 1 the Gaussian runs' skewness is 0 within 4.5 SE, where SGD's exact one is −1.18."""
    ou, reg = skewed_quadratic(), noisy_regression()
    zs = {}
    for l in (1, 4):
        zs[f"ou l={l}"], (skew, se) = _gaussian_z(ou, l, FAST_R, FAST_SEED)
        assert abs(skew) <= Z_TOL * se
    assert abs(svag_moments(ou, 1).skewness(U)) > 10 * se  # SGD's noise is skewed; the Gaussian step's is not
    zs["ou f"], _ = _gaussian_z(ou, 2, FAST_R, FAST_SEED, finite_population=True)
    zs["reg l=2"], _ = _gaussian_z(reg, 2, FAST_R, FAST_SEED)
    assert max(zs.values()) <= Z_TOL, zs


@pytest.mark.slow
def test_gaussian_monte_carlo_matches_exact_moments_slow():
    """R = 30000, seed 1, l = 1..32 on both problems, and with the finite-population factor at l = 1 and 8."""
    ou, reg = skewed_quadratic(), noisy_regression()
    zs = {}
    for l in l_ladder(32):
        zs[f"ou l={l}"], _ = _gaussian_z(ou, l, SLOW_R_REG, SLOW_SEED)
        zs[f"reg l={l}"], _ = _gaussian_z(reg, l, SLOW_R_REG, SLOW_SEED)
    for l in (1, 8):
        zs[f"ou f l={l}"], _ = _gaussian_z(ou, l, SLOW_R_REG, SLOW_SEED, finite_population=True)
        zs[f"reg f l={l}"], _ = _gaussian_z(reg, l, SLOW_R_REG, SLOW_SEED, finite_population=True)
    assert max(zs.values()) <= Z_TOL, zs


def test_gaussian_replica_rows_are_independent_chains():
    """The (R, d) chains of simulate_gaussian equal R single-chain gaussian_step runs fed the same z rows."""
    p, l, R, k = skewed_quadratic(), 2.0, 3, 5
    z = torch.randn(k, R, p.n_samples, generator=torch.Generator().manual_seed(4))
    data = (torch.arange(p.n_samples), torch.zeros(p.n_samples))

    def run(rows):
        x = torch.nn.Parameter(torch.tensor(p.x0).repeat(len(rows), 1))
        opt = svag.SVAG([x], lr=p.lr, l=l, weight_decay=p.weight_decay)
        for j in range(k):
            w = svag.gaussian.weights_from_normals(z[j, rows], p.batch_size, l)
            grads, _ = svag.gaussian.gaussian_gradient(
                lambda idx: p.per_sample_loss(x, idx), lambda o, t: o, data, w, params=[x]
            )
            x.grad = grads[0]
            opt.mark_amplified()  # a hand-built amplified gradient (covariance l·Σ): declared, as documented
            opt.step()
        return x.detach()

    joint = run(list(range(R)))
    for r in range(R):
        torch.testing.assert_close(joint[r], run([r])[0], rtol=0, atol=1e-13)
    # and the hand-written Euler–Maruyama update with the per-sample gradients g_i = A(x − c) + ξ_i
    x = torch.tensor(p.x0).repeat(R, 1)
    a, c, xi = (torch.tensor(v) for v in (p.curvature, p.center, p.noise))
    for j in range(k):
        noise = math.sqrt(l / (p.n_samples * p.batch_size)) * z[j] @ (xi - xi.mean(0))
        x = x - p.lr / l * ((x - c) @ a + noise + p.weight_decay * x)
    torch.testing.assert_close(joint, x, rtol=0, atol=1e-12)


def test_gaussian_rows_report_identical_moments_and_one_over_l():
    """R = 200, seed 0, l = 1..32 (exact columns do not depend on R): slopes in [−1.2, −0.8], gap to SVAG ≤ 1e-12."""
    out = gaussian_rows(skewed_quadratic(), noisy_regression(), l_ladder(32), 200, 0, U)
    for key, value in out["slopes"].items():
        assert -1.2 <= value <= -0.8, (key, value)
    for row in out["ou"] + out["regression"]:
        assert row["svag_moment_gap"] <= 1e-12
        assert row["mc_max_abs_z"] <= Z_TOL


# -- small pieces ------------------------------------------------------------------------------------
def test_ladder():
    assert l_ladder(32) == [1, 2, 4, 8, 16, 32]
    assert l_ladder(10) == [1, 2, 4, 8]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="l_max must be an integer >= 2"):
        VerifyConfig(l_max=1).validate()
    with pytest.raises(ValueError, match="replicas must be >= 10"):
        VerifyConfig(replicas=5).validate()
    with pytest.raises(
        ValueError, match=r"gaussian_replicas must be an integer >= 10 \(or None: replicas // 4\), got 3"
    ):
        VerifyConfig(gaussian_replicas=3).validate()
    assert VerifyConfig(replicas=100).gaussian_chains == 25 and VerifyConfig(replicas=12).gaussian_chains == 10


# -- the command ---------------------------------------------------------------------------------------
def test_cli_verify_quick_writes_table_figure_and_numbers(tmp_path, capsys):
    out = tmp_path / "verify"
    assert main(["verify", "--quick", "--replicas", "500", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "slope" in printed and "skew" in printed and "[3] Gaussian noise" in printed
    assert (out / "verify.png").stat().st_size > 10_000
    lines = (out / "verify.csv").read_text().splitlines()
    assert lines[0].startswith("l,ou_steps,ou_mean_err")
    assert [r.split(",")[0] for r in lines[1:]] == ["1", "2", "4", "8"]
    data = read_json(out / "verify.json")
    assert data["config"]["replicas"] == 500 and data["config"]["l_max"] == 8
    for key in ("ou_mean_err", "ou_sq_norm_err"):
        assert -1.2 <= data["slopes"][key] <= -0.8
    assert data["gaussian"]["replicas"] == 125
    assert -1.2 <= data["gaussian"]["slopes"]["ou_kernel_err"] <= -0.8
    assert "gauss_ou_kernel_err" in lines[0] and "gauss_reg_mc_max_abs_z" in lines[0]
    # the figure is drawn from the saved numbers alone
    assert plot_verification(data, tmp_path / "again.png").stat().st_size > 10_000


def test_cli_verify_bad_value_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["verify", "--l-max", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "svag verify: error: l_max must be an integer >= 2 (a slope needs two l), got 1"
