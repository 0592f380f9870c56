"""Scaling rules: invariance of the SDE constants (property tests), round trips, clear errors."""

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svag.config import RunConfig
from svag.scaling import linear_rule, sde_constants, sqrt_rule

POW2 = st.integers(min_value=-3, max_value=4).map(lambda k: 2.0**k)  # κ = 1/8 ... 16
BATCH = st.sampled_from([8, 16, 32, 64, 128])
LR = st.floats(min_value=1e-5, max_value=1.0)
BETA = st.floats(min_value=0.9, max_value=0.999)  # κ(1 − β) < 1 for κ ≤ 10
EPS = st.floats(min_value=1e-10, max_value=1e-3)


def _close(a, b):
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b))
    return a == b or math.isclose(a, b, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(B=BATCH, lr=LR, kappa=POW2)
def test_linear_rule_keeps_lr_over_batch(B, lr, kappa):
    hp = {"batch_size": B * 8, "lr": lr, "weight_decay": 5e-4}
    new = linear_rule(hp, kappa)
    assert new["batch_size"] == round(B * 8 * kappa) and new["weight_decay"] == 5e-4
    assert _close(sde_constants(new, "linear")["lr_over_batch_size"], sde_constants(hp, "linear")["lr_over_batch_size"])


@settings(max_examples=200, deadline=None)
@given(B=BATCH, lr=LR, b1=BETA, b2=BETA, eps=EPS, kappa=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 8.0]))
def test_sqrt_rule_keeps_p2_constants(B, lr, b1, b2, eps, kappa):
    hp = {"batch_size": B * 8, "lr": lr, "betas": (b1, b2), "eps": eps}
    new = sqrt_rule(hp, kappa)
    before, after = sde_constants(hp, sqrt_rule), sde_constants(new, sqrt_rule)
    assert before.keys() == after.keys()
    for key in before:
        assert _close(after[key], before[key]), key
    assert new["lr"] == pytest.approx(lr * math.sqrt(kappa), rel=1e-12)
    assert new["eps"] == pytest.approx(eps / math.sqrt(kappa), rel=1e-12)
    assert 1 - new["betas"][0] == pytest.approx(kappa * (1 - b1), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(B=BATCH, lr=LR, beta=BETA, eps=EPS, kappa=POW2.filter(lambda k: k <= 8))
def test_round_trip_kappa_then_inverse(B, lr, beta, eps, kappa):
    lin = {"batch_size": B * 8, "lr": lr}
    back = linear_rule(linear_rule(lin, kappa), 1 / kappa)
    assert back["batch_size"] == lin["batch_size"] and back["lr"] == pytest.approx(lr, rel=1e-12)
    ada = {"batch_size": B * 8, "lr": lr, "beta": beta, "eps": eps}
    back = sqrt_rule(sqrt_rule(ada, kappa), 1 / kappa)
    assert back["batch_size"] == ada["batch_size"]
    for key in ("lr", "beta", "eps"):
        assert back[key] == pytest.approx(ada[key], rel=1e-9, abs=1e-12), key


def test_same_shape_out_as_in_and_dataclasses():
    assert isinstance(sqrt_rule({"batch_size": 32, "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8}, 2)["betas"], list)
    cfg = RunConfig(optimizer="adam", lr=1e-3, batch_size=32, betas=(0.9, 0.999), eps=1e-8)
    new = sqrt_rule(cfg, 4)
    assert isinstance(new, RunConfig) and new.batch_size == 128 and new.lr == pytest.approx(2e-3)
    assert new.betas == pytest.approx((0.6, 0.996)) and new.eps == pytest.approx(5e-9)
    assert linear_rule(cfg, 4) == replace(cfg, batch_size=128, lr=4e-3)
    assert sqrt_rule({"batch_size": 32, "lr": 1.0, "betas": (0.0, 0.99), "eps": 0.0}, 4)["betas"][0] == 0.0


@settings(max_examples=200, deadline=None)
@given(
    B=BATCH,
    lr=LR,
    wd=st.just(0.0) | st.floats(min_value=1e-8, max_value=1.0),
    kappa=st.sampled_from([0.25, 0.5, 2.0, 4.0, 8.0]),
)
def test_sqrt_rule_scales_decoupled_weight_decay_and_keeps_its_rate(B, lr, wd, kappa):
    """AdamW (PAPER §5, derived): λ_W → √κ·λ_W keeps the decay rate per unit time λ_W/η; coupled L2 stays."""
    hp = {"batch_size": B * 8, "lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": wd}
    new = sqrt_rule({**hp, "decoupled_weight_decay": True}, kappa)
    assert new["weight_decay"] == pytest.approx(wd * math.sqrt(kappa), rel=1e-12)
    assert _close(new["weight_decay"] / new["lr"], wd / lr) and new["decoupled_weight_decay"] is True
    assert sqrt_rule(hp, kappa)["weight_decay"] == wd  # coupled (no flag) ...
    assert sqrt_rule({**hp, "decoupled_weight_decay": False}, kappa)["weight_decay"] == wd  # ... unchanged


def test_sqrt_rule_reads_svag_adamw_hyperparameters_but_not_run_config():
    import torch

    from svag.adaptive import SVAGAdamW

    opt = SVAGAdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, weight_decay=0.1)
    new = sqrt_rule({**opt.defaults, "batch_size": 32}, 4)
    assert new["weight_decay"] == pytest.approx(0.2) and new["lr"] == pytest.approx(2e-3)
    cfg = RunConfig(optimizer="adam", lr=1e-3, batch_size=32, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    assert sqrt_rule(cfg, 4).weight_decay == 0.1  # RunConfig has no AdamW: its decay is coupled L2


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sqrt_rule({"batch_size": 32, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, 16),
         r"kappa·\(1 - betas\[0\]\) = 16.0·\(1 - 0.9\) = .* must be < 1 .* use kappa < 10"),
        (lambda: linear_rule({"batch_size": 32, "lr": 0.1}, 0.3), r"must be an integer >= 1, got 0.3·32"),
        (lambda: linear_rule({"batch_size": 32, "lr": 0.1}, 0), r"kappa must be a finite number > 0, got 0"),
        (lambda: linear_rule({"batch_size": 32, "lr": 0.1}, math.nan), r"kappa must be a finite number > 0"),
        (lambda: linear_rule({"lr": 0.1}, 2), r"linear_rule needs the key 'batch_size'"),
        (lambda: linear_rule({"batch_size": 2.5, "lr": 0.1}, 2), r"batch_size must be an integer >= 1, got 2.5"),
        (lambda: sqrt_rule({"batch_size": 32, "lr": 1e-3, "eps": 1e-8}, 2), r"exactly one of the keys 'betas' or"),
        (lambda: sqrt_rule({"batch_size": 32, "lr": 1e-3, "beta": 1.0, "eps": 1e-8}, 2), r"beta must be a real"),
        (lambda: sqrt_rule({"batch_size": 32, "lr": -1.0, "beta": 0.9, "eps": 1e-8}, 2), r"lr must be a finite number"),
        (lambda: linear_rule([32, 0.1], 2), r"hp must be a dict or a dataclass instance, got list"),
        (lambda: sqrt_rule({"batch_size": 32, "lr": 1e-3, "beta": 0.9, "eps": 1e-8, "decoupled_weight_decay": 1}, 2),
         r"decoupled_weight_decay must be True or False, got 1"),
        (lambda: sqrt_rule({"batch_size": 32, "lr": 1e-3, "beta": 0.9, "eps": 1e-8, "decoupled_weight_decay": True}, 2),
         r"sqrt_rule \(decoupled_weight_decay\) needs the key 'weight_decay'"),
        (lambda: sde_constants({"batch_size": 32, "lr": 0.1}, "cubic"), r"rule must be 'linear', 'sqrt'"),
    ],
)  # fmt: skip
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# -- the transfer rules side by side (svag.scaling.RULES) ------------------------------------------------
from svag.scaling import RULES, adamw_timescale_rule, beta_halflife_rule, reaches, rule_limit, sqrt_lr_rule  # noqa: E402

ADAMW = {"batch_size": 16, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1, "optimizer": "adamw"}


def _same_record(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (a[k] == pytest.approx(b[k], rel=1e-12)) if not isinstance(a[k], (tuple, str)) else
        (a[k] == b[k] if isinstance(a[k], str) else a[k] == pytest.approx(b[k], rel=1e-12))
        for k in a
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_is_the_identity_at_kappa_1_and_composes(name):
    """κ = 1 changes nothing; κ1 then κ2 is κ1·κ2 (so a ladder built from any rung is the same ladder)."""
    rule = RULES[name]
    assert _same_record(rule(ADAMW, 1), ADAMW)
    for k1, k2 in ((2, 2), (2, 4), (4, 2)):
        assert _same_record(rule(rule(ADAMW, k1), k2), rule(ADAMW, k1 * k2)), (k1, k2)


def test_what_each_rule_changes():
    k, root = 4, 2.0
    assert sqrt_lr_rule(ADAMW, k) == {**ADAMW, "batch_size": 64, "lr": 1e-3 * root}
    ts = adamw_timescale_rule(ADAMW, k)  # Power Lines: η kept, λ·κ keeps B/(ηλD)
    assert ts["lr"] == 1e-3 and ts["weight_decay"] == pytest.approx(0.4) and ts["betas"] == ADAMW["betas"]
    half = adamw_timescale_rule(ADAMW, k, lr_exponent=0.5)  # Wang & Aitchison with √κ·η: P2's λ·√κ
    p2 = sqrt_rule(ADAMW, k)
    assert half["lr"] == pytest.approx(p2["lr"]) and half["weight_decay"] == pytest.approx(p2["weight_decay"])
    for hp in (ADAMW, ts, half):  # the timescale B/(ηλ) is what the rule keeps
        assert hp["batch_size"] / (hp["lr"] * hp["weight_decay"]) == pytest.approx(16 / (1e-3 * 0.1))
    hl = beta_halflife_rule(ADAMW, k)
    assert hl["betas"] == pytest.approx((0.9**4, 0.999**4)) and hl["lr"] == pytest.approx(2e-3)
    assert hl["eps"] == pytest.approx(5e-9) and hl["weight_decay"] == pytest.approx(0.2)


def test_halflife_rule_agrees_with_p2_to_first_order_and_reaches_past_its_limit():
    """β^κ = 1 − κ(1 − β) + O((1 − β)²): at 1 − β = 1e-4 the two agree to ~κ²·1e-8; at κ = 16 with β1 = 0.9
    P2's rule is undefined, the half-life rule is not (and its half-life in samples is the base one)."""
    hp = {**ADAMW, "betas": (0.9999, 0.99999)}
    for k in (2, 4, 8):
        a, b = beta_halflife_rule(hp, k)["betas"], sqrt_rule(hp, k)["betas"]
        assert all(abs(x - y) < k**2 * 1e-8 for x, y in zip(a, b))
    far = beta_halflife_rule(ADAMW, 16)
    assert 0 < far["betas"][0] < 1
    half_life = lambda beta, B: B * math.log(0.5) / math.log(beta)  # noqa: E731 - samples
    assert half_life(far["betas"][0], 256) == pytest.approx(half_life(0.9, 16))
    with pytest.raises(ValueError, match="must be < 1"):
        sqrt_rule(ADAMW, 16)


def test_rule_limits():
    assert rule_limit(ADAMW, "sqrt") == pytest.approx(10.0)  # κ(1 − β1) < 1
    assert rule_limit({**ADAMW, "betas": (0.0, 0.99)}, "sqrt") == pytest.approx(100.0)  # β1 = 0: β2 binds
    assert all(rule_limit(ADAMW, r) == math.inf for r in RULES if r != "sqrt")
    assert reaches(ADAMW, "sqrt", 9.99) and not reaches(ADAMW, "sqrt", 10)  # 1/(1 − 0.9) is 10 up to rounding
    assert reaches(ADAMW, "beta_halflife", 1e6)
    with pytest.raises(ValueError, match="rule must be one of linear, sqrt, sqrt_lr, adamw_timescale, beta_halflife"):
        rule_limit(ADAMW, "cubic")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: adamw_timescale_rule({**ADAMW, "optimizer": "adam"}, 2), r"needs decoupled weight decay"),
        (lambda: adamw_timescale_rule(ADAMW, 2, lr_exponent=1.5), r"lr_exponent must be in \[0, 1\], got 1.5"),
        (lambda: beta_halflife_rule({**ADAMW, "betas": (0.9, 1.0)}, 2), r"betas\[1\] must be a real number in"),
        (lambda: sqrt_lr_rule(ADAMW, -2), r"kappa must be a finite number > 0, got -2"),
    ],
)  # fmt: skip
def test_rules_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
