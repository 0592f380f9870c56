"""foreach/fused flags (issue 16): torch's multi-tensor and fused kernels for the same update, bit for bit at l = 1.

torch 2.13 implements fused SGD, Adam and AdamW on CPU, so every case runs here; on CUDA the same code path
is taken (the kernels are torch's). SVAGRMSprop runs on torch's Adam kernels with beta1 = 0 (its default,
bias-corrected update) or its foreach RMSprop kernel (bias_correction=False; torch has no fused RMSprop)."""

import copy
import importlib

import pytest
import torch

import svag
from helpers import tiny_loss, tiny_mlp


def _run(model, opt, steps=8, mark=False):
    for k in range(steps):
        opt.zero_grad()
        tiny_loss(model, k).backward()
        if mark:
            opt.mark_amplified()  # a hand-built gradient at l > 1: the documented opt-out
        opt.step()


FLAGS = [{"foreach": True}, {"fused": True}, {"foreach": False}]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_svag_l1_equals_torch_sgd_with_the_same_flag(flags, dtype):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    _run(a, svag.SVAG(a.parameters(), lr=0.3, weight_decay=1e-3, **flags))
    _run(b, torch.optim.SGD(b.parameters(), lr=0.3, weight_decay=1e-3, **flags))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize(("ours", "theirs"), [(svag.SVAGAdam, torch.optim.Adam), (svag.SVAGAdamW, torch.optim.AdamW)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_and_adamw_l1_equal_torch_with_the_same_flag(flags, ours, theirs, dtype):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
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
    a, b = tiny_mlp(), tiny_mlp()
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
            model = tiny_mlp()
            _run(model, cls(model.parameters(), lr=0.01, **flags), steps=1)
    assert seen == [(True, None), (None, True)] * 2


def test_bad_flags_are_refused_in_one_line():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="foreach and fused cannot both be True"):
        svag.SVAG(model.parameters(), lr=0.1, foreach=True, fused=True)
    with pytest.raises(ValueError, match="fused must be None, True or False, got 'yes'"):
        svag.SVAGAdam(model.parameters(), lr=0.1, fused="yes")
    with pytest.raises(ValueError, match="foreach and fused cannot both be True"):
        svag.SVAGRMSprop(model.parameters(), lr=0.1, foreach=True, fused=True)


# -- SVAGRMSprop: torch's Adam kernels with beta1 = 0 (bias_correction=True), its foreach RMSprop kernel (False) --

RMSPROP_FLAGS = [(True, {"foreach": True}), (True, {"fused": True}), (False, {"foreach": True})]  # no fused RMSprop
RMSPROP_HP = {"lr": 0.01, "eps": 1e-6, "weight_decay": 0.1}


def _torch_rmsprop_twin(params, bias_correction, beta=0.95, **flags):
    """The torch optimizer SVAGRMSprop is at l = 1: Adam with betas (0, beta), or RMSprop with alpha = beta."""
    if bias_correction:
        return torch.optim.Adam(params, betas=(0.0, beta), **RMSPROP_HP, **flags)
    return torch.optim.RMSprop(params, alpha=beta, **RMSPROP_HP, **flags)


@pytest.mark.parametrize(("bias_correction", "flags"), [*RMSPROP_FLAGS, (True, {"foreach": False})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rmsprop_l1_equals_torch_with_the_same_flag(bias_correction, flags, dtype):
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = svag.SVAGRMSprop(a.parameters(), beta=0.95, bias_correction=bias_correction, **RMSPROP_HP, **flags)
    opt_b = _torch_rmsprop_twin(b.parameters(), bias_correction, **flags)
    _run(a, opt_a)
    _run(b, opt_b)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    kernel_adam = bias_correction and (flags.get("foreach") or flags.get("fused"))
    for p, q in zip(a.parameters(), b.parameters()):
        ours, theirs = opt_a.state[p], opt_b.state[q]
        assert ours["step"] == 8 and isinstance(ours["step"], int)
        assert torch.equal(ours["exp_avg_sq"], theirs["exp_avg_sq" if bias_correction else "square_avg"])
        assert ("exp_avg" in ours) == bool(kernel_adam)  # the Adam kernels' first moment, only on them
        if kernel_adam:
            assert torch.equal(ours["exp_avg"], theirs["exp_avg"])


@pytest.mark.parametrize(("bias_correction", "flags"), RMSPROP_FLAGS)
@pytest.mark.parametrize("l", [2, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rmsprop_kernels_equal_the_single_tensor_path_at_l_above_1(bias_correction, flags, l, dtype):
    """The same update at l > 1 (transformed hyperparameters): bit for bit with foreach (on CPU torch's foreach
    ops run tensor by tensor, the single-tensor path's operations), within 1e-13 relative (float64) with fused,
    whose kernel fuses the arithmetic and rounds differently."""
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    _run(a, svag.SVAGRMSprop(a.parameters(), beta=0.95, l=l, bias_correction=bias_correction, **RMSPROP_HP), mark=True)
    opt_b = svag.SVAGRMSprop(b.parameters(), beta=0.95, l=l, bias_correction=bias_correction, **RMSPROP_HP, **flags)
    _run(b, opt_b, mark=True)
    for p, q in zip(a.parameters(), b.parameters()):
        if flags.get("foreach"):
            assert torch.equal(p, q)
        else:
            tol = {"rtol": 1e-13, "atol": 1e-15} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-7}
            torch.testing.assert_close(p, q, **tol)


@pytest.mark.parametrize(("bias_correction", "flags"), RMSPROP_FLAGS)
def test_rmsprop_kernel_state_dict_round_trip(bias_correction, flags):
    """Saved after 4 steps and loaded into a fresh optimizer (other hyperparameters, no flags): the saved groups'
    flags come back, and the next 4 steps are bit for bit those of the uninterrupted run."""
    a = tiny_mlp()
    opt_a = svag.SVAGRMSprop(a.parameters(), beta=0.95, l=3, bias_correction=bias_correction, **RMSPROP_HP, **flags)
    _run(a, opt_a, steps=4, mark=True)
    b = copy.deepcopy(a)
    opt_b = svag.SVAGRMSprop(b.parameters(), lr=99.0, l=7, bias_correction=bias_correction)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert {k: opt_b.param_groups[0][k] for k in ("foreach", "fused", "l")} == {
        "foreach": flags.get("foreach"), "fused": flags.get("fused"), "l": 3}  # fmt: skip
    keys = {"step", "exp_avg", "exp_avg_sq"} if bias_correction else {"step", "exp_avg_sq"}
    assert all(set(s) == keys for s in opt_b.state.values())
    _run(a, opt_a, steps=4, mark=True)
    _run(b, opt_b, steps=4, mark=True)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert opt_a.sde_time == opt_b.sde_time


@pytest.mark.parametrize(("bias_correction", "flags"), RMSPROP_FLAGS)
@pytest.mark.parametrize("kernel_first", [True, False])
def test_rmsprop_switching_flags_between_save_and_load(bias_correction, flags, kernel_first):
    """State saved on one path, loaded, and continued on the other: at l = 1 bit for bit the torch optimizer
    switched the same way (the Adam kernels' ``exp_avg`` is created, or dropped, at the switch)."""
    first, second = (flags, {"foreach": False}) if kernel_first else ({"foreach": False}, flags)
    a, b = tiny_mlp(), tiny_mlp()
    opt_a = svag.SVAGRMSprop(a.parameters(), beta=0.95, bias_correction=bias_correction, **RMSPROP_HP, **first)
    opt_b = _torch_rmsprop_twin(b.parameters(), bias_correction, **first)
    _run(a, opt_a, steps=4)
    _run(b, opt_b, steps=4)
    c = copy.deepcopy(a)
    opt_c = svag.SVAGRMSprop(c.parameters(), lr=0.01, bias_correction=bias_correction)
    opt_c.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for opt in (opt_c, opt_b):
        opt.param_groups[0].update(foreach=second.get("foreach"), fused=second.get("fused"))
    _run(c, opt_c, steps=4)
    _run(b, opt_b, steps=4)
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), b.parameters()))
    kernel_adam = bias_correction and not kernel_first
    assert all(("exp_avg" in s) == kernel_adam for s in opt_c.state.values())


def test_the_rmsprop_flags_reach_torch(monkeypatch):
    seen = []
    for name in ("adam", "rmsprop"):
        module = importlib.import_module(f"torch.optim.{name}")
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen.append((_name, kwargs["foreach"], kwargs.get("fused")))
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    for bias_correction, flags in RMSPROP_FLAGS:
        model = tiny_mlp()
        _run(model, svag.SVAGRMSprop(model.parameters(), lr=0.01, bias_correction=bias_correction, **flags), steps=1)
    assert seen == [("adam", True, None), ("adam", None, True), ("rmsprop", True, None)]


def test_fused_rmsprop_without_bias_correction_is_refused_in_one_line():
    model = tiny_mlp()
    message = r"^SVAGRMSprop\(bias_correction=False\) is torch.optim.RMSprop, which has no fused kernel [^\n]*$"
    with pytest.raises(ValueError, match=message):
        svag.SVAGRMSprop(model.parameters(), lr=0.1, bias_correction=False, fused=True)
    opt = svag.SVAGRMSprop(model[0].parameters(), lr=0.1, fused=True)  # fused Adam with beta1 = 0: accepted
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": model[2].parameters(), "bias_correction": False})
    assert len(opt.param_groups) == 1


def test_functional_rmsprop_on_the_foreach_kernel_equals_its_loop_and_refuses_bias_correction():
    """``svag_rmsprop(foreach=True)`` (torch's RMSprop kernel) is the single-tensor loop to rounding at l = 3;
    with bias correction it is refused in one line (that kernel has none)."""
    from svag.adaptive import svag_rmsprop

    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(4)]
    grads = [torch.randn_like(p) for p in params]
    runs = []
    for foreach in (False, True):
        ps, vs = [p.clone() for p in params], [torch.zeros_like(p) for p in params]
        for k in (1, 2, 3):
            svag_rmsprop(ps, grads, vs, [k, k], lr=0.01, beta=0.9, eps=1e-8, weight_decay=0.1, l=3.0,
                         bias_correction=False, foreach=foreach)  # fmt: skip
        runs.append(ps + vs)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"svag_rmsprop\(foreach=True\) runs torch's RMSprop kernel"):
        svag_rmsprop(params, grads, [torch.zeros_like(p) for p in params], [1, 1], lr=0.01, beta=0.9, eps=1e-8,
                     weight_decay=0.0, l=1.0, foreach=True)  # fmt: skip
