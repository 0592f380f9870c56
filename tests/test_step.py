import copy

import pytest
import torch
from torch import nn

import svag

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


def _bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _batches(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)) for _ in range(2)]


def _loss_fn(model):
    return lambda b: nn.functional.cross_entropy(model(b[0]), b[1])


@pytest.mark.parametrize("mode", ["fused", "accumulate"])
@pytest.mark.parametrize("l", [2.0, 4.0, 16.0, 3.7])
def test_fast_paths_equal_two_backward_reference(l, mode):
    """One backward of a1·loss1 + a2·loss2 (fused), or a1·loss1 and a2·loss2 backpropagated into
    the same .grad (accumulate), equals a1·g1 + a2·g2 from two explicit gradients (float64).
    (At l = 1 every mode takes the same single-batch path: that path is compared with
    ``torch.optim.SGD`` in the next test.)"""
    a, b = _bn_model(), _bn_model()
    opt_a = svag.SVAG(a.parameters(), lr=0.3, l=l, weight_decay=5e-4)
    opt_b = svag.SVAG(b.parameters(), lr=0.3, l=l, weight_decay=5e-4)
    for k in range(10):
        b1, b2 = _batches(k)
        svag.train_step(opt_a, _loss_fn(a), b1, b2, mode=mode)
        svag.train_step(opt_b, _loss_fn(b), b1, b2, mode="reference")
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-12)
    for (na, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(ba, bb, rtol=0, atol=1e-12, msg=na)


@pytest.mark.parametrize("mode", ["fused", "accumulate", "reference"])
def test_l1_does_not_touch_second_batch_and_equals_sgd(mode):
    a, b = _bn_model(), _bn_model()
    opt_a = svag.SVAG(a.parameters(), lr=0.3, weight_decay=5e-4)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=5e-4)

    class Poison:
        def __getitem__(self, i):
            raise AssertionError("second batch touched at l = 1")

    for k in range(5):
        b1, _ = _batches(k)
        out = svag.train_step(opt_a, _loss_fn(a), b1, Poison(), mode=mode)
        assert out.loss2 is None
        opt_b.zero_grad()
        _loss_fn(b)(b1).backward()
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    for ba, bb in zip(a.buffers(), b.buffers()):  # BatchNorm running statistics: one update per step
        assert torch.equal(ba, bb)


def test_batchnorm_uses_each_batch_statistics_and_updates_running_stats_twice():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(3, momentum=0.5)
    model = nn.Sequential(bn)
    seen = []
    bn.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].detach().clone(), out.detach().clone())))
    w = nn.Parameter(torch.ones(3))
    opt = svag.SVAG([w, *model.parameters()], lr=0.1, l=4)
    x1 = torch.randn(10, 3) * 2 + 1
    x2 = torch.randn(10, 3) * 0.5 - 3
    svag.train_step(opt, lambda x: (model(x) * w).pow(2).mean(), x1, x2)
    assert len(seen) == 2  # two separate forward passes
    for x, out in seen:
        normalized = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
        torch.testing.assert_close(out, normalized, rtol=0, atol=1e-12)  # own batch statistics
    assert bn.num_batches_tracked.item() == 2
    expected_mean = 0.5 * (0.5 * x1.mean(0)) + 0.5 * x2.mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=0, atol=1e-12)


def test_return_grads_gives_independent_batch_gradients():
    model = _bn_model()
    opt = svag.SVAG(model.parameters(), lr=0.0, l=2)
    b1, b2 = _batches(0)
    ref = copy.deepcopy(model)
    out = svag.train_step(opt, _loss_fn(model), b1, b2, return_grads=True)
    g1, g2 = out.grads
    for batch, grads in ((b1, g1), (b2, g2)):
        ref.zero_grad()
        _loss_fn(ref)(batch).backward()
        for p, g in zip(ref.parameters(), grads):
            torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-13)


def test_groups_with_different_l_are_refused():
    """One clock for all groups (issue 27): different amplification per group is refused in one line
    (tests/test_open_step_misuse.py checks every path)."""
    w1, w2 = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match=r"param groups must share one l .* got l=2 in group 0 and l=8 in group 1"):
        svag.SVAG([{"params": [w1], "l": 2.0}, {"params": [w2], "l": 8.0}], lr=0.0)


def test_missing_second_batch_raises():
    model = _bn_model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    with pytest.raises(ValueError, match="needs batch2 when l > 1"):
        svag.train_step(opt, _loss_fn(model), _batches(0)[0])


def test_bad_mode():
    model = _bn_model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    with pytest.raises(ValueError, match="mode must be one of accumulate, fused, reference, got 'x'"):
        svag.train_step(opt, _loss_fn(model), *_batches(0), mode="x")


# -- issue 11: misuse that used to fail inside torch or silently change the simulation ------------


@pytest.mark.parametrize("l", [1.0, 2.0])
@pytest.mark.parametrize("mode", ["fused", "accumulate", "reference"])
def test_all_frozen_parameters_raise_a_clear_error(l, mode):
    model = _bn_model()
    for p in model.parameters():
        p.requires_grad_(False)
    opt = svag.SVAG(model.parameters(), lr=0.1, l=l)
    with pytest.raises(ValueError, match=r"none of the optimizer's parameters requires grad \(all frozen\)"):
        svag.train_step(opt, _loss_fn(model), *_batches(0), mode=mode)


@pytest.mark.parametrize("mode", ["fused", "accumulate", "reference"])
def test_frozen_parameters_are_skipped_as_torch_optim_does(mode):
    """Frozen parameters get no gradient and do not move; the others train as usual."""
    model = _bn_model()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    svag.train_step(opt, _loss_fn(model), *_batches(0), mode=mode)
    assert model[0].weight.grad is None and torch.equal(model[0].weight, frozen)
    assert model[3].weight.grad is not None and opt.sde_time == pytest.approx(0.05)


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_a_loss_without_grad_raises_a_clear_error(l):
    model = _bn_model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=l)

    def loss_fn(b):
        with torch.no_grad():
            return _loss_fn(model)(b)

    with pytest.raises(ValueError, match="loss_fn returned a loss that depends on no parameter requiring grad"):
        svag.train_step(opt, loss_fn, *_batches(0))
    assert opt.sde_time == 0.0


@pytest.mark.parametrize("mode", ["fused", "accumulate", "reference"])
def test_the_same_batch_twice_is_refused(mode):
    """batch2 = batch1 would give a1·g1 + a2·g1 = g1: SGD's noise, not l times it. The check is on
    identity and memory: the same object, or a new tuple of the same tensors."""
    model = _bn_model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=4)
    b1, _ = _batches(0)
    for b2 in (b1, (b1[0], b1[1]), [b1[0], b1[1]]):
        with pytest.raises(ValueError, match="batch2 is the same batch as batch1"):
            svag.train_step(opt, _loss_fn(model), b1, b2, mode=mode)
    assert opt.sde_time == 0.0 and all(p.grad is None for p in model.parameters())
    # equal values in other memory are two draws that happen to coincide: allowed (documented)
    svag.train_step(opt, _loss_fn(model), b1, (b1[0].clone(), b1[1].clone()), mode=mode)
    # a tensor shared by both batches (a constant target) is allowed when another differs
    svag.train_step(opt, _loss_fn(model), b1, (_batches(1)[0][0], b1[1]), mode=mode)
    with pytest.raises(ValueError, match="batch2 is the same batch as batch1"):  # return_grads uses batch2 at l = 1
        svag.train_step(svag.SVAG(model.parameters(), lr=0.1), _loss_fn(model), b1, b1, return_grads=True)
