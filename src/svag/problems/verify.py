r"""The exact-answer verification of SVAG (P1, Thm 4.3): weak error vs ``l`` on problems with closed forms.

Two checks, both pure data out (plots live in :mod:`svag.commands.verify` and only read this data):

* **OU with skewed noise** (:func:`svag.problems.skewed_quadratic`): the exact weak errors
  ``‖E x_k − E X_T‖`` and ``|E‖x_k‖² − E‖X_T‖²|`` at ``k = l·T/η`` fall like ``1/l`` (fitted log–log
  slope ≈ −1), and the exact standardized skewness of ``uᵀx_k`` (nonzero for SGD's skewed noise,
  zero for the SDE) vanishes like ``1/l``. Monte-Carlo runs of the real :class:`svag.SVAG`
  optimizer driven by :func:`svag.train_step` match the exact finite-``l`` moments (z-scores).
* **Regression with state-dependent noise** (:func:`svag.problems.noisy_regression`): Monte-Carlo
  SVAG approaches a fine-step Euler–Maruyama simulation of the SDE with the exact ``Σ(x)`` on
  ``E L`` and ``E‖x‖²`` at ``T``; exact moments of both (the moments close) give the exact distances.
* **Gaussian noise** (:mod:`svag.gaussian`: P1's NGD, which is Euler–Maruyama with ``Δt = η/l``) on both
  problems: real :func:`svag.gaussian.gaussian_step` runs match the exact moments of
  :func:`svag.problems.gaussian_moments` (and, on OU, ``E exp(−‖x‖²/2)`` and a zero third moment); its
  exact weak error against the SDE falls like ``1/l``; and SVAG(l) and the Gaussian iteration at the same
  ``l`` have identical means and covariances, their third moments differing by SVAG's, which falls like
  ``1/l``: both approach the same SDE.

Monte-Carlo: ``R`` independent chains are one ``(R, d)`` parameter; the loss is the sum over rows of
each row's mean minibatch loss, so row ``r``'s gradient is its own minibatch gradient and SVAG's
update ``x ← x − (η/l)(g + λx)`` acts row by row: exactly ``R`` independent SVAG runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from svag.analysis.stats import fit_loglog_slope, mc_check, mean_se
from svag.gaussian import gaussian_step
from svag.optim import SVAG
from svag.problems import (
    NoisyRegression,
    SkewedQuadratic,
    gaussian_kernel_mean,
    gaussian_moments,
    noisy_regression,
    ou_moments,
    regression_sde_moments,
    regression_svag_moments,
    skewed_quadratic,
    svag_moments,
)
from svag.seeds import study_generator
from svag.step import train_step

__all__ = [
    "VerifyConfig",
    "gaussian_rows",
    "l_ladder",
    "ou_rows",
    "regression_rows",
    "run_verification",
    "simulate_em",
    "simulate_gaussian",
    "simulate_svag",
]


MAX_COST_FACTOR = 100  # a verification may cost at most this many times the default one (~16 s on 2 cores)


@dataclass
class VerifyConfig:
    """Settings of ``svag verify``."""

    l_max: int = 32  # largest amplification; the ladder is l = 1, 2, 4, ..., l_max
    replicas: int = 10000  # independent SVAG chains per l (and Euler–Maruyama chains) for the Monte-Carlo columns
    seed: int = 0  # seed of every Monte-Carlo stream (one stream per problem and l)
    em_substeps: int = 32  # Euler–Maruyama steps per SGD step: Δt = η / em_substeps
    # Gaussian-noise chains per l (None: replicas // 4, at least 10); a step draws n normals per chain
    gaussian_replicas: int | None = None

    @property
    def gaussian_chains(self) -> int:
        """Chains per ``l`` of the Gaussian-noise Monte-Carlo: ``gaussian_replicas`` or ``max(10, replicas // 4)``."""
        return self.gaussian_replicas if self.gaussian_replicas is not None else max(10, self.replicas // 4)

    def validate(self) -> VerifyConfig:
        for name in ("l_max", "replicas", "em_substeps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "l_max" else 1):
                valid = "an integer >= 2 (a slope needs two l)" if name == "l_max" else "an integer >= 1"
                raise ValueError(f"{name} must be {valid}, got {value!r}")
        if self.replicas < 10:
            raise ValueError(f"replicas must be >= 10 for a standard error, got {self.replicas}")
        g = self.gaussian_replicas
        if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 10):
            raise ValueError(f"gaussian_replicas must be an integer >= 10 (or None: replicas // 4), got {g!r}")
        # cost ∝ chains × steps: SVAG's over the ladder (Σ l ≈ 2·l_max) + Euler–Maruyama substeps, and the
        # Gaussian-noise steps (2·l_max, each about twice an SVAG step: n normals per chain)
        cost, default = (
            c.replicas * (2 * c.l_max + c.em_substeps) + c.gaussian_chains * 4 * c.l_max for c in (self, VerifyConfig())
        )
        if cost > MAX_COST_FACTOR * default:
            raise ValueError(
                f"l_max={self.l_max}, replicas={self.replicas}, em_substeps={self.em_substeps} would take about "
                f"{cost / default:.3g}× as long as the default run (~16 s); at most {MAX_COST_FACTOR}× is allowed"
            )
        return self


def l_ladder(l_max: int) -> list[int]:
    """``[1, 2, 4, ..., 2^j]`` with ``2^j ≤ l_max``."""
    return [2**j for j in range(int(math.log2(l_max)) + 1)]


def simulate_svag(
    problem: SkewedQuadratic | NoisyRegression, l: float, replicas: int, seed: int, *, stream: str = "svag_samples"
) -> np.ndarray:
    """``replicas`` independent runs of :class:`svag.SVAG` + :func:`svag.train_step` (float64) for
    ``k = l·T/η`` steps from ``x0``; two fresh minibatches of ``B`` indices drawn with replacement per
    step and replica, from the study stream ``stream`` of :func:`svag.seeds.study_generator`. Returns the final
    iterates, ``(replicas, d)``."""
    gen = study_generator(seed, stream, round(l * 1000))
    x = torch.nn.Parameter(torch.tensor(problem.x0, dtype=torch.float64).repeat(replicas, 1))
    opt = SVAG([x], lr=problem.lr, l=l, weight_decay=problem.weight_decay)
    shape = (replicas, problem.batch_size)
    n = problem.n_samples
    for _ in range(problem.steps(l)):
        batch1 = torch.randint(n, shape, generator=gen)
        batch2 = torch.randint(n, shape, generator=gen) if l > 1 else None
        train_step(opt, lambda idx: problem.minibatch_loss(x, idx), batch1, batch2)
    return x.detach().numpy().copy()


def simulate_em(problem: NoisyRegression, substeps: int, replicas: int, seed: int) -> np.ndarray:
    r"""Euler–Maruyama for the regression SDE with the exact ``Σ(x)``, step ``Δt = η/substeps``:

    .. math::  X ← X − Δt(∇L(X) + λX) + \sqrt{ηΔt}\;Σ(X)^{1/2}z,\qquad z \sim N(0, I_d)

    with ``Σ(X)^{1/2}`` the Cholesky factor of ``Σ(X) = Σ_1(X)/B`` built from all ``n`` per-sample
    gradients (positive definite when they span ``R^d``; the default data cannot be interpolated).
    Its first two moments equal SVAG's at ``l = substeps`` exactly (same ``h`` and ``h²lΣ = hηΣ``),
    i.e. :func:`svag.problems.regression_svag_moments` ``(problem, substeps)``."""
    gen = study_generator(seed, "verify.exact_substeps", substeps)
    f = torch.tensor(problem.features, dtype=torch.float64)
    y = torch.tensor(problem.targets, dtype=torch.float64)
    n, d = f.shape
    outer = (f[:, :, None] * f[:, None, :]).reshape(n, d * d)  # a_i a_iᵀ, flattened
    dt = problem.lr / substeps
    x = torch.tensor(problem.x0, dtype=torch.float64).repeat(replicas, 1)
    for _ in range(problem.steps(substeps)):
        r = x @ f.T - y  # residuals r_i(x), (R, n)
        grad = r @ f / n  # ∇L(x) per replica
        second = ((r**2) @ outer / n).reshape(-1, d, d)  # (1/n)Σ_i g_i g_iᵀ
        cov = (second - grad[:, :, None] * grad[:, None, :]) / problem.batch_size
        chol, info = torch.linalg.cholesky_ex(cov)
        if bool(info.any()):
            raise ValueError("Σ(x) is singular at some replica: the per-sample gradients do not span R^d")
        z = torch.randn((x.shape[0], d, 1), generator=gen, dtype=torch.float64)
        x = x - dt * (grad + problem.weight_decay * x) + math.sqrt(problem.lr * dt) * (chol @ z).squeeze(-1)
    return x.numpy()


class _Chains(torch.nn.Module):
    """``R`` independent chains of a problem as one model: parameter ``x`` ``(R, d)``; ``forward(idx)`` gives
    the per-sample losses ``ℓ_i(x_r)``, ``(R, k)``, of the samples ``idx`` (row ``r`` depends on ``x_r`` only)."""

    def __init__(self, problem: SkewedQuadratic | NoisyRegression, replicas: int) -> None:
        super().__init__()
        self.problem = problem
        self.x = torch.nn.Parameter(torch.tensor(problem.x0, dtype=torch.float64).repeat(replicas, 1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.problem.per_sample_loss(self.x, idx)


def _own_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The chains' outputs are already the per-sample losses."""
    return output


def simulate_gaussian(
    problem: SkewedQuadratic | NoisyRegression,
    l: float,
    replicas: int,
    seed: int,
    *,
    stream: str = "verify.gaussian_ou",
    finite_population: bool = False,
) -> np.ndarray:
    """``replicas`` independent runs of :class:`svag.SVAG` + :func:`svag.gaussian.gaussian_step` (float64) for
    ``k = l·T/η`` steps from ``x0``: every step one full-data weighted backward over the ``n`` samples, each
    replica with its own ``z`` (``replicas=R``). Returns the final iterates, ``(replicas, d)``."""
    gen = study_generator(seed, stream, round(l * 1000))
    chains = _Chains(problem, replicas)
    opt = SVAG(chains.parameters(), lr=problem.lr, l=l, weight_decay=problem.weight_decay)
    n = problem.n_samples
    data = (torch.arange(n), torch.zeros(n, dtype=torch.float64))
    for _ in range(problem.steps(l)):
        gaussian_step(
            opt,
            chains,
            _own_loss,
            data,
            batch_size=problem.batch_size,
            generator=gen,
            replicas=replicas,
            finite_population=finite_population,
        )
    return chains.x.detach().numpy().copy()


def _kernel_check(samples: np.ndarray, exact: float) -> tuple[float, float, float]:
    """Sample mean of ``exp(−‖x‖²/2)``, its SE and the z-score against ``exact``."""
    mean, se = mean_se(np.exp(-0.5 * (samples**2).sum(1)))
    return mean, se, (mean - exact) / se


def _moment_gap(a, b) -> float:
    return float(max(np.abs(a.mean - b.mean).max(), np.abs(a.cov - b.cov).max()))


def gaussian_rows(
    ou: SkewedQuadratic, reg: NoisyRegression, ls: list[int], replicas: int, seed: int, direction: np.ndarray
) -> dict:
    """Per ``l``, the Gaussian-noise iteration (NGD at ``l = 1``; Euler–Maruyama with ``Δt = η/l``):

    * OU: exact weak errors vs the SDE (``mean_err``, ``sq_norm_err``, ``kernel_err`` on ``E exp(−‖x‖²/2)``),
      the exact gap to SVAG(l) in mean and covariance (``svag_moment_gap``: 0 up to rounding) and in
      standardized third moment along ``direction`` (``svag_third_gap`` = |SVAG's skewness|, the Gaussian's
      being 0), and the Monte-Carlo check of real :func:`gaussian_step` runs (``mc_max_abs_z`` over mean,
      covariance, ``E‖x‖²``, third moment and kernel; sample skewness and kernel ± SE);
    * regression: exact distances to the SDE on ``E L`` and ``E‖x‖²``, the gap to SVAG(l), the MC max |z|.
    """
    ou_sde, reg_sde = ou_moments(ou, ou.horizon), regression_sde_moments(reg)
    ou_table, reg_table = [], []
    for l in ls:
        ex = gaussian_moments(ou, l)
        samples = simulate_gaussian(ou, l, replicas, seed, stream="verify.gaussian_ou")
        mc = mc_check(samples, ex, direction)
        kernel, kernel_se, kernel_z = _kernel_check(samples, gaussian_kernel_mean(ex))
        ou_table.append(
            {
                "l": l,
                "steps": ou.steps(l),
                "mean_err": float(np.linalg.norm(ex.mean - ou_sde.mean)),
                "sq_norm_err": abs(ex.mean_sq_norm - ou_sde.mean_sq_norm),
                "kernel_err": abs(gaussian_kernel_mean(ex) - gaussian_kernel_mean(ou_sde)),
                "svag_moment_gap": _moment_gap(ex, svag_moments(ou, l)),
                "svag_third_gap": abs(svag_moments(ou, l).skewness(direction)),
                "kernel_mc": kernel,
                "kernel_mc_se": kernel_se,
                "skewness_mc": mc["skewness"],
                "skewness_mc_se": mc["skewness_se"],
                "mc_max_abs_z": max(mc["max_abs_z"], abs(kernel_z)),
            }
        )
        ex = gaussian_moments(reg, l)
        samples = simulate_gaussian(reg, l, replicas, seed, stream="verify.gaussian_regression")
        reg_table.append(
            {
                "l": l,
                "steps": reg.steps(l),
                "loss_err": abs(reg.expected_loss(ex) - reg.expected_loss(reg_sde)),
                "sq_norm_err": abs(ex.mean_sq_norm - reg_sde.mean_sq_norm),
                "svag_moment_gap": _moment_gap(ex, regression_svag_moments(reg, l)),
                "mc_max_abs_z": mc_check(samples, ex)["max_abs_z"],
            }
        )
    slope = lambda rows, key: fit_loglog_slope(ls, [abs(r[key]) for r in rows]).slope  # noqa: E731
    slopes = {
        "ou_mean_err": slope(ou_table, "mean_err"),
        "ou_sq_norm_err": slope(ou_table, "sq_norm_err"),
        "ou_kernel_err": slope(ou_table, "kernel_err"),
        "svag_third_gap": slope(ou_table, "svag_third_gap"),
        "regression_loss_err": slope(reg_table, "loss_err"),
        "regression_sq_norm_err": slope(reg_table, "sq_norm_err"),
    }
    return {"ou": ou_table, "regression": reg_table, "slopes": slopes}


def ou_rows(problem: SkewedQuadratic, ls: list[int], replicas: int, seed: int, direction: np.ndarray) -> list[dict]:
    """Per ``l``: exact weak errors vs the OU SDE, exact skewness, and the MC check of :class:`svag.SVAG`."""
    sde = ou_moments(problem, problem.horizon)
    rows = []
    for l in ls:
        ex = svag_moments(problem, l)
        mc = mc_check(simulate_svag(problem, l, replicas, seed, stream="verify.moments"), ex, direction)
        rows.append(
            {
                "l": l,
                "steps": problem.steps(l),
                "mean_err": float(np.linalg.norm(ex.mean - sde.mean)),
                "sq_norm_err": abs(ex.mean_sq_norm - sde.mean_sq_norm),
                "skewness": ex.skewness(direction),
                "skewness_mc": mc["skewness"],
                "skewness_mc_se": mc["skewness_se"],
                "mc_max_abs_z": mc["max_abs_z"],
            }
        )
    return rows


def _loss_and_sq(problem: NoisyRegression, samples: np.ndarray) -> tuple[float, float, float, float]:
    losses = 0.5 * ((samples @ problem.features.T - problem.targets) ** 2).mean(1)
    return (*mean_se(losses), *mean_se((samples**2).sum(1)))


def regression_rows(
    problem: NoisyRegression, ls: list[int], replicas: int, seed: int, em_substeps: int
) -> tuple[list[dict], dict]:
    """Per ``l``: exact distances of SVAG to the SDE on ``E L`` and ``E‖x‖²`` (``*_err``), Monte-Carlo
    distances of real SVAG runs to the Euler–Maruyama reference (``*_mc_dist`` ± combined SE ``*_mc_se``),
    the exact value of that distance (``*_em_gap``: SVAG at ``l`` vs EM's exact moments), and the max
    |z| of the SVAG run against its exact finite-``l`` moments. Also returns the reference's summary."""
    sde = regression_sde_moments(problem)
    em = simulate_em(problem, em_substeps, replicas, seed)
    em_loss, em_loss_se, em_sq, em_sq_se = _loss_and_sq(problem, em)
    em_exact = regression_svag_moments(problem, em_substeps)  # EM's exact first two moments
    reference = {
        "substeps": em_substeps,
        "loss": em_loss,
        "loss_se": em_loss_se,
        "sq_norm": em_sq,
        "sq_norm_se": em_sq_se,
        "sde_loss": problem.expected_loss(sde),
        "sde_sq_norm": sde.mean_sq_norm,
        "exact_loss_bias": problem.expected_loss(em_exact) - problem.expected_loss(sde),
        "exact_sq_norm_bias": em_exact.mean_sq_norm - sde.mean_sq_norm,
        "mc_max_abs_z": mc_check(em, em_exact)["max_abs_z"],
    }
    rows = []
    for l in ls:
        ex = regression_svag_moments(problem, l)
        samples = simulate_svag(problem, l, replicas, seed, stream="verify.weak_error")
        loss, loss_se, sq, sq_se = _loss_and_sq(problem, samples)
        rows.append(
            {
                "l": l,
                "steps": problem.steps(l),
                "loss_err": abs(problem.expected_loss(ex) - reference["sde_loss"]),
                "sq_norm_err": abs(ex.mean_sq_norm - sde.mean_sq_norm),
                "loss_em_gap": abs(problem.expected_loss(ex) - problem.expected_loss(em_exact)),
                "sq_norm_em_gap": abs(ex.mean_sq_norm - em_exact.mean_sq_norm),
                "loss_mc_dist": abs(loss - em_loss),
                "loss_mc_se": math.hypot(loss_se, em_loss_se),
                "sq_norm_mc_dist": abs(sq - em_sq),
                "sq_norm_mc_se": math.hypot(sq_se, em_sq_se),
                "mc_max_abs_z": mc_check(samples, ex)["max_abs_z"],
            }
        )
    return rows, reference


def run_verification(config: VerifyConfig | None = None) -> dict:
    """Everything ``svag verify`` reports, as JSON-ready data: settings, per-``l`` rows, fitted slopes."""
    cfg = (config or VerifyConfig()).validate()
    ls = l_ladder(cfg.l_max)
    ou, reg = skewed_quadratic(), noisy_regression()
    direction = np.array([1.0, 0.0])  # the skewed noise coordinate
    ou_table = ou_rows(ou, ls, cfg.replicas, cfg.seed, direction)
    reg_table, reference = regression_rows(reg, ls, cfg.replicas, cfg.seed, cfg.em_substeps)
    gaussian = gaussian_rows(ou, reg, ls, cfg.gaussian_chains, cfg.seed, direction)
    slope = lambda rows, key: fit_loglog_slope(ls, [abs(r[key]) for r in rows]).slope  # noqa: E731
    slopes = {  # of log|error| vs log l: −1 for an order-1 weak error in 1/l (nan where undefined)
        "ou_mean_err": slope(ou_table, "mean_err"),
        "ou_sq_norm_err": slope(ou_table, "sq_norm_err"),
        "ou_skewness": slope(ou_table, "skewness"),
        "regression_loss_err": slope(reg_table, "loss_err"),
        "regression_sq_norm_err": slope(reg_table, "sq_norm_err"),
    }
    return {
        "config": asdict(cfg),
        "ls": ls,
        "ou": {"problem": _describe(ou), "direction": direction.tolist(), "rows": ou_table},
        "regression": {"problem": _describe(reg), "reference": reference, "rows": reg_table},
        "slopes": slopes,
        "gaussian": {
            "noise": "exact Gaussian, covariance l·Σ_1/B (Σ_1 population, as with replacement)",
            "replicas": cfg.gaussian_chains,
            "rows_ou": gaussian["ou"],
            "rows_regression": gaussian["regression"],
            "slopes": gaussian["slopes"],
        },
    }


def _describe(problem: SkewedQuadratic | NoisyRegression) -> dict:
    return {
        "kind": type(problem).__name__,
        "dim": problem.dim,
        "n_samples": problem.n_samples,
        "batch_size": problem.batch_size,
        "weight_decay": problem.weight_decay,
        "lr": problem.lr,
        "horizon": problem.horizon,
        "sgd_steps": problem.steps(1),
        "sampling": "with replacement",
    }
