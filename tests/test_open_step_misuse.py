"""The open step in a language-model loop (issue 27): the misuses that used to pass without a word.

A nanoGPT-style loop calling ``amplified_backward`` once per micro-batch (each call zeroes ``.grad``, so only the
last micro-batch was kept), a ``torch.optim`` state dict loaded into an SVAG optimizer (its continuous time
restarted at 0, and with it the warm-up), param groups with different ``l`` (time was taken from group 0
only), and the order ``max_norm`` takes the norm in."""

import copy

import pytest
import torch
from torch import nn

import svag

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _batches(seed, n=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 4, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)) for _ in range(2)]


def _loss_fn(model):
    return lambda b: nn.functional.cross_entropy(model(b[0]), b[1])


MAKERS = {
    "svag-l4": lambda p: svag.SVAG(p, lr=0.1, l=4),
    "svag-adamw-l2": lambda p: svag.SVAGAdamW(p, lr=0.01, l=2),
    "torch-adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
}


# -- one amplified_backward per step ----------------------------------------------------------------


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_a_second_amplified_backward_before_step_is_refused_in_one_line(make):
    """The nanoGPT accumulation loop (one call per micro-batch, one step) is refused at the second call, with a
    line that points to ``micro_batches=``; ``.grad`` still holds the first call's gradient."""
    model = _model()
    opt = make(model.parameters())
    svag.amplified_backward(opt, _loss_fn(model), *_batches(0))
    held = [p.grad.clone() for p in model.parameters()]
    message = r"^amplified_backward: called again before optimizer\.step\(\) [^\n]*micro_batches=k[^\n]*$"
    with pytest.raises(RuntimeError, match=message):
        svag.amplified_backward(opt, _loss_fn(model), *_batches(1))
    assert all(torch.equal(p.grad, h) for p, h in zip(model.parameters(), held))
    with pytest.raises(RuntimeError, match=r"^train_step: called again before optimizer\.step\(\)"):
        svag.train_step(opt, _loss_fn(model), *_batches(1))


@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_after_a_step_or_a_zero_grad_the_next_call_is_accepted(make):
    model = _model()
    opt = make(model.parameters())
    loss = _loss_fn(model)
    svag.amplified_backward(opt, loss, *_batches(0))
    opt.step()
    svag.amplified_backward(opt, loss, *_batches(1))  # after step(): a new step
    opt.zero_grad(set_to_none=True)
    svag.amplified_backward(opt, loss, *_batches(2))  # the gradient discarded on purpose
    opt.zero_grad(set_to_none=False)
    svag.amplified_backward(opt, loss, *_batches(3))  # zeroed in place: nothing is lost either
    opt.step()
    svag.train_step(opt, loss, *_batches(4))
    svag.train_step(opt, loss, *_batches(5))


def test_a_step_skipped_by_the_grad_scaler_does_not_block_the_next_call():
    """GradScaler skips ``optimizer.step()`` on inf/nan gradients: the next call goes on (they are lost anyway)."""
    model = _model(dtype=torch.float32)
    opt = svag.SVAG(model.parameters(), lr=0.2, l=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    b1, b2 = _batches(0, dtype=torch.float32)
    svag.amplified_backward(opt, lambda b: _loss_fn(model)(b) * torch.tensor(float("inf")), b1, b2, scaler=scaler)
    scaler.step(opt)  # skipped
    scaler.update()
    assert opt.sde_time == 0.0
    svag.amplified_backward(opt, _loss_fn(model), *_batches(1, dtype=torch.float32), scaler=scaler)
    scaler.step(opt)
    scaler.update()
    assert opt.sde_time == pytest.approx(0.2 / 4)


def test_micro_batches_is_the_accumulation_the_refusal_points_to():
    """What the nanoGPT loop meant: ``micro_batches=4`` on the whole batch is the mean over the four micro-batches
    (float64, 1e-12 against the slow reference: the four gradients averaged)."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x, y), _ = _batches(0, n=16)
    params = list(model.parameters())
    chunks = [torch.autograd.grad(_loss_fn(model)((xc, yc)), params) for xc, yc in zip(x.chunk(4), y.chunk(4))]
    svag.amplified_backward(opt, _loss_fn(model), (x, y), micro_batches=4)
    for i, p in enumerate(params):
        torch.testing.assert_close(p.grad, sum(c[i] for c in chunks) / 4, rtol=1e-12, atol=1e-15)


# -- a torch.optim state dict in an SVAG optimizer --------------------------------------------------


@pytest.mark.parametrize("l", [1.0, 2.0])
def test_a_torch_adamw_state_dict_is_refused_until_its_time_is_said(l):
    """torch.optim.AdamW's state dict has no ``sde_time``: loading it would restart the continuous time (and a
    schedule on it, the warm-up) at 0. Refused in one line naming ``sde_time``, the optimizer left as it was;
    with ``sde_time`` set by the caller it loads, and at l = 1 continues torch's AdamW bit for bit."""
    a, b = _model(), _model()
    torch_opt = torch.optim.AdamW(a.parameters(), lr=0.01, weight_decay=0.1)
    for k in range(3):
        torch_opt.zero_grad()
        _loss_fn(a)(_batches(k)[0]).backward()
        torch_opt.step()
    b.load_state_dict(a.state_dict())
    opt = svag.SVAGAdamW(b.parameters(), lr=0.01, weight_decay=0.1, l=l)
    saved = copy.deepcopy(torch_opt.state_dict())
    message = r"^SVAGAdamW\.load_state_dict: the state_dict has no 'sde_time' [^\n]*restart[^\n]*$"
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(saved)
    assert opt.state_dict()["state"] == {} and opt.sde_time == 0.0
    if l != 1.0:
        with pytest.raises(ValueError, match=r"its moments were built at l = 1, this optimizer has l=2"):
            opt.load_state_dict(saved)
    opt.load_state_dict({**saved, "sde_time": 3 * 0.01**2})  # said: three AdamW steps of η² each
    assert opt.sde_time == 3 * 0.01**2 and opt.param_groups[0]["l"] == l
    if l == 1.0:
        for k in range(3, 6):
            for model, o in ((a, torch_opt), (b, opt)):
                o.zero_grad()
                _loss_fn(model)(_batches(k)[0]).backward()
                o.step()
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_torch_sgd_state_dict_is_refused_by_heavy_ball_sgd_too():
    model = _model()
    saved = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict()
    opt = svag.HeavyBallSGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^HeavyBallSGD\.load_state_dict: the state_dict has no 'sde_time'"):
        opt.load_state_dict(saved)
    opt.load_state_dict({**saved, "sde_time": 0.0})


# -- one l for all param groups ---------------------------------------------------------------------


GROUP_MAKERS = {
    "svag": svag.SVAG,
    "adam": svag.SVAGAdam,
    "adamw": svag.SVAGAdamW,
    "rmsprop": svag.SVAGRMSprop,
}


@pytest.mark.parametrize("make", GROUP_MAKERS.values(), ids=GROUP_MAKERS.keys())
def test_param_groups_with_different_l_are_refused(make):
    """Time is one clock (``sde_time``, the schedules on it): groups that differ in ``l`` would each live in their
    own time. Refused at construction, ``add_param_group`` (the group not kept), ``load_state_dict`` (the optimizer
    unchanged) and at ``step`` when a group's ``l`` was changed in place; groups differing in ``lr`` or decay are
    fine."""
    model = _model()
    first, second = model[0].parameters(), model[2].parameters()
    message = r"^param groups must share one l [^\n]*got l=2 in group 0 and l=8 in group 1[^\n]*$"
    with pytest.raises(ValueError, match=message):
        make([{"params": first, "l": 2.0}, {"params": second, "l": 8.0}], lr=0.01)
    opt = make([{"params": model[0].parameters()}], lr=0.01, l=2.0)
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": model[2].parameters(), "l": 8.0})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": model[2].parameters(), "lr": 0.5, "weight_decay": 0.0})  # same l: fine
    assert opt.param_groups[1]["l"] == 2.0
    state = opt.state_dict()
    state["param_groups"][1]["l"] = 8.0
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert [g["l"] for g in opt.param_groups] == [2.0, 2.0]
    opt.param_groups[1]["l"] = 8.0  # changed in place after construction
    svag.amplified_backward(opt, _loss_fn(model), *_batches(0))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)) and opt.sde_time == 0.0


# -- max_norm's order ------------------------------------------------------------------------------


def test_max_norm_takes_the_norm_in_the_optimizers_group_order():
    """At l = 1 ``max_norm=c`` is ``clip_grad_norm_`` over the parameters **in the optimizer's group order** bit
    for bit (the docstring says so): here the groups list the last layer first (no decay on it, nanoGPT's
    groups), and the clipped gradient equals clipping that order, which may differ from clipping
    ``model.parameters()`` in the last bits."""
    a, b = _model(), _model()
    order_a = [*a[2].parameters(), *a[0].parameters()]
    order_b = [*b[2].parameters(), *b[0].parameters()]
    opt = svag.SVAGAdamW([{"params": order_a[:2], "weight_decay": 0.0}, {"params": order_a[2:]}], lr=0.01)
    batch = _batches(7)[0]
    svag.amplified_backward(opt, _loss_fn(a), batch, max_norm=0.05)
    _loss_fn(b)(batch).backward()
    torch.nn.utils.clip_grad_norm_(order_b, 0.05)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(order_a, order_b))
