"""Scaling rules: how to change the hyperparameters with the batch size so the SDE is unchanged.

- :func:`linear_rule` (SGD; P1 §1, Goyal et al. 2017): ``B → κB``, ``η → κη``. It keeps the
  noise term ``ηΣ ∝ η/B`` (Σ ≈ Σ_1/B is the covariance of the mean minibatch gradient).
- :func:`sqrt_rule` (Adam/RMSprop; P2 §5): ``B → κB``, ``η → √κ·η``, ``1 − β_i → κ(1 − β_i)``,
  ``ε → ε/√κ``. It keeps P2's SDE constants ``σ0 = σ·η`` (σ ∝ 1/√B), ``ε0 = ε·η`` and
  ``c_i = (1 − β_i)/η²``.

Transfer rules practitioners use for Adam/AdamW, side by side with P2's (each keeps the epochs):

- :func:`sqrt_lr_rule` ("LR-only √κ"): ``η → √κ·η``; β, ε and the decay kept.
- :func:`adamw_timescale_rule` (Bergsma et al. 2025, "Power Lines"; Wang & Aitchison 2025): keep AdamW's
  timescale ``τ = B/(η·λ·D)``: ``η → κ^a·η``, ``λ → κ^{1−a}·λ`` (``a = 0``: η kept, tuned on its own;
  ``a = 1/2`` is P2's ``λ → √κ·λ``).
- :func:`beta_halflife_rule` (Marek et al. 2025): keep each β's half-life in samples, ``β → β^κ``, with
  the square-root rule's η and ε; first-order equal to ``1 − κ(1 − β)``, defined for every κ.

:data:`RULES` names them all (``svag scale --rule``); :func:`rule_limit` says how far each can go.

Both keep the number of epochs: the continuous time per sample (``η/B`` for SGD, ``η²/B`` for
the adaptive methods) is invariant too. :func:`sde_constants` returns the invariants.

A hyperparameter record is a plain dict (or a dataclass, e.g. :class:`svag.config.RunConfig`)
with ``batch_size`` and ``lr``, and for the adaptive methods ``betas`` (a tuple/list of 1 or 2
betas) or ``beta``, and ``eps``. The rules are pure: they return a new record of the same kind;
keys they do not scale (``weight_decay``, ``epochs``, ...) are copied unchanged. Coupled L2 weight
decay is indeed unchanged by both rules. Decoupled (AdamW) decay λ_W is scaled by :func:`sqrt_rule`,
``λ_W → √κ·λ_W`` (derived, PAPER §5), when the record says ``decoupled_weight_decay=True`` (the key
``torch.optim.AdamW`` and :class:`svag.adaptive.SVAGAdamW` put in their param groups); only dicts
can say so today, since :class:`svag.config.RunConfig` has no AdamW.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = [
    "ADAPTIVE",
    "RULES",
    "adamw_timescale_rule",
    "beta_halflife_rule",
    "linear_rule",
    "reaches",
    "rule_limit",
    "sde_constants",
    "sde_rule",
    "sqrt_lr_rule",
    "sqrt_rule",
]

INTEGER_TOL = 1e-9  # κ·B may be off an integer by this relative amount (float rounding of κ)


def _fields(hp: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hp) and not isinstance(hp, type):
        return {f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)}
    if isinstance(hp, dict):
        return hp
    raise TypeError(f"hp must be a dict or a dataclass instance, got {type(hp).__name__}")


def _rebuild(hp: Any, changes: dict[str, Any]) -> Any:
    if isinstance(hp, dict):
        return {**hp, **changes}
    return dataclasses.replace(hp, **changes)


def _real(value: Any, name: str, *, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _require(values: dict[str, Any], key: str, rule: str) -> Any:
    if key not in values:
        raise ValueError(f"{rule} needs the key {key!r} in the hyperparameters, got keys {sorted(values)}")
    return values[key]


def _batch_size(values: dict[str, Any], rule: str) -> int:
    b = _require(values, "batch_size", rule)
    if isinstance(b, bool) or not isinstance(b, numbers.Real) or not float(b).is_integer() or b < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {b!r}")
    return int(b)


def _scaled_batch_size(batch_size: int, kappa: float) -> int:
    """``κ·B``, which must be (within float rounding) an integer ``>= 1``."""
    new = batch_size * kappa
    rounded = round(new)
    if abs(new - rounded) > INTEGER_TOL * max(1.0, abs(new)) or rounded < 1:
        raise ValueError(
            f"the scaled batch size kappa·batch_size must be an integer >= 1, got {kappa!r}·{batch_size} = {new!r}"
        )
    return int(rounded)


def _betas_key(values: dict[str, Any], rule: str) -> str:
    keys = [k for k in ("betas", "beta") if k in values]
    if len(keys) != 1:
        raise ValueError(f"{rule} needs exactly one of the keys 'betas' or 'beta' (adaptive methods), got {keys}")
    return keys[0]


def _check_beta(beta: Any, name: str) -> float:
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not (0.0 <= beta < 1.0):
        raise ValueError(f"{name} must be a real number in [0, 1), got {beta!r}")
    return float(beta)


def _scaled_beta(beta: Any, kappa: float, name: str) -> float:
    r"""Square-root rule for one β: :math:`1 - \beta' = \kappa(1 - \beta)`; β = 0 (no averaging) stays 0."""
    beta = _check_beta(beta, name)
    if beta == 0.0:
        return beta
    one_minus = kappa * (1.0 - beta)
    if one_minus >= 1.0 - INTEGER_TOL:  # κ at the limit up to rounding (10·(1 − 0.9) = 0.9999999999999998)
        raise ValueError(
            f"sqrt_rule: kappa·(1 - {name}) = {kappa!r}·(1 - {beta!r}) = {one_minus!r} must be < 1 "
            f"(the scaled {name} would leave (0, 1)); use kappa < {1.0 / (1.0 - beta)!r}"
        )
    return 1.0 - one_minus


def linear_rule(hp: Any, kappa: float) -> Any:
    r"""Linear scaling rule for SGD (P1 §1): :math:`B \to \kappa B,\ \eta \to \kappa\eta`.

    Keeps ``ηΣ ∝ η/B``, so the SDE (and the continuous time per epoch) is unchanged.

    Args:
        hp: dict or dataclass with ``batch_size`` and ``lr``; other keys are copied unchanged.
        kappa: the factor κ > 0; ``κ·batch_size`` must be an integer.

    Returns:
        A new record of the same kind with ``batch_size = κB`` (an int) and ``lr = κη``.
    """
    kappa = _real(kappa, "kappa", positive=True)
    values = _fields(hp)
    b = _batch_size(values, "linear_rule")
    lr = _real(_require(values, "lr", "linear_rule"), "lr")
    return _rebuild(hp, {"batch_size": _scaled_batch_size(b, kappa), "lr": lr * kappa})


def sqrt_rule(hp: Any, kappa: float) -> Any:
    r"""Square-root scaling rule for Adam/RMSprop (P2 §5).

    .. math::  B \to \kappa B, \quad \eta \to \sqrt{\kappa}\,\eta, \quad
               1 - \beta_i \to \kappa (1 - \beta_i), \quad \epsilon \to \epsilon/\sqrt{\kappa}

    Keeps P2's SDE constants ``σ0 = ση`` (σ ∝ 1/√B), ``ε0 = εη``, ``c_i = (1 − β_i)/η²`` and the
    time per epoch (``t = k·η²``). A β of exactly 0 (no averaging, e.g. RMSprop written as Adam
    with β1 = 0) has no time constant and stays 0.

    Weight decay: coupled L2 (the default) is unchanged. Decoupled (AdamW) decay, when
    ``hp["decoupled_weight_decay"]`` is ``True``, is scaled as ``λ_W → √κ·λ_W`` (derived, PAPER
    §5): AdamW decays x by ``1 − ηλ_W`` per ``η²`` of time, a rate ``λ_W/η`` that this keeps.
    A dict carries the flag, e.g. ``{**svag_adamw.defaults, "batch_size": B}`` with ``svag_adamw`` a
    :class:`svag.adaptive.SVAGAdamW`; a record with ``optimizer="adamw"`` (a :class:`svag.config.RunConfig`)
    is decoupled without it.

    Args:
        hp: dict or dataclass with ``batch_size``, ``lr``, ``eps`` and either ``betas`` (tuple or
            list, returned as the same type) or ``beta``; with ``decoupled_weight_decay=True``, its
            ``weight_decay`` is λ_W and is scaled; other keys are copied unchanged.
        kappa: the factor κ > 0; ``κ·batch_size`` must be an integer and ``κ(1 − β) < 1``.

    Returns:
        A new record of the same kind with the scaled values.
    """
    kappa = _real(kappa, "kappa", positive=True)
    return _square_root(hp, kappa, "sqrt_rule", lambda beta, name: _scaled_beta(beta, kappa, name))


def _decoupled(values: dict[str, Any]) -> bool:
    """Whether the record's weight decay is AdamW's decoupled λ_W (its flag, or ``optimizer="adamw"``)."""
    decoupled = values.get("decoupled_weight_decay", values.get("optimizer") == "adamw")  # RunConfig: its optimizer
    if not isinstance(decoupled, bool):
        raise ValueError(f"decoupled_weight_decay must be True or False, got {decoupled!r}")
    return decoupled


def _betas(values: dict[str, Any], rule: str, scale: Callable[[float, str], float]) -> dict[str, Any]:
    """``{"beta": …}`` or ``{"betas": …}`` with every β mapped by ``scale(β, name)`` (same container type)."""
    key = _betas_key(values, rule)
    if key == "beta":
        return {"beta": scale(values["beta"], "beta")}
    betas = values["betas"]
    if isinstance(betas, (str, bytes)) or not isinstance(betas, (tuple, list)) or len(betas) not in (1, 2):
        raise ValueError(f"betas must be a tuple or list of 1 or 2 reals in [0, 1), got {betas!r}")
    return {"betas": type(betas)(scale(x, f"betas[{i}]") for i, x in enumerate(betas))}


def _square_root(hp: Any, kappa: float, rule: str, scale_beta: Callable[[Any, str], float]) -> Any:
    """The square-root family: ``B → κB``, ``η → √κ·η``, ``ε → ε/√κ``, a decoupled ``λ_W → √κ·λ_W``, and every β
    mapped by ``scale_beta(β, name)`` (P2's ``1 − κ(1 − β)`` or the half-life's ``β^κ``)."""
    values = _fields(hp)
    b = _batch_size(values, rule)
    lr = _real(_require(values, "lr", rule), "lr")
    eps = _real(_require(values, "eps", rule), "eps")
    root = math.sqrt(kappa)
    changes: dict[str, Any] = {"batch_size": _scaled_batch_size(b, kappa), "lr": lr * root, "eps": eps / root}
    changes.update(_betas(values, rule, scale_beta))
    if _decoupled(values):
        weight_decay = _real(_require(values, "weight_decay", f"{rule} (decoupled_weight_decay)"), "weight_decay")
        changes["weight_decay"] = weight_decay * root
    return _rebuild(hp, changes)


def sqrt_lr_rule(hp: Any, kappa: float) -> Any:
    r"""LR-only square-root rule (what many practitioners apply to Adam): :math:`B \to \kappa B,\ \eta \to
    \sqrt{\kappa}\,\eta`; β, ε and the weight decay kept.

    It keeps P2's noise constant ``σ0 = σ·η`` but not ``c_i = (1 − β_i)/η²`` (the moments' time constants grow
    by κ in continuous time) nor ``ε0 = ε·η``: not P2's SDE, a rule to test against it.

    Args:
        hp: dict or dataclass with ``batch_size`` and ``lr``; other keys are copied unchanged.
        kappa: the factor κ > 0; ``κ·batch_size`` must be an integer.
    """
    kappa = _real(kappa, "kappa", positive=True)
    values = _fields(hp)
    b = _batch_size(values, "sqrt_lr_rule")
    lr = _real(_require(values, "lr", "sqrt_lr_rule"), "lr")
    return _rebuild(hp, {"batch_size": _scaled_batch_size(b, kappa), "lr": lr * math.sqrt(kappa)})


def adamw_timescale_rule(hp: Any, kappa: float, lr_exponent: float = 0.0) -> Any:
    r"""Keep AdamW's timescale fixed: :math:`\tau = B/(\eta\lambda D)` (Bergsma et al., NeurIPS 2025, "Power
    Lines"; Wang & Aitchison, ICML 2025, "How to set AdamW's weight decay as you scale model and dataset size",
    whose ``τ_epoch = B/(ηλN)`` is the same at a fixed data set).

    .. math::  B \to \kappa B, \quad \eta \to \kappa^{a}\,\eta, \quad \lambda \to \kappa^{1-a}\,\lambda

    ``a = lr_exponent``: 0 (the default) keeps η (tuned on its own, as Power Lines does), so the decay grows
    like κ; ``a = 1/2`` is the square-root LR with ``λ → √κ·λ``, P2's decoupled decay. β and ε are kept.

    Args:
        hp: dict or dataclass with ``batch_size``, ``lr`` and ``weight_decay``, whose decay is decoupled
            (``optimizer="adamw"`` or ``decoupled_weight_decay=True``): coupled L2 has no such timescale.
        kappa: the factor κ > 0; ``κ·batch_size`` must be an integer.
        lr_exponent: ``a`` in [0, 1].
    """
    kappa = _real(kappa, "kappa", positive=True)
    a = _real(lr_exponent, "lr_exponent")
    if a > 1:
        raise ValueError(f"lr_exponent must be in [0, 1], got {lr_exponent!r}")
    values = _fields(hp)
    b = _batch_size(values, "adamw_timescale_rule")
    lr = _real(_require(values, "lr", "adamw_timescale_rule"), "lr")
    if not _decoupled(values):
        raise ValueError(
            "adamw_timescale_rule keeps AdamW's timescale B/(η·λ·D): it needs decoupled weight decay "
            "(optimizer adamw or decoupled_weight_decay=True), got a coupled one"
        )
    wd = _real(_require(values, "weight_decay", "adamw_timescale_rule"), "weight_decay")
    return _rebuild(
        hp, {"batch_size": _scaled_batch_size(b, kappa), "lr": lr * kappa**a, "weight_decay": wd * kappa ** (1 - a)}
    )


def beta_halflife_rule(hp: Any, kappa: float) -> Any:
    r"""Keep each moment's half-life in samples (Marek et al. 2025, small-batch training, for β2):

    .. math::  B \to \kappa B, \quad \beta_i \to \beta_i^{\kappa}, \quad \eta \to \sqrt{\kappa}\,\eta,
               \quad \epsilon \to \epsilon/\sqrt{\kappa}

    A β averages over ``h = ln ½ / ln β`` steps, ``h·B`` samples; at ``κB`` that many samples take ``h/κ`` steps,
    i.e. ``β^κ``. To first order in ``1 − β`` it is P2's ``1 − κ(1 − β)``; it differs at large κ and, unlike it,
    is defined for every κ (β^κ stays in [0, 1)). η, ε and a decoupled decay follow :func:`sqrt_rule`.

    Args:
        hp: as for :func:`sqrt_rule`.
        kappa: the factor κ > 0; ``κ·batch_size`` must be an integer.
    """
    kappa = _real(kappa, "kappa", positive=True)
    return _square_root(hp, kappa, "beta_halflife_rule", lambda beta, name: _check_beta(beta, name) ** kappa)


RULES: dict[str, Callable[[Any, float], Any]] = {
    "linear": linear_rule,
    "sqrt": sqrt_rule,
    "sqrt_lr": sqrt_lr_rule,
    "adamw_timescale": adamw_timescale_rule,
    "beta_halflife": beta_halflife_rule,
}
"""The transfer rules by name (``svag scale --rule``), each ``rule(hp, κ) -> hp'``."""


ADAPTIVE = ("adam", "adamw", "rmsprop")
"""Optimizers whose SDE is P2's (continuous time ``t = k·η²``): the square-root rule keeps it."""


def sde_rule(optimizer: str) -> str:
    """The rule that keeps ``optimizer``'s SDE when ``B → κB``: ``"sqrt"`` (P2) for :data:`ADAPTIVE`, else
    ``"linear"`` (P1)."""
    return "sqrt" if optimizer in ADAPTIVE else "linear"


def rule_limit(hp: Any, rule: str) -> float:
    r"""The largest κ (exclusive) the rule can reach from ``hp``: ``min_i 1/(1 − β_i)`` for :func:`sqrt_rule`
    (``κ(1 − β_i) < 1``; β = 0 sets none; a κ within rounding of it is refused too), ``inf`` for the others."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if rule != "sqrt":
        return math.inf
    values = _fields(hp)
    key = _betas_key(values, "rule_limit")
    betas = [values["beta"]] if key == "beta" else list(values["betas"])
    limits = [1.0 / (1.0 - _check_beta(x, "beta")) for x in betas if x != 0]
    return min(limits, default=math.inf)


def reaches(hp: Any, rule: str, kappa: float) -> bool:
    """Whether ``rule`` can scale ``hp`` by ``κ``: ``κ`` below :func:`rule_limit`, with the same rounding slack as
    the rule's own check (``10·(1 − 0.9)`` is 1 up to rounding: β1 would be 0, and :func:`sqrt_rule` refuses it)."""
    return kappa < rule_limit(hp, rule) * (1 - INTEGER_TOL)


def sde_constants(hp: Any, rule: str | Callable[[Any, float], Any]) -> dict[str, Any]:
    r"""The quantities a scaling rule keeps invariant, so runs on one SDE share them.

    - ``"linear"`` (SGD, P1): ``{"lr_over_batch_size": η/B}``, since ``ηΣ ∝ η/B``; it is also
      the continuous time per training sample (``t = k·η``, ``n/B`` steps per epoch).
    - ``"sqrt"`` (Adam/RMSprop, P2): ``"lr_over_sqrt_batch_size"``: η/√B (∝ σ0 = σ·η);
      ``"eps_times_lr"``: ε0 = ε·η; ``"c"``: ``(1 − β)/η²`` for each β, in the shape of ``betas``
      (tuple) or ``beta`` (float), ``inf`` for β = 0 (no averaging: no time constant);
      ``"time_per_sample"``: η²/B (``t = k·η²``).

    Args:
        hp: the hyperparameter record (as for :func:`linear_rule` / :func:`sqrt_rule`); ``lr > 0``.
        rule: ``"linear"`` or ``"sqrt"``, or the function :func:`linear_rule` or :func:`sqrt_rule`.
    """
    if rule is linear_rule or (isinstance(rule, str) and rule == "linear"):
        which = "linear"
    elif rule is sqrt_rule or (isinstance(rule, str) and rule == "sqrt"):
        which = "sqrt"
    else:
        raise ValueError(f"rule must be 'linear', 'sqrt', linear_rule or sqrt_rule, got {rule!r}")
    values = _fields(hp)
    b = _batch_size(values, "sde_constants")
    lr = _real(_require(values, "lr", "sde_constants"), "lr", positive=True)
    if which == "linear":
        return {"lr_over_batch_size": lr / b}
    eps = _real(_require(values, "eps", "sde_constants"), "eps")
    key = _betas_key(values, "sde_constants")

    def c(beta: Any, name: str) -> float:
        beta = _check_beta(beta, name)
        return math.inf if beta == 0.0 else (1.0 - beta) / lr**2

    if key == "beta":
        cs: float | tuple[float, ...] = c(values["beta"], "beta")
    else:
        cs = tuple(c(x, f"betas[{i}]") for i, x in enumerate(values["betas"]))
    return {
        "lr_over_sqrt_batch_size": lr / math.sqrt(b),
        "eps_times_lr": eps * lr,
        "c": cs,
        "time_per_sample": lr**2 / b,
    }
