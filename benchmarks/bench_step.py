"""SVAG training step vs plain PyTorch steps, measured side by side in one run.

Prints, for an MLP and a small BatchNorm CNN on MNIST-1D-shaped data (CPU):
  - one SVAG step at l > 1  /  two plain forward+backward+SGD steps  (target <= 1.05),
    for the default mode ("accumulate") and for "fused" (one backward of the amplified loss)
  - one SVAG step at l = 1  /  one plain SGD step                    (target <= 1.05)
Timings are interleaved (A, B, A, B, ...) in rounds and the ratio of medians is reported,
so load on a shared machine affects both sides alike.

    python benchmarks/bench_step.py [--batch-size 128] [--rounds 15] [--steps 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import svag


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )  # fmt: skip


def bn_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
        nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


def _timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def measure(make, batch: int, rounds: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(4 * batch, 1, 40)
    y = torch.randint(0, 10, (4 * batch,))
    b1, b2 = (x[:batch], y[:batch]), (x[batch : 2 * batch], y[batch : 2 * batch])
    b3 = (x[2 * batch : 3 * batch], y[2 * batch : 3 * batch])

    plain = make()
    sgd = torch.optim.SGD(plain.parameters(), lr=1e-3)

    def plain_step(b):
        sgd.zero_grad(set_to_none=True)
        F.cross_entropy(plain(b[0]), b[1]).backward()
        sgd.step()

    models = {key: make() for key in ("l1", "l4", "l4f")}
    opts = {k: svag.SVAG(m.parameters(), lr=1e-3, l=1.0 if k == "l1" else 4.0) for k, m in models.items()}
    loss_fns = {k: (lambda b, m=m: F.cross_entropy(m(b[0]), b[1])) for k, m in models.items()}

    cases = {
        "plain_1": lambda: plain_step(b1),
        "plain_2": lambda: (plain_step(b1), plain_step(b3)),
        "svag_l1": lambda: svag.train_step(opts["l1"], loss_fns["l1"], b1, b2),
        "svag_l4": lambda: svag.train_step(opts["l4"], loss_fns["l4"], b1, b2),
        "svag_l4f": lambda: svag.train_step(opts["l4f"], loss_fns["l4f"], b1, b2, mode="fused"),
    }
    for fn in cases.values():  # warm-up
        _timed(fn, 5)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            samples[k].append(_timed(fn, steps))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "svag_l4 / 2 plain": med["svag_l4"] / med["plain_2"],
        "fused / 2 plain": med["svag_l4f"] / med["plain_2"],
        "svag_l1 / 1 plain": med["svag_l1"] / med["plain_1"],
        "plain step ms": 1e3 * med["plain_1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"{'model':10s} {'SVAG(l=4)/2 SGD':>16s} {'fused/2 SGD':>12s} {'SVAG(l=1)/SGD':>14s} {'SGD step ms':>12s}")
    for name, make in (("mlp", mlp), ("bn-cnn", bn_cnn)):
        r = measure(make, args.batch_size, args.rounds, args.steps)
        print(
            f"{name:10s} {r['svag_l4 / 2 plain']:16.3f} {r['fused / 2 plain']:12.3f} {r['svag_l1 / 1 plain']:14.3f} "
            f"{r['plain step ms']:12.3f}"
        )


if __name__ == "__main__":
    main()
