"""foreach/fused flags (issue 16): torch's multi-tensor and fused kernels for the same update, bit for bit at l = 1.

torch 2.13 implements fused SGD, Adam and AdamW on CPU, so every case runs here; on CUDA the same code path
is taken (the kernels are torch's)."""

import importlib

import pytest
import torch
from torch import nn

import svag


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _run(model, opt, steps=8, mark=False):
    for k in range(steps):
        g = torch.Generator().manual_seed(k)
        x = torch.randn(16, 5, generator=g, dtype=next(model.parameters()).dtype)
        y = torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if mark:
            opt.mark_amplified()  # a hand-built gradient at l > 1: the documented opt-out
        opt.step()


FLAGS = [{"foreach": True}, {"fused": True}, {"foreach": False}]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_svag_l1_equals_torch_sgd_with_the_same_flag(flags, dtype):
    a, b = _model(dtype=dtype), _model(dtype=dtype)
    _run(a, svag.SVAG(a.parameters(), lr=0.3, weight_decay=1e-3, **flags))
    _run(b, torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=1e-3, **flags))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize(("ours", "theirs"), [(svag.SVAGAdam, torch.optim.Adam), (svag.SVAGAdamW, torch.optim.AdamW)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_and_adamw_l1_equal_torch_with_the_same_flag(flags, ours, theirs, dtype):
    a, b = _model(dtype=dtype), _model(dtype=dtype)
    opt_a = ours(a.parameters(), lr=0.01, weight_decay=0.1, **flags)
    _run(a, opt_a)
    _run(b, theirs(b.parameters(), lr=0.01, weight_decay=0.1, **flags))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    state = opt_a.state_dict()  # the step count stays an int, as on the single-tensor path
    assert all(isinstance(s["step"], int) and s["step"] == 8 for s in state["state"].values())


@pytest.mark.parametrize("flags", [{"foreach": True}, {"fused": True}])
@pytest.mark.parametrize("make", [
    lambda p, **f: svag.SVAG(p, lr=0.3, l=4, weight_decay=1e-3, **f),
    lambda p, **f: svag.SVAGAdam(p, lr=0.01, l=2, weight_decay=0.1, **f),
    lambda p, **f: svag.SVAGAdamW(p, lr=0.01, l=4, weight_decay=0.1, **f),
])  # fmt: skip
def test_kernels_equal_the_single_tensor_path_at_l_above_1(flags, make):
    """The same update at l > 1 (transformed hyperparameters): float64, within 1e-13 relative."""
    a, b = _model(), _model()
    _run(a, make(a.parameters()), mark=True)
    _run(b, make(b.parameters(), **flags), mark=True)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)


def test_the_flags_reach_torch(monkeypatch):
    seen = []
    for name in ("sgd", "adam"):
        module = importlib.import_module(f"torch.optim.{name}")  # torch.optim deletes these attribute names
        real = getattr(module, name)

        def spy(*args, _real=real, **kwargs):
            seen.append((kwargs["foreach"], kwargs["fused"]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    for cls in (svag.SVAG, svag.SVAGAdamW):
        for flags in ({"foreach": True}, {"fused": True}):
            model = _model()
            _run(model, cls(model.parameters(), lr=0.01, **flags), steps=1)
    assert seen == [(True, None), (None, True)] * 2


def test_bad_flags_are_refused_in_one_line():
    model = _model()
    with pytest.raises(ValueError, match="foreach and fused cannot both be True"):
        svag.SVAG(model.parameters(), lr=0.1, foreach=True, fused=True)
    with pytest.raises(ValueError, match="fused must be None, True or False, got 'yes'"):
        svag.SVAGAdam(model.parameters(), lr=0.1, fused="yes")
    with pytest.raises(ValueError, match="SVAGRMSprop has only the single-tensor update, got fused=True"):
        svag.SVAGRMSprop(model.parameters(), lr=0.1, fused=True)
    svag.SVAGRMSprop(model.parameters(), lr=0.1, foreach=False, fused=None)  # the default path, accepted
