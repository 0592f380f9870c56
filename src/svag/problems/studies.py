r"""Two measured studies on exact-answer problems: momentum (the η/(1−β) rule) and adaptive SVAG.

* **Momentum** (Wang, Malladi, Wang, Lyu & Li 2023, arXiv 2307.15196; PAPER.md §2): at small LR,
  SGD with heavy-ball momentum β at LR η follows the SDE of plain SGD at LR ``η/(1−β)``. On the
  quadratic :class:`svag.problems.SkewedQuadratic` every iteration is linear, so the **stationary
  covariances** are exact: SGDM's from a discrete Lyapunov equation on the state ``(x, buf)``
  (:func:`sgdm_stationary_cov`), plain SGD's at ``η_eff = η/(1−β)`` (:func:`sgd_stationary_cov`) and
  the OU SDE's (:func:`sde_stationary_cov`). :func:`momentum_rows` reports ``Tr Cov_SGDM / Tr Cov_SGD(η_eff)``
  over a ladder of ``η_eff`` at fixed β (it → 1 like ``O(η)``); :func:`sgdm_mc_rows` checks the formula
  against Monte-Carlo runs of ``torch.optim.SGD(momentum=β)``.
* **Adaptive SVAG** (P2 = Malladi, Lyu, Panigrahi & Arora 2022, arXiv 2205.10287; PAPER.md §5):
  :class:`svag.adaptive.SVAGAdam` / :class:`~svag.adaptive.SVAGRMSprop` at ``ℓ = 1, 2, 4, ...`` run to a
  fixed continuous time ``T`` (``t = k·(η/ℓ)²``), many replicas at once; :func:`adaptive_rows` reports
  ``E‖x_T‖²`` and ``E uᵀx_T`` with Monte-Carlo SEs, the distances between successive ``ℓ`` and their SEs.

Monte-Carlo: ``R`` independent chains are one ``(R, d)`` parameter; the loss is the sum over rows of
each row's mean minibatch loss (:meth:`SkewedQuadratic.minibatch_loss`), so row ``r``'s gradient is its
own minibatch gradient, and SGD/Adam/RMSprop act elementwise: exactly ``R`` independent runs (the step
counter of the bias corrections is shared, as every row takes the same number of steps).
Pure data out: the tables are printed by ``scripts/study_momentum_adaptive.py``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from svag.adaptive import SVAGAdam, SVAGRMSprop
from svag.analysis.stats import fit_loglog_slope, mc_check
from svag.clock import sgdm_lr
from svag.problems import Moments, SkewedQuadratic, skewed_quadratic
from svag.seeds import study_generator
from svag.step import train_step

__all__ = [
    "AdaptiveStudyConfig",
    "MomentumStudyConfig",
    "adaptive_problem",
    "adaptive_rows",
    "burn_in_steps",
    "continuous_lyapunov",
    "discrete_lyapunov",
    "momentum_rows",
    "run_adaptive_study",
    "run_momentum_study",
    "sde_stationary_cov",
    "sgd_stationary_cov",
    "sgdm_cov_after",
    "sgdm_eigen_variances",
    "sgdm_mc_rows",
    "sgdm_stationary_cov",
    "sgdm_transition",
    "simulate_adaptive",
    "simulate_sgdm",
]


# == Momentum: exact stationary covariances =========================================================
def discrete_lyapunov(transition: np.ndarray, source: np.ndarray) -> np.ndarray:
    r"""The solution ``P`` of ``P = T P Tᵀ + Q`` (stationary covariance of ``z' = Tz + noise(Q)``).

    Vec trick (row-major ``vec``): ``(I − T⊗T) vec P = vec Q``; unique when the spectral radius of ``T``
    is below 1. A dense solve of size ``n²`` (``n = 2d = 4`` here).
    """
    t = np.asarray(transition, dtype=np.float64)
    n = t.shape[0]
    if max(abs(np.linalg.eigvals(t))) >= 1.0:
        raise ValueError("the transition matrix must have spectral radius < 1 (a stable recursion)")
    return np.linalg.solve(np.eye(n * n) - np.kron(t, t), np.asarray(source).ravel()).reshape(n, n)


def continuous_lyapunov(drift: np.ndarray, source: np.ndarray) -> np.ndarray:
    r"""The solution ``C`` of ``D C + C Dᵀ = Q`` (stationary covariance of ``dX = −DX dt + Q^{1/2} dW``).

    Vec trick: ``(D⊗I + I⊗D) vec C = vec Q``; unique when every eigenvalue of ``D`` has a positive real part.
    """
    d = np.asarray(drift, dtype=np.float64)
    eye = np.eye(d.shape[0])
    return np.linalg.solve(np.kron(d, eye) + np.kron(eye, d), np.asarray(source).ravel()).reshape(d.shape)


def sgdm_transition(problem: SkewedQuadratic, lr: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    r"""SGDM on the quadratic as a linear recursion in ``z = (x − x*, buf)``: ``z' = T z + b ζ``.

    ``torch.optim.SGD(lr=η, momentum=β, weight_decay=λ)`` (dampening 0, not Nesterov) does
    ``d = ∇L_γ(x) + λx = D(x − x*) + ζ``, ``buf ← β·buf + d``, ``x ← x − η·buf`` (its first step sets
    ``buf = d``, the same as starting from ``buf = 0``), ``ζ`` the minibatch noise (covariance Σ). So

    .. math::  T = \begin{pmatrix} I - ηD & -ηβI \\ D & βI \end{pmatrix},\qquad
               b = \begin{pmatrix} -ηI \\ I \end{pmatrix}

    Stable iff ``η λ_max(D) < 2(1 + β)`` (derived: each eigen-block has determinant β, trace 1 + β − ηλ).
    ``problem.lr`` is not used: ``lr`` is the SGDM step size η.
    """
    d, eye = problem.drift, np.eye(problem.dim)
    transition = np.block([[eye - lr * d, -lr * beta * eye], [d, beta * eye]])
    return transition, np.vstack([-lr * eye, eye])


def sgdm_stationary_cov(problem: SkewedQuadratic, lr: float, beta: float) -> np.ndarray:
    r"""Exact stationary covariance ``P`` of SGDM's state ``(x, buf)``, ``(2d, 2d)``: ``P = TPTᵀ + bΣbᵀ``
    (:func:`sgdm_transition`). The ``x`` block is ``P[:d, :d]``; the stationary mean is ``(x*, 0)``."""
    transition, b = sgdm_transition(problem, lr, beta)
    return discrete_lyapunov(transition, b @ problem.noise_cov @ b.T)


def sgdm_cov_after(problem: SkewedQuadratic, lr: float, beta: float, steps: int) -> np.ndarray:
    r"""Exact covariance of ``(x, buf)`` after ``k`` steps from the deterministic start ``(x*, 0)``:

    .. math::  P_k = \sum_{j<k} T^j Q (T^j)^ᵀ = P_∞ - T^k P_∞ (T^k)^ᵀ

    (derived, from ``P_∞ = T P_∞ Tᵀ + Q``). The mean stays ``(x*, 0)`` exactly. Gives the burn-in bias.
    """
    transition, _ = sgdm_transition(problem, lr, beta)
    p_inf = sgdm_stationary_cov(problem, lr, beta)
    tk = np.linalg.matrix_power(transition, steps)
    return p_inf - tk @ p_inf @ tk.T


def sgdm_eigen_variances(problem: SkewedQuadratic, lr: float, beta: float) -> np.ndarray:
    r"""Closed form (derived) of SGDM's stationary variance of ``x`` along each eigenvector ``q_a`` of
    ``D = A + λI`` (eigenvalue ``λ_a``, ``Σ'_aa = q_aᵀΣq_a``): the recursion decouples per eigenvector into
    the 1-d heavy ball, whose stationary variance is

    .. math::  V_a = \frac{η\,Σ'_{aa}\,(1 + β)}{(1 - β)\,λ_a\,\big(2(1 + β) - ηλ_a\big)}

    so ``Tr Cov_SGDM = Σ_a V_a``. At ``β = 0`` it is plain SGD's ``ηΣ'_aa/(λ_a(2 − ηλ_a))``; at first order
    in η, ``V_a^{SGDM}/V_a^{SGD(η/(1−β))} = 1 − βηλ_a/(1 − β²) + O(η²)``. An independent check of
    :func:`sgdm_stationary_cov`.
    """
    lam, q = np.linalg.eigh(problem.drift)
    sig = np.einsum("ia,ij,ja->a", q, problem.noise_cov, q)
    return lr * sig * (1 + beta) / ((1 - beta) * lam * (2 * (1 + beta) - lr * lam))


def sgd_stationary_cov(problem: SkewedQuadratic, lr: float) -> np.ndarray:
    r"""Exact stationary covariance of plain SGD ``x ← x − η(∇L_γ(x) + λx)``: ``C = MCMᵀ + η²Σ``,
    ``M = I − ηD`` (:func:`discrete_lyapunov`); equals SGDM's ``x`` block at ``β = 0``."""
    return discrete_lyapunov(np.eye(problem.dim) - lr * problem.drift, lr**2 * problem.noise_cov)


def sde_stationary_cov(problem: SkewedQuadratic, lr: float) -> np.ndarray:
    r"""Exact stationary covariance of SGD's SDE at LR η (P1 §2, time unit η): the OU process
    ``dX = −(DX − Ac)dt + (ηΣ)^{1/2}dW`` has ``DC + CD = ηΣ`` (:func:`continuous_lyapunov`), i.e. the
    ``t → ∞`` limit of :func:`svag.problems.ou_moments`."""
    return continuous_lyapunov(problem.drift, lr * problem.noise_cov)


@dataclass
class MomentumStudyConfig:
    """Settings of the momentum study (problem: :func:`svag.problems.skewed_quadratic`, d = 2, B = 2, λ = 0.05)."""

    betas: tuple[float, ...] = (0.5, 0.9)  # heavy-ball momentum β of torch.optim.SGD
    effective_lrs: tuple[float, ...] = (0.4, 0.2, 0.1, 0.05, 0.025, 0.0125)  # η_eff = η/(1−β); SGDM LR η = (1−β)η_eff
    mc_effective_lr: float = 0.4  # η_eff of the Monte-Carlo check (the largest: where SGDM and SGD differ most)
    mc_replicas: int = 40_000  # independent SGDM chains per β
    burn_in_tol: float = 1e-9  # burn-in steps k are chosen so that ρ(T)^{2k} ≤ this (ρ: spectral radius)
    seed: int = 0  # seed of the Monte-Carlo streams (one per β)


def momentum_rows(problem: SkewedQuadratic, betas: tuple[float, ...], effective_lrs: tuple[float, ...]) -> list[dict]:
    r"""Per ``(β, η_eff)``: ``Tr Cov`` of SGDM at ``η = (1−β)η_eff``, of SGD at ``η_eff`` and of the SDE at
    ``η_eff`` (all stationary, exact), the ratio ``Tr Cov_SGDM / Tr Cov_SGD(η_eff)`` and the first-order
    prediction of it (derived from :func:`sgdm_eigen_variances`):
    ``1 − η_eff·β/(1+β)·Tr Σ / Tr(D⁻¹Σ)``."""
    d = problem.dim
    first_order = np.trace(problem.noise_cov) / np.trace(np.linalg.solve(problem.drift, problem.noise_cov))
    rows = []
    for beta in betas:
        for eff in effective_lrs:
            lr = sgdm_lr(eff, beta)
            sgdm = float(np.trace(sgdm_stationary_cov(problem, lr, beta)[:d, :d]))
            sgd = float(np.trace(sgd_stationary_cov(problem, eff)))
            sde = float(np.trace(sde_stationary_cov(problem, eff)))
            rows.append(
                {
                    "beta": beta,
                    "effective_lr": eff,
                    "lr": lr,
                    "trace_sgdm": sgdm,
                    "trace_sgd": sgd,
                    "trace_sde": sde,
                    "ratio": sgdm / sgd,
                    "ratio_minus_1": sgdm / sgd - 1.0,
                    "ratio_first_order": float(1.0 - eff * beta / (1 + beta) * first_order),
                    "sgdm_vs_sde": sgdm / sde - 1.0,
                    "sgd_vs_sde": sgd / sde - 1.0,
                }
            )
    return rows


def simulate_sgdm(problem: SkewedQuadratic, lr: float, beta: float, replicas: int, steps: int, seed: int) -> np.ndarray:
    """``replicas`` independent runs of ``torch.optim.SGD(lr, momentum=beta, weight_decay=λ)`` (float64) for
    ``steps`` steps from ``x = x*`` (the stationary mean), one minibatch of ``B`` indices drawn with replacement
    per step and replica. Returns the final states ``(x, buf)`` as ``(replicas, 2d)``. Needs ``beta > 0``:
    at β = 0 torch keeps no buffer (SGDM is then plain SGD, :func:`sgd_stationary_cov`)."""
    if not 0 < beta < 1:
        raise ValueError(f"beta must be in (0, 1) (torch keeps no momentum buffer at beta = 0), got {beta!r}")
    gen = study_generator(seed, "studies.momentum", round(beta * 1000), round(lr * 1e6))
    x = torch.nn.Parameter(torch.tensor(problem.fixed_point, dtype=torch.float64).repeat(replicas, 1))
    opt = torch.optim.SGD([x], lr=lr, momentum=beta, weight_decay=problem.weight_decay)
    for _ in range(steps):
        idx = torch.randint(problem.n_samples, (replicas, problem.batch_size), generator=gen)
        opt.zero_grad(set_to_none=True)
        problem.minibatch_loss(x, idx).backward()
        opt.step()
    buf = opt.state[x]["momentum_buffer"] if steps else torch.zeros_like(x)  # the start (x*, 0)
    return torch.cat([x.detach(), buf], dim=1).numpy().copy()


def burn_in_steps(problem: SkewedQuadratic, lr: float, beta: float, tol: float) -> int:
    """Smallest ``k`` with ``ρ(T)^{2k} ≤ tol``: after it the covariance deficit ``T^k P (T^k)ᵀ`` is ≲ ``tol·P``."""
    rho = max(abs(np.linalg.eigvals(sgdm_transition(problem, lr, beta)[0])))
    return math.ceil(math.log(tol) / (2 * math.log(rho)))


def sgdm_mc_rows(
    problem: SkewedQuadratic, betas: tuple[float, ...], effective_lr: float, replicas: int, seed: int, tol: float
) -> list[dict]:
    r"""Monte-Carlo check of :func:`sgdm_stationary_cov` with ``torch.optim.SGD(momentum=β)``.

    Per β: run :func:`simulate_sgdm` for :func:`burn_in_steps` steps from ``(x*, 0)``, then compare
    the sample with ``Moments((x*, 0), P_∞)``: z-scores of every mean component, covariance entry of
    ``(x, buf)`` and ``E‖z‖²`` (:func:`svag.analysis.stats.mc_check`), and of ``Tr Cov x`` (estimated by
    ``mean ‖x − x*‖²``, SE from the sample) against SGDM's formula, SGD's at ``η_eff`` and the SDE's.
    ``burn_in_bias`` is the exact relative deficit ``|Tr P_k − Tr P_∞| / Tr P_∞`` of the x block."""
    d = problem.dim
    rows = []
    for beta in betas:
        lr = sgdm_lr(effective_lr, beta)
        steps = burn_in_steps(problem, lr, beta, tol)
        p_inf = sgdm_stationary_cov(problem, lr, beta)
        samples = simulate_sgdm(problem, lr, beta, replicas, steps, seed)
        check = mc_check(samples, Moments(np.concatenate([problem.fixed_point, np.zeros(d)]), p_inf))
        sq = ((samples[:, :d] - problem.fixed_point) ** 2).sum(1)
        trace, se = float(sq.mean()), float(sq.std(ddof=1) / math.sqrt(replicas))
        exact = {
            "sgdm": float(np.trace(p_inf[:d, :d])),
            "sgd": float(np.trace(sgd_stationary_cov(problem, effective_lr))),
            "sde": float(np.trace(sde_stationary_cov(problem, effective_lr))),
        }
        burn_in_trace = float(np.trace(sgdm_cov_after(problem, lr, beta, steps)[:d, :d]))
        rows.append(
            {
                "beta": beta,
                "effective_lr": effective_lr,
                "lr": lr,
                "replicas": replicas,
                "steps": steps,
                "burn_in_bias": abs(burn_in_trace / exact["sgdm"] - 1),
                "trace_mc": trace,
                "trace_mc_se": se,
                **{f"trace_{k}": v for k, v in exact.items()},
                **{f"z_{k}": (trace - v) / se for k, v in exact.items()},
                "max_abs_z_state": check["max_abs_z"],
            }
        )
    return rows


def run_momentum_study(config: MomentumStudyConfig | None = None) -> dict:
    """The momentum study as JSON-ready data: settings, exact ladder rows, fitted slopes, Monte-Carlo rows.

    Slopes: least squares of ``log|ratio − 1|`` (and ``log|Tr_SGDM/Tr_SDE − 1|``, ``log|Tr_SGD/Tr_SDE − 1|``)
    against ``log η`` per β (1 for an ``O(η)`` difference)."""
    cfg = config or MomentumStudyConfig()
    problem = skewed_quadratic()
    rows = momentum_rows(problem, cfg.betas, cfg.effective_lrs)
    slopes = {}
    for beta in cfg.betas:
        sub = [r for r in rows if r["beta"] == beta]
        lrs = [r["lr"] for r in sub]
        for key in ("ratio_minus_1", "sgdm_vs_sde", "sgd_vs_sde"):
            slopes[f"beta={beta:g}:{key}"] = fit_loglog_slope(lrs, [abs(r[key]) for r in sub]).slope
    mc = sgdm_mc_rows(problem, cfg.betas, cfg.mc_effective_lr, cfg.mc_replicas, cfg.seed, cfg.burn_in_tol)
    return {"config": asdict(cfg), "problem": _describe(problem), "rows": rows, "slopes": slopes, "monte_carlo": mc}


# == Adaptive SVAG: successive-ℓ distances at a fixed continuous time =================================
@dataclass
class AdaptiveStudyConfig:
    """Settings of the adaptive SVAG study. Times are P2's: ``t = k·η²`` for the simulated run."""

    lr: float = 0.1  # η of the Adam/RMSprop run being simulated (SVAG runs η/ℓ)
    betas: tuple[float, float] = (0.9, 0.99)  # Adam's (β1, β2); RMSprop uses β2 (P2's β)
    eps: float = 1e-8  # ε of the simulated run (SVAG runs ε·ℓ)
    horizon: float = 0.2  # continuous time T: T/η² = 20 steps of the simulated run, ℓ²·20 SVAG steps
    batch_size: int = 1  # B of each of SVAG's two minibatches (B = 1: the most skewed minibatch noise)
    ls: tuple[int, ...] = (1, 2, 4, 8, 16)  # P2's ℓ (SVAG's variance factor is ℓ²)
    optimizers: tuple[str, ...] = ("adam", "rmsprop")  # SVAGAdam / SVAGRMSprop (bias-corrected, P2's code)
    replicas: int = 60_000  # independent runs per (optimizer, ℓ)
    seed: int = 0  # seed of the Monte-Carlo streams (one per optimizer and ℓ)
    direction: tuple[float, ...] = (1.0, 0.0)  # u of g(x) = uᵀx: the skewed noise coordinate
    center: tuple[float, ...] = (0.0, 0.0)  # c of the quadratic; c = 0 makes the limit E uᵀX_T = 0 exact


OPTIMIZERS = {"adam": SVAGAdam, "rmsprop": SVAGRMSprop}


def adaptive_problem(batch_size: int = 1, center: tuple[float, ...] = (0.0, 0.0)) -> SkewedQuadratic:
    r""":func:`svag.problems.skewed_quadratic` with center ``c`` (default 0) and start ``x0 = 0`` (``λ = 0.05``).

    Why ``c = 0`` (derived): the full gradient ``Dx`` is odd, Σ is constant and the SDE's noise Gaussian,
    so P2's Adam/RMSprop SDE is invariant under ``(x, m) → (−x, −m)`` (``v`` even) and
    **``E uᵀX_T = 0`` exactly**. Every finite-ℓ SVAG run has skewed noise, which Adam's normalization
    turns into a mean drift, so ``E_ℓ uᵀx_T`` is a pure non-Gaussian effect with a known limit, 0. (Its source,
    measured: the first bias-corrected steps are nearly ``η/ℓ·sign(g)``, and the median of skewed noise is not
    its mean, so they shift ``E uᵀx`` by ``O(η/ℓ)``.) Since ``E x ≈ 0``, ``‖x‖²`` sees that shift only at second
    order. ``problem.lr``/``problem.horizon`` (SGD's) are not used here."""
    return skewed_quadratic(center=np.asarray(center, dtype=np.float64), batch_size=batch_size)


def simulate_adaptive(problem: SkewedQuadratic, cfg: AdaptiveStudyConfig, optimizer: str, l: int) -> np.ndarray:
    """``cfg.replicas`` independent runs of :class:`SVAGAdam` / :class:`SVAGRMSprop` + :func:`svag.train_step`
    (float64, coefficients ``coefficients(ℓ²)``) for ``ℓ²T/η²`` steps from ``x0``; two fresh minibatches of
    ``B`` indices drawn with replacement per step and replica. Returns the final iterates ``(R, d)``."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    gen = study_generator(cfg.seed, f"studies.adaptive.{optimizer}", l)
    x = torch.nn.Parameter(torch.tensor(problem.x0, dtype=torch.float64).repeat(cfg.replicas, 1))
    common = {"lr": cfg.lr, "eps": cfg.eps, "weight_decay": problem.weight_decay, "l": l}
    if optimizer == "adam":
        opt = SVAGAdam([x], betas=cfg.betas, **common)
    else:
        opt = SVAGRMSprop([x], beta=cfg.betas[1], **common)
    shape = (cfg.replicas, problem.batch_size)
    for _ in range(opt.clock().steps_to(cfg.lr, cfg.horizon)):
        batch1 = torch.randint(problem.n_samples, shape, generator=gen)
        batch2 = torch.randint(problem.n_samples, shape, generator=gen) if l > 1 else None
        train_step(opt, lambda idx: problem.minibatch_loss(x, idx), batch1, batch2)
    if abs(opt.sde_time - cfg.horizon) > 1e-9 * max(1.0, cfg.horizon):
        raise RuntimeError(f"reached continuous time {opt.sde_time}, not T = {cfg.horizon}")
    return x.detach().numpy().copy()


def adaptive_rows(problem: SkewedQuadratic, cfg: AdaptiveStudyConfig, optimizer: str) -> tuple[list[dict], list[dict]]:
    r"""Per ℓ: ``E‖x_T‖²`` and ``E uᵀx_T`` with SEs (``std/√R``). Per successive pair ``(ℓ, 2ℓ)``:
    ``|Ê_ℓ − Ê_2ℓ|`` and its SE ``√(SE_ℓ² + SE_2ℓ²)`` (independent streams). With a weak error
    ``Cℓ^{-p}`` the distance is ``C(1 − 2^{-p})ℓ^{-p}``: the same slope ``−p``."""
    u = np.asarray(cfg.direction, dtype=np.float64)
    rows = []
    for l in cfg.ls:
        x = simulate_adaptive(problem, cfg, optimizer, l)
        sq, proj = (x**2).sum(1), x @ u
        rows.append(
            {
                "optimizer": optimizer,
                "l": l,
                "steps": OPTIMIZERS[optimizer].clock_for(l).steps_to(cfg.lr, cfg.horizon),
                "sq_norm": float(sq.mean()),
                "sq_norm_se": float(sq.std(ddof=1) / math.sqrt(len(sq))),
                "mean_u": float(proj.mean()),
                "mean_u_se": float(proj.std(ddof=1) / math.sqrt(len(proj))),
            }
        )
    pairs = []
    for a, b in itertools.pairwise(rows):
        pair = {"optimizer": optimizer, "l": a["l"], "l_next": b["l"]}
        for key in ("sq_norm", "mean_u"):
            dist, se = abs(a[key] - b[key]), math.hypot(a[f"{key}_se"], b[f"{key}_se"])
            pair.update({f"{key}_dist": dist, f"{key}_dist_se": se, f"{key}_resolved": dist > 3 * se})
        pairs.append(pair)
    return rows, pairs


def _fit_kept(xs: list[float], ys: list[float], keep: list[bool]) -> float:
    """:func:`svag.analysis.stats.fit_loglog_slope` over the points with ``keep`` true (NaN with fewer than two)."""
    return fit_loglog_slope([x for x, k in zip(xs, keep) if k], [abs(y) for y, k in zip(ys, keep) if k]).slope


def _rates(rows: list[dict], pairs: list[dict], limit_zero: bool) -> dict:
    """Fitted slopes of log distance vs log ℓ: over all pairs, and over the resolved ones (distance > 3 SE)
    only (NaN with fewer than two); with ``limit_zero`` (``c = 0``) also of ``|E_ℓ uᵀx|``, the distance
    to the exact limit 0."""
    out = {}
    ls = [p["l"] for p in pairs]
    for key in ("sq_norm", "mean_u"):
        dists = [p[f"{key}_dist"] for p in pairs]
        out[f"{key}_dist"] = fit_loglog_slope(ls, [abs(v) for v in dists]).slope
        out[f"{key}_dist_resolved"] = _fit_kept(ls, dists, [p[f"{key}_resolved"] for p in pairs])
    if not limit_zero:
        return out
    ls, means = [r["l"] for r in rows], [r["mean_u"] for r in rows]
    out["mean_u_to_0"] = fit_loglog_slope(ls, [abs(v) for v in means]).slope
    out["mean_u_to_0_resolved"] = _fit_kept(ls, means, [abs(r["mean_u"]) > 3 * r["mean_u_se"] for r in rows])
    return out


def run_adaptive_study(config: AdaptiveStudyConfig | None = None) -> dict:
    """The adaptive study as JSON-ready data: settings, per-ℓ rows, successive-ℓ pairs, fitted rates."""
    cfg = config or AdaptiveStudyConfig()
    problem = adaptive_problem(cfg.batch_size, cfg.center)
    limit_zero = not np.any(problem.center)  # E uᵀX_T = 0 exactly (adaptive_problem)
    out: dict = {"config": asdict(cfg), "problem": _describe(problem), "mean_u_limit": 0.0 if limit_zero else None}
    out["results"] = {}
    for optimizer in cfg.optimizers:
        rows, pairs = adaptive_rows(problem, cfg, optimizer)
        out["results"][optimizer] = {"rows": rows, "pairs": pairs, "rates": _rates(rows, pairs, limit_zero)}
    return out


def _describe(problem: SkewedQuadratic) -> dict:
    return {
        "kind": type(problem).__name__,
        "curvature": problem.curvature.tolist(),
        "center": problem.center.tolist(),
        "noise": problem.noise.tolist(),
        "batch_size": problem.batch_size,
        "weight_decay": problem.weight_decay,
        "x0": problem.x0.tolist(),
        "sampling": "with replacement",
    }
