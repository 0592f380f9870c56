"""Cost of G/N from the micro-batches (issue 25) against no estimate and against the extra-batch pair method.

One SGD step (svag.train_step, l = 1, M = 4 micro-batches) of an MLP and a CNN on random data: ``micro``
(micro_noise=True) and ``extra`` (the step plus the gradient of one extra batch of B, the pair method at every
step; the runner draws it on noise_fraction = 2% of steps) as ratios to ``plain``, the median of per-round ratios
over ``--reps`` rounds after warm-up, the three variants interleaved in each round, in one process.
Run: ``python benchmarks/bench_microbatch_noise.py [--reps 50] [--threads 1]``.
"""

import argparse
import statistics
import time

import torch
from torch import nn

import svag


def _models():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = nn.Sequential(nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 32, 5, padding=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32 * 40, 10))  # fmt: skip
    return {"mlp": mlp, "cnn": cnn}


def _ratios(fns: dict, reps: int) -> dict:
    """Median time of each variant and of each one's ratio to the first, timed rep by rep in turn (interleaved:
    a shared, noisy machine slows every variant of one round alike, and the per-round ratio cancels it)."""
    for f in fns.values():
        for _ in range(5):
            f()
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    first = next(iter(fns))
    ratios = {k: statistics.median(a / b for a, b in zip(times[k], times[first])) for k in fns}
    return {"median": {k: statistics.median(v) for k, v in times.items()}, "ratio": ratios}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    B, M = args.batch, 4
    x, y = torch.randn(B, 1, 40, generator=g), torch.randint(0, 10, (B,), generator=g)
    x2 = torch.randn(B, 1, 40, generator=g)
    for name, model in _models().items():
        opt = svag.SVAG(model.parameters(), lr=0.01)
        params = list(model.parameters())

        def loss(b, model=model):
            return nn.functional.cross_entropy(model(b[0]), b[1])

        def plain(opt=opt, loss=loss):
            svag.train_step(opt, loss, (x, y), micro_batches=M)

        def micro(opt=opt, loss=loss):
            svag.train_step(opt, loss, (x, y), micro_batches=M, micro_noise=True)

        def extra(opt=opt, loss=loss, params=params):
            torch.autograd.grad(loss((x2, y)), params)
            svag.train_step(opt, loss, (x, y), micro_batches=M)

        r = _ratios({"plain": plain, "micro": micro, "extra": extra}, args.reps)
        print(f"{name}: B={B} M={M} plain {r['median']['plain'] * 1e3:.2f} ms/step, micro-batch G/N "
              f"{r['ratio']['micro']:.3f}x, extra batch (every step) {r['ratio']['extra']:.3f}x "
              f"(median of per-round ratios, {args.reps} interleaved rounds)")  # fmt: skip


if __name__ == "__main__":
    main()
