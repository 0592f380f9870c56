"""The kernels' step counters (issue 27): torch's foreach/fused kernels count steps in scalar tensors they increment
themselves; SVAG's state keeps the int count k (what ``state_dict`` saves), and the tensors of a group's last kernel
step are reused while they hold k − 1 of the same parameters, so a step makes no tensor. These tests hold the cache
to the ints: bit for bit torch's optimizer at l = 1 across everything that invalidates it."""

import copy
import pickle

import pytest
import torch

import svag
import svag.adaptive
from helpers import tiny_loss, tiny_mlp

KERNELS = [{"foreach": True}, {"fused": True}]


def _step(model, opt, k, skip=None):
    opt.zero_grad()
    tiny_loss(model, k).backward()
    if skip is not None:
        list(model.parameters())[skip].grad = None  # a parameter without a gradient this step
    opt.step()


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("make", [
    lambda p, **f: svag.SVAGAdamW(p, lr=0.01, weight_decay=0.1, **f),
    lambda p, **f: svag.SVAGAdam(p, lr=0.01, l=2, **f),
    lambda p, **f: svag.SVAGRMSprop(p, lr=0.01, **f),
    lambda p, **f: svag.SVAGRMSprop(p, lr=0.01, bias_correction=False, foreach=True),
])  # fmt: skip
@pytest.mark.parametrize("flags", KERNELS)
def test_a_kernel_step_makes_no_step_tensor(monkeypatch, make, flags):
    """Six steps build the counters once (the first step); the old path built one tensor per parameter per step."""
    made = []
    real = svag.adaptive.kernel_step_tensors

    def spy(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(svag.adaptive, "kernel_step_tensors", spy)
    model = tiny_mlp()
    opt = make(model.parameters(), **flags)
    opt.check_amplified = False
    for k in range(6):
        _step(model, opt, k)
    assert len(made) == 1
    assert all(s["step"] == 6 and isinstance(s["step"], int) for s in opt.state.values())


@pytest.mark.parametrize("flags", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_counters_follow_the_state_bit_for_bit(flags, dtype):
    """At l = 1 against torch.optim.AdamW with the same flag, 14 steps through everything that invalidates the
    counters: a parameter without a gradient (its count stays behind), a state dict of 2 steps earlier loaded into
    both (the counts go back), a switch to the single-tensor path and back, and a deep copy and a pickle of both."""
    a, b = tiny_mlp(dtype=dtype), tiny_mlp(dtype=dtype)
    opt_a = svag.SVAGAdamW(a.parameters(), lr=0.01, weight_decay=0.1, **flags)
    opt_b = torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=0.1, **flags)
    pairs = [(a, opt_a), (b, opt_b)]
    for k in range(3):
        for model, opt in pairs:
            _step(model, opt, k, skip=1 if k == 1 else None)
    saved = [(copy.deepcopy(m.state_dict()), copy.deepcopy(o.state_dict())) for m, o in pairs]
    for k in range(3, 5):
        for model, opt in pairs:
            _step(model, opt, k)
    for (model, opt), (m_state, o_state) in zip(pairs, saved):  # back two steps
        model.load_state_dict(m_state)
        opt.load_state_dict(o_state)
    for k in range(5, 9):
        for model, opt in pairs:
            if k == 6:
                opt.param_groups[0].update(foreach=False, fused=False)
            if k == 7:
                opt.param_groups[0].update(foreach=flags.get("foreach"), fused=flags.get("fused"))
            _step(model, opt, k)
    assert _same(a, b)
    for copier in (copy.deepcopy, lambda x: pickle.loads(pickle.dumps(x))):
        (a, opt_a), (b, opt_b) = [copier(pair) for pair in pairs]
        pairs = [(a, opt_a), (b, opt_b)]
        for k in range(9, 12):
            for model, opt in pairs:
                _step(model, opt, k)
    assert _same(a, b)
    counts = [s["step"] for s in opt_a.state.values()]
    assert counts == [13, 12, 13, 13]  # 3 saved, 2 undone by the load, 4 + 3 + 3 more; the first bias skipped one
