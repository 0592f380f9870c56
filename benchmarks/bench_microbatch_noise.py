"""Cost of G/N from the micro-batches (issue 25) against no estimate and against the extra-batch pair method.

One SGD step (svag.train_step, l = 1, M = 4 micro-batches) of an MLP at two widths, a CNN and the character
GPT at two widths on random data: ``micro`` (micro_noise=True on every step), ``micro/10`` (micro_noise=True on
the first of 10 steps: a round is 10 steps and every variant runs 10 steps), and ``extra`` (the step plus the
gradient of one extra batch of B, the pair method at every step; the runner draws it on noise_fraction = 2% of
steps) as ratios to ``plain``, the median of per-round ratios over ``--reps`` rounds after warm-up, the variants
interleaved in each round (their order rotating from round to round), in one process. Times are this process's
CPU time (``time.process_time``, one PyTorch thread): on a shared machine, waiting for a core does not count.
Run: ``python benchmarks/bench_microbatch_noise.py [--reps 30] [--threads 1]``.
"""

import argparse
import statistics
import time

import torch
from torch import nn

import svag
from svag.models.gpt import CharGPT, GPTConfig


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))  # fmt: skip


class _GPTLoss(nn.Module):
    """The character GPT with its mean next-character loss as ``model((idx, targets))``."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.gpt = CharGPT(
            GPTConfig(30, block_size=32, n_layer=2, n_head=2, n_embd=n_embd), torch.Generator().manual_seed(0)
        )

    def forward(self, idx, targets):
        return self.gpt(idx, targets)[1]


def _models(batch: int, g: torch.Generator) -> dict:
    """name → (model, loss on a batch, batch, extra batch): MNIST-1D-shaped data, character windows for the GPT."""
    x, y = torch.randn(batch, 1, 40, generator=g), torch.randint(0, 10, (batch,), generator=g)
    x2 = torch.randn(batch, 1, 40, generator=g)
    cnn = nn.Sequential(nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32 * 40, 10))  # fmt: skip
    out = {}
    for name, model in {"mlp-256": _mlp(256), "mlp-1024": _mlp(1024), "cnn": cnn}.items():
        out[name] = (model, lambda b, m=model: nn.functional.cross_entropy(m(b[0]), b[1]), (x, y), (x2, y))
    for width in (32, 128):
        idx = [torch.randint(0, 30, (batch, 32), generator=g) for _ in range(3)]
        model = _GPTLoss(width)
        out[f"gpt-{width}"] = (model, lambda b, m=model: m(*b), (idx[0], idx[1]), (idx[2], idx[1]))
    return out


def _ratios(fns: dict, reps: int) -> dict:
    """Median CPU time of each variant and of each one's ratio to the first, timed rep by rep in turn (interleaved:
    a shared, noisy machine slows every variant of one round alike, and the per-round ratio cancels it)."""
    for f in fns.values():
        for _ in range(5):
            f()
    times: dict = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):  # the order rotates round by round: no variant always follows the same one
        for k in names[r % len(names) :] + names[: r % len(names)]:
            f = fns[k]
            t = time.process_time()
            f()
            times[k].append(time.process_time() - t)
    first = next(iter(fns))
    ratios = {k: statistics.median(a / b for a, b in zip(times[k], times[first])) for k in fns}
    return {"median": {k: statistics.median(v) for k, v in times.items()}, "ratio": ratios}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    B, M, k = args.batch, 4, 10
    for name, (model, loss, batch, batch2) in _models(B, g).items():
        opt = svag.SVAG(model.parameters(), lr=0.01)
        params = list(model.parameters())

        def plain(opt=opt, loss=loss, batch=batch):
            for _ in range(k):
                svag.train_step(opt, loss, batch, micro_batches=M)

        def micro(opt=opt, loss=loss, batch=batch):
            for _ in range(k):
                svag.train_step(opt, loss, batch, micro_batches=M, micro_noise=True)

        def micro_kth(opt=opt, loss=loss, batch=batch):
            for i in range(k):
                svag.train_step(opt, loss, batch, micro_batches=M, micro_noise=i == 0)

        def extra(opt=opt, loss=loss, batch=batch, batch2=batch2, params=params):
            for _ in range(k):
                torch.autograd.grad(loss(batch2), params)
                svag.train_step(opt, loss, batch, micro_batches=M)

        r = _ratios({"plain": plain, "micro": micro, "micro_kth": micro_kth, "extra": extra}, args.reps)
        n = sum(p.numel() for p in params)
        print(f"{name} ({n / 1e3:.0f}k parameters): B={B} M={M} plain {r['median']['plain'] / k * 1e3:.2f} ms/step, "
              f"micro-batch G/N every step {r['ratio']['micro']:.3f}x, "
              f"every {k}th step {r['ratio']['micro_kth']:.3f}x, "
              f"extra batch every step {r['ratio']['extra']:.3f}x (median of per-round ratios, {args.reps} interleaved "
              f"rounds of {k} steps)")  # fmt: skip


if __name__ == "__main__":
    main()
