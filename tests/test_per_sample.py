"""Per-sample gradients (torch.func) against the slow loop over single samples; sampling conventions.

Equivalence tests: the same inputs through two implementations, float64, tolerance 1e-10.
The sampling-convention tests enumerate every possible batch of a tiny data set (exact).
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from svag import per_sample
from svag.per_sample import (
    PerSampleMoments,
    check_per_sample_defined,
    flatten_per_sample,
    noise_from_per_sample_grads,
    per_sample_grads,
    per_sample_noise,
)


def loop_per_sample_grads(model, loss_fn, inputs, targets):
    """The slow, obviously correct reference: one backward per sample, an (n, d) matrix."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(inputs.shape[0]):
        loss = loss_fn(model(inputs[i : i + 1]), targets[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def _mlp(norm=None, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 6)]
    if norm == "gn":
        layers.append(nn.GroupNorm(2, 6))
    elif norm == "bn":
        layers.append(nn.BatchNorm1d(6))
    layers += [nn.Tanh(), nn.Linear(6, 3)]
    return nn.Sequential(*layers)


def _data(n=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


ce = nn.functional.cross_entropy


@pytest.mark.parametrize("norm", [None, "gn"])
def test_vmap_equals_loop(norm):
    model = _mlp(norm)
    x, y = _data()
    fast = flatten_per_sample(per_sample_grads(model, ce, x, y))
    slow = loop_per_sample_grads(model, ce, x, y)
    assert fast.shape == slow.shape == (11, sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)


def test_frozen_parameters_excluded_and_eval_batchnorm_allowed():
    model = _mlp("bn").eval()
    model[0].weight.requires_grad_(False)
    x, y = _data()
    fast = flatten_per_sample(per_sample_grads(model, ce, x, y))
    slow = loop_per_sample_grads(model, ce, x, y)
    assert fast.shape[1] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)


def test_batchnorm_in_train_mode_raises():
    model = _mlp("bn").train()
    x, y = _data()
    with pytest.raises(ValueError, match=r"not defined for BatchNorm.*'1'.*method='minibatch'"):
        per_sample_grads(model, ce, x, y)
    with pytest.raises(ValueError, match="BatchNorm"):
        check_per_sample_defined(model)
    check_per_sample_defined(model.eval())


def _enumerated_noise(g, B, replacement):
    """Exact G and Tr Cov(batch mean) over every equally likely batch (ordered tuples or subsets)."""
    n = g.shape[0]
    batches = itertools.product(range(n), repeat=B) if replacement else itertools.combinations(range(n), B)
    means = np.array([g[list(b)].mean(0) for b in batches])
    mu = means.mean(0)
    return float(g.mean(0) @ g.mean(0)), float(((means - mu) ** 2).sum(1).mean()), mu


@pytest.mark.parametrize("B", [1, 2, 3, 6])
@pytest.mark.parametrize("replacement", [True, False])
def test_sampling_convention_is_exact_by_enumeration(B, replacement):
    """N_B = Tr Σ_1 / B (with replacement) or ·(n−B)/(n−1) (B distinct points): all batches enumerated."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(6, 4)) + np.array([1.0, -2.0, 0.5, 0.0])
    G_exact, N_exact, mu = _enumerated_noise(g, B, replacement)
    np.testing.assert_allclose(mu, g.mean(0), rtol=0, atol=1e-12)  # batch means are unbiased
    G, N = noise_from_per_sample_grads(torch.from_numpy(g), B, finite_population=not replacement)
    assert G == pytest.approx(G_exact, rel=1e-12)
    assert N == pytest.approx(N_exact, rel=1e-10, abs=1e-14)


def test_streaming_moments_equal_one_shot():
    g = torch.randn(23, 7) * torch.arange(1.0, 8.0) + 3.0
    moments = PerSampleMoments()
    for lo, hi in [(0, 1), (1, 9), (9, 10), (10, 23)]:
        moments.add([g[lo:hi, :3], g[lo:hi, 3:].reshape(hi - lo, 2, 2)])
    for B, fp in [(1, False), (5, True), (23, True)]:
        assert moments.noise(B, finite_population=fp) == pytest.approx(
            noise_from_per_sample_grads(g, B, finite_population=fp), rel=1e-12, abs=1e-15
        )
    assert moments.n == 23


def test_per_sample_noise_equals_loop_reference():
    model = _mlp("gn")
    x, y = _data(n=13)
    chunks = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 13, 4)]
    G, N, n = per_sample_noise(model, ce, chunks, 4, finite_population=True)
    G_ref, N_ref = noise_from_per_sample_grads(loop_per_sample_grads(model, ce, x, y), 4, finite_population=True)
    assert n == 13
    assert G == pytest.approx(G_ref, rel=1e-10)
    assert N == pytest.approx(N_ref, rel=1e-10)


def test_bad_inputs():
    g = torch.randn(5, 3)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        noise_from_per_sample_grads(g, 0)
    with pytest.raises(ValueError, match="batch_size must be <= n = 5"):
        noise_from_per_sample_grads(g, 6, finite_population=True)
    with pytest.raises(ValueError, match=r"\(n, d\) tensor"):
        noise_from_per_sample_grads(torch.randn(5), 1)
    bad = g.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        noise_from_per_sample_grads(bad, 2)
    with pytest.raises(ValueError, match="at least 1 sample"):
        PerSampleMoments().noise(1)
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        per_sample.per_sample_grads(frozen, ce, *_data())
