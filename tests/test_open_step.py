"""The open step (issue 16): ``svag.amplified_backward`` with clipping, GradScaler, autocast, micro-batches and
DDP's no_sync; one loss convention; the refusal of a step whose gradient was not amplified."""

import contextlib
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import svag
from svag.amplify import coefficients

pytestmark = pytest.mark.determinism  # bit-for-bit claims: run at one and at two threads (conftest)


def _model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _batches(seed, n=10, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 4, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)) for _ in range(2)]


def _loss_fn(model):
    return lambda b: nn.functional.cross_entropy(model(b[0]), b[1])


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


# -- the open form and train_step ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["accumulate", "fused", "reference"])
@pytest.mark.parametrize("l", [1.0, 4.0])
def test_train_step_is_amplified_backward_then_step(mode, l):
    a, b = _model(), _model()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.2, l=l), svag.SVAG(b.parameters(), lr=0.2, l=l)
    for k in range(4):
        b1, b2 = _batches(k)
        out_a = svag.train_step(opt_a, _loss_fn(a), b1, b2, mode=mode)
        out_b = svag.amplified_backward(opt_b, _loss_fn(b), b1, b2, mode=mode)
        opt_b.step()
        assert torch.equal(out_a.loss1, out_b.loss1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert opt_a.sde_time == opt_b.sde_time == pytest.approx(4 * 0.2 / l)


@pytest.mark.parametrize("mode", ["accumulate", "fused", "reference"])
@pytest.mark.parametrize("l", [1.0, 4.0])
@pytest.mark.parametrize("k", [2, 3])
def test_micro_batches_equal_the_unchunked_step_in_float64(mode, l, k):
    """k chunks of a batch of 10 (3 does not divide it: chunks 4, 3, 3 weighted by n_c/B): the same
    gradient and the same reported losses up to float64 rounding, over 5 steps."""
    a, b = _model(), _model()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.3, l=l), svag.SVAG(b.parameters(), lr=0.3, l=l)
    for step in range(5):
        b1, b2 = _batches(step)
        out_a = svag.train_step(opt_a, _loss_fn(a), b1, b2, mode=mode)
        out_b = svag.train_step(opt_b, _loss_fn(b), b1, b2, mode=mode, micro_batches=k)
        torch.testing.assert_close(out_a.loss1, out_b.loss1, rtol=1e-13, atol=0)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_micro_batches_bad_values():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    b1, b2 = _batches(0)
    with pytest.raises(ValueError, match="micro_batches must be an integer >= 1, got 0"):
        svag.amplified_backward(opt, _loss_fn(model), b1, b2, micro_batches=0)
    with pytest.raises(ValueError, match="micro_batches=11 is more than the batch size 10"):
        svag.amplified_backward(opt, _loss_fn(model), b1, b2, micro_batches=11)
    with pytest.raises(ValueError, match=r"share one leading size; got sizes \[5, 10\]"):
        svag.amplified_backward(opt, _loss_fn(model), (b1[0], b1[1][:5]), b2, micro_batches=2)


# -- mixed precision --------------------------------------------------------------------------


@pytest.mark.parametrize("l", [1.0, 4.0])
def test_grad_scaler_on_cpu_gives_the_unscaled_step_and_unscaled_losses(l):
    """GradScaler("cpu") (torch >= 2.3): backward of scale·a·loss, scaler.step unscales (a power of 2:
    exact) and steps. Same parameters as without the scaler (float32, within 1 ulp-level 1e-7) and the
    reported losses are the unscaled ones."""
    a, b = _model(dtype=torch.float32), _model(dtype=torch.float32)
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.2, l=l), svag.SVAG(b.parameters(), lr=0.2, l=l)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for step in range(4):
        b1, b2 = _batches(step, dtype=torch.float32)
        out_a = svag.train_step(opt_a, _loss_fn(a), b1, b2)
        out_b = svag.amplified_backward(opt_b, _loss_fn(b), b1, b2, scaler=scaler)
        scaler.step(opt_b)
        scaler.update()
        assert torch.equal(out_a.loss1, out_b.loss1) and out_b.loss1 < 10  # not 4096·loss
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert opt_b.sde_time == pytest.approx(opt_a.sde_time)


def test_grad_scaler_skips_a_step_with_inf_and_no_time_passes():
    model = _model(dtype=torch.float32)
    opt = svag.SVAG(model.parameters(), lr=0.2, l=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    before = _params(model)
    b1, b2 = _batches(0, dtype=torch.float32)
    svag.amplified_backward(opt, lambda b: _loss_fn(model)(b) * torch.tensor(float("inf")), b1, b2, scaler=scaler)
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert opt.sde_time == 0.0 and scaler.get_scale() == 2.0**11


def test_fp16_autocast_with_grad_scaler_and_bf16_autocast_follow_float32():
    """fp16 autocast + GradScaler and bf16 autocast (both run on CPU) give the float32 gradient up to their
    rounding: relative error of the amplified gradient (l = 4) below 2e-2 (bf16 has 8 bits of mantissa)."""
    b1, b2 = _batches(0, n=64, dtype=torch.float32)
    ref_model = _model(dtype=torch.float32)
    ref_opt = svag.SVAG(ref_model.parameters(), lr=0.1, l=4)
    svag.amplified_backward(ref_opt, _loss_fn(ref_model), b1, b2)
    ref = torch.cat([p.grad.flatten() for p in ref_model.parameters()])
    for dtype, scaler in ((torch.bfloat16, None), (torch.float16, torch.amp.GradScaler("cpu", init_scale=2.0**8))):
        model = _model(dtype=torch.float32)
        opt = svag.SVAG(model.parameters(), lr=0.1, l=4)

        def loss_fn(b, model=model, dtype=dtype):
            with torch.autocast("cpu", dtype=dtype):
                return nn.functional.cross_entropy(model(b[0]), b[1])

        svag.amplified_backward(opt, loss_fn, b1, b2, scaler=scaler)
        if scaler is not None:
            scaler.unscale_(opt)
        got = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert got.dtype == torch.float32
        assert float((got - ref).norm() / ref.norm()) < 2e-2, dtype


# -- clipping ---------------------------------------------------------------------------------


def test_max_norm_at_l1_is_torch_clip_grad_norm_bit_for_bit():
    a, b = _model(), _model()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.5), torch.optim.SGD(b.parameters(), lr=0.5)
    for step in range(5):
        b1, _ = _batches(step)
        svag.train_step(opt_a, _loss_fn(a), b1, max_norm=0.05)
        opt_b.zero_grad()
        _loss_fn(b)(b1).backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 0.05)
        opt_b.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("l", [2.0, 4.0])
def test_max_norm_clips_each_batch_gradient_before_the_combination(l):
    """The slow reference: g1, g2 by autograd.grad, each clipped to c, then a1·clip(g1) + a2·clip(g2)."""
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=l)
    b1, b2 = _batches(3)
    c = 0.02
    params = list(model.parameters())
    expected = []
    clipped = []
    for b in (b1, b2):
        g = torch.autograd.grad(_loss_fn(model)(b), params)
        norm = torch.sqrt(sum((t * t).sum() for t in g))
        assert norm > c  # both are clipped
        clipped.append([t * (c / (norm + 1e-6)) for t in g])
    a1, a2 = coefficients(l)
    expected = [a1 * x + a2 * y for x, y in zip(*clipped)]
    out = svag.amplified_backward(opt, _loss_fn(model), b1, b2, max_norm=c, return_grads=True)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-15)
    raw = torch.autograd.grad(_loss_fn(model)(b1), params)
    assert all(torch.equal(g, r) for g, r in zip(out.grads[0], raw))  # the returned grads are unclipped


def test_max_norm_with_grad_scaler_uses_the_unscaled_threshold():
    a, b = _model(dtype=torch.float32), _model(dtype=torch.float32)
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.5, l=4), svag.SVAG(b.parameters(), lr=0.5, l=4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    b1, b2 = _batches(1, dtype=torch.float32)
    svag.train_step(opt_a, _loss_fn(a), b1, b2, max_norm=0.03)
    svag.amplified_backward(opt_b, _loss_fn(b), b1, b2, max_norm=0.03, scaler=scaler)
    scaler.step(opt_b)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_bad_max_norm():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=2)
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0 or None, got -1"):
        svag.amplified_backward(opt, _loss_fn(model), *_batches(0), max_norm=-1)


# -- DDP's no_sync ----------------------------------------------------------------------------


class _CountingNoSync:
    def __init__(self):
        self.inside = False

    @contextlib.contextmanager
    def __call__(self):
        self.inside = True
        yield
        self.inside = False


@pytest.mark.parametrize(("mode", "extra", "synced"), [("accumulate", {}, 1), ("reference", {}, 2),
                                                       ("accumulate", {"max_norm": 1.0}, 2)])  # fmt: skip
def test_no_sync_leaves_one_backward_per_needed_all_reduce(mode, extra, synced):
    """3 micro-batches × 2 batches = 6 backwards; only the last (or each batch's last, when the two batch
    gradients are needed apart) runs outside no_sync, i.e. with DDP's all-reduce."""
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=4)
    no_sync = _CountingNoSync()
    outside = []
    model[0].weight.register_hook(lambda g: outside.append(not no_sync.inside))
    svag.amplified_backward(opt, _loss_fn(model), *_batches(0), mode=mode, micro_batches=3, no_sync=no_sync, **extra)
    assert len(outside) == 6 and sum(outside) == synced


def test_no_sync_with_fused_mode_is_refused():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=4)
    with pytest.raises(ValueError, match="no_sync needs mode='accumulate'"):
        svag.amplified_backward(opt, _loss_fn(model), *_batches(0), mode="fused", no_sync=contextlib.nullcontext)


_DDP_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from torch import nn
    import svag

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_default_dtype(torch.float64)  # as the test suite's conftest
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    ddp = nn.parallel.DistributedDataParallel(model)
    calls = []

    def hook(state, bucket):
        calls.append(1)
        fut = dist.all_reduce(bucket.buffer().div_(2), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0])

    ddp.register_comm_hook(None, hook)
    opt = svag.SVAG(ddp.parameters(), lr=0.1, l=4)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
               for _ in range(2)]
    shard = [(x[rank * 4:(rank + 1) * 4], y[rank * 4:(rank + 1) * 4]) for x, y in batches]
    loss_fn = lambda b: nn.functional.cross_entropy(ddp(b[0]), b[1])
    svag.amplified_backward(opt, loss_fn, *shard, micro_batches=2, no_sync=ddp.no_sync)
    if rank == 0:
        grads = [p.grad.flatten().tolist() for p in model.parameters()]
        json.dump({"calls": len(calls), "grads": grads}, open(sys.argv[1], "w"))
    dist.barrier()  # neither rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
    """
)


@pytest.mark.slow  # ~10-25 s (two processes); fast twin: test_no_sync_leaves_one_backward_per_needed_all_reduce
def test_ddp_no_sync_all_reduces_once_and_equals_one_process(tmp_path):
    """Real DDP, 2 gloo processes, l = 4, 2 micro-batches per shard of 4 (global B = 8), float64: one bucket
    all-reduce per step (not 4), and the gradient of the single-process step on the global batches."""
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path / "out.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["calls"] == 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=4)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
               for _ in range(2)]  # fmt: skip
    svag.amplified_backward(opt, _loss_fn(model), *batches)
    for p, flat in zip(model.parameters(), got["grads"]):
        torch.testing.assert_close(p.grad.flatten(), torch.tensor(flat, dtype=torch.float64), rtol=1e-12, atol=1e-14)


# -- one loss convention ----------------------------------------------------------------------


class _TupleModel(nn.Module):
    """Returns ``(logits, loss)`` as language models do."""

    def __init__(self):
        super().__init__()
        self.net = _model()

    def forward(self, x, y=None):
        logits = self.net(x)
        return logits, None if y is None else nn.functional.cross_entropy(logits, y)


@pytest.mark.parametrize("l", [1.0, 4.0])
@pytest.mark.parametrize("wrap", ["tuple", "list", "dict", "attr"])
def test_loss_fn_may_return_logits_and_loss(l, wrap):
    """``(logits, loss)`` (the l = 1 case used to fail with 'tuple' object has no attribute 'backward'),
    ``[logits, loss]``, ``{"loss": ...}`` and an object with ``.loss``: the same step as the bare loss."""
    a, b = _TupleModel(), _TupleModel()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.2, l=l), svag.SVAG(b.parameters(), lr=0.2, l=l)

    def wrapped(batch):
        logits, loss = b(*batch)
        if wrap == "tuple":
            return logits, loss
        if wrap == "list":
            return [logits, loss]
        if wrap == "dict":
            return {"logits": logits, "loss": loss}
        return type("Out", (), {"logits": logits, "loss": loss})()

    for k in range(3):
        b1, b2 = _batches(k)
        svag.train_step(opt_a, lambda batch: a(*batch)[1], b1, b2)
        svag.train_step(opt_b, wrapped, b1, b2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize(
    ("returned", "said"),
    [
        (lambda lg, ls: lg, r"a tensor of shape \(\d+, 3\)"),
        (lambda lg, ls: (ls, ls * 2), r"a tuple of \(a tensor of shape \(\), a tensor of shape \(\)\)"),
        (lambda lg, ls: float(ls.detach()), "a float"),
    ],
)
def test_a_loss_fn_returning_something_else_says_what_in_one_line(returned, said):
    model = _TupleModel()
    opt = svag.SVAG(model.parameters(), lr=0.2, l=2)
    for fn in (
        lambda: svag.train_step(opt, lambda b: returned(*model(*b)), *_batches(0)),
        lambda: svag.measure_noise(model, lambda b: returned(*model(*b)), _batches(0, n=32)[0], 4, m=4),
    ):
        with pytest.raises(ValueError, match=f"loss_fn returned {said}; expected a scalar mean-loss tensor") as err:
            fn()
        assert "\n" not in str(err.value)


def test_measure_noise_takes_the_train_step_loss_fn():
    """The same callable as train_step, returning (logits, loss), gives the same G and N as the
    (outputs, targets) convention on the same draws (same generator seed)."""
    model = _TupleModel()
    data = _batches(0, n=64)[0]
    ref = svag.measure_noise(
        model, lambda out, y: nn.functional.cross_entropy(out[0], y), data, 8, m=10,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    got = svag.measure_noise(model, lambda b: model(*b), data, 8, m=10, generator=torch.Generator().manual_seed(1))
    assert (got.G, got.N) == (ref.G, ref.N)
    with pytest.raises(ValueError, match="method='per_sample' needs loss_fn\\(outputs, targets\\)"):
        svag.measure_noise(model, lambda b: model(*b), data, 8, method="per_sample")


# -- the footgun: a step at l > 1 on a gradient that was not amplified ------------------------------


@pytest.mark.parametrize("make", [lambda p: svag.SVAG(p, lr=0.1, l=4), lambda p: svag.SVAGAdamW(p, lr=0.01, l=2)])
def test_a_plain_backward_at_l_above_1_is_refused_in_one_line(make):
    model = _model()
    opt = make(model.parameters())
    before = _params(model)
    _loss_fn(model)(_batches(0)[0]).backward()
    with pytest.raises(RuntimeError, match=r"step\(\) at l=\d: p.grad did not come from svag.amplified_backward"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)) and opt.sde_time == 0.0
    # a declaration covers one step: after a train_step, a plain backward is refused again
    svag.train_step(opt, _loss_fn(model), *_batches(1))
    opt.zero_grad(set_to_none=True)
    _loss_fn(model)(_batches(2)[0]).backward()
    with pytest.raises(RuntimeError, match=r"did not come from svag\.amplified_backward"):
        opt.step()


def test_in_place_changes_keep_the_declaration_and_the_opt_outs_work():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1, l=4)
    svag.amplified_backward(opt, _loss_fn(model), *_batches(0))
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-3)  # in place: still the amplified gradient
    opt.step()
    _loss_fn(model)(_batches(1)[0]).backward()
    opt.mark_amplified()  # a user who built the gradient declares it
    opt.step()
    opt.zero_grad()
    opt.check_amplified = False  # or turns the check off
    _loss_fn(model)(_batches(2)[0]).backward()
    opt.step()
    assert opt.sde_time == pytest.approx(3 * 0.1 / 4)


def test_at_l1_a_plain_backward_is_sgd_and_is_not_refused():
    a, b = _model(), _model()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.3), torch.optim.SGD(b.parameters(), lr=0.3)
    for model, opt in ((a, opt_a), (b, opt_b)):
        for k in range(3):
            opt.zero_grad()
            _loss_fn(model)(_batches(k)[0]).backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# -- G/N from the micro-batches (issue 25) -------------------------------------------------------


def _chunk_grads(model, batch, k):
    """Slow reference: each micro-batch's mean-loss gradient by its own autograd.grad call."""
    params = list(model.parameters())
    return [
        list(torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params))
        for x, y in zip(batch[0].chunk(k), batch[1].chunk(k))
    ]


@pytest.mark.parametrize("mode", ["accumulate", "fused", "reference"])
@pytest.mark.parametrize("l", [1.0, 4.0])
def test_micro_noise_equals_from_microbatches_and_keeps_the_step(mode, l):
    """float64, B = 12, M = 4: StepOutput.noise equals from_microbatches of the 4 chunk gradients of batch 1
    (1e-10), and the update equals the micro-batched step without micro_noise (1e-12)."""
    a, b = _model(), _model()
    opt_a, opt_b = svag.SVAG(a.parameters(), lr=0.3, l=l), svag.SVAG(b.parameters(), lr=0.3, l=l)
    for step in range(3):
        b1, b2 = _batches(step, n=12)
        want = svag.noise.from_microbatches(_chunk_grads(b, b1, 4))
        out_a = svag.train_step(opt_a, _loss_fn(a), b1, b2, mode=mode, micro_batches=4)
        out_b = svag.train_step(opt_b, _loss_fn(b), b1, b2, mode=mode, micro_batches=4, micro_noise=True)
        assert out_a.noise is None
        assert out_b.noise == pytest.approx(want, rel=1e-10, abs=1e-14)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_micro_noise_under_a_grad_scaler_is_unscaled():
    model = _model(dtype=torch.float32)
    opt = svag.SVAG(model.parameters(), lr=0.1)
    b1, _ = _batches(0, n=8, dtype=torch.float32)
    want = svag.noise.from_microbatches(_chunk_grads(model, b1, 2))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    out = svag.amplified_backward(opt, _loss_fn(model), b1, micro_batches=2, micro_noise=True, scaler=scaler)
    assert out.noise == pytest.approx(want, rel=1e-4, abs=1e-7)


def test_micro_noise_refusals():
    model = _model()
    opt = svag.SVAG(model.parameters(), lr=0.1)
    b1, _ = _batches(0)  # B = 10
    with pytest.raises(ValueError, match="micro_noise needs micro_batches >= 2, got 1"):
        svag.amplified_backward(opt, _loss_fn(model), b1, micro_noise=True)
    with pytest.raises(ValueError, match=r"micro_noise needs equal micro-batches: micro_batches=3 must divide"):
        svag.amplified_backward(opt, _loss_fn(model), b1, micro_batches=3, micro_noise=True)
    with pytest.raises(ValueError, match="micro_noise cannot run with no_sync"):
        svag.amplified_backward(opt, _loss_fn(model), b1, micro_batches=2, micro_noise=True,
                                no_sync=contextlib.nullcontext)  # fmt: skip


def test_plain_accumulation_loop_recipe():
    """The MicroBatchSums docstring's 3-line recipe in a user's own loop (torch.optim.SGD, l = 1) gives the
    same (Ĝ, N̂) as from_microbatches and as amplified_backward's micro_noise (float64, 1e-10)."""
    model, M = _model(), 3
    params = list(model.parameters())
    x, y = _batches(1, n=12)[0]
    want = svag.noise.from_microbatches(_chunk_grads(model, (x, y), M))
    acc = svag.NoiseAccumulator()
    sums = svag.noise.MicroBatchSums()
    for xb, yb in zip(x.chunk(M), y.chunk(M)):
        before = [p.grad.clone() if p.grad is not None else None for p in params]
        (nn.functional.cross_entropy(model(xb), yb) / M).backward()
        sums.add([p.grad - (0 if b is None else b) for p, b in zip(params, before)], scale=1 / M)
    acc.add(*sums.result([p.grad for p in params]))
    res = acc.result()
    assert (res.G, res.N) == pytest.approx(want, rel=1e-10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = svag.amplified_backward(opt, _loss_fn(model), (x, y), micro_batches=M, micro_noise=True)
    assert out.noise == pytest.approx(want, rel=1e-10)
