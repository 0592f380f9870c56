"""The Gaussian-noise step (NGD / Euler–Maruyama, ``svag.gaussian_step``) against its floor and against SGD.

Prints, for the MLP and the GroupNorm CNN of ``svag.models`` on MNIST-1D-shaped data (``n`` samples,
CPU, float32):
  - one Gaussian step  /  one chunked full-data forward+backward with the same chunk    (goal <= 1.1)
    (the floor: per chunk, the mean loss scaled by k/n, ``backward()`` accumulating into ``p.grad``;
    no noise, no step)
  - one Gaussian step  /  the floor followed by the same SVAG update (what the noise itself costs:
    the draw of n normals, the per-sample losses, the bookkeeping)
  - one Gaussian step  /  n/B plain SGD steps at batch B (what the same data costs as an epoch of SGD)
Timings are interleaved (A, B, C, A, B, C, ...) in rounds and the ratio of medians is reported, so
load on a shared machine affects every side alike; they are this thread's CPU time
(``time.thread_time``, ``--clock wall`` for ``perf_counter``), which time spent waiting for a core
on a busy machine does not inflate. Run with one thread:

    OMP_NUM_THREADS=1 python benchmarks/bench_gaussian.py [--n 2048] [--chunk 512] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import svag
from svag.gaussian import gaussian_step
from svag.models import build_model
from svag.seeds import generator
from svag.task import make_task

CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def _timed(fn, repeats: int) -> float:
    t0 = clock()
    for _ in range(repeats):
        fn()
    return (clock() - t0) / repeats


def measure(model_name: str, norm: str, n: int, chunk: int, batch: int, rounds: int, repeats: int) -> dict:
    torch.manual_seed(0)
    x, y = torch.randn(n, 1, 40), torch.randint(0, 10, (n,))
    task = make_task("cross_entropy", 10)

    def make():
        torch.manual_seed(0)
        return build_model(model_name, input_shape=(1, 40), num_classes=10, norm=norm)

    floor_model, gauss_model, sgd_model, update_model = make(), make(), make(), make()
    floor_params = [p for p in floor_model.parameters() if p.requires_grad]
    update_params = [p for p in update_model.parameters() if p.requires_grad]
    update_opt = svag.SVAG(update_params, lr=1e-4, l=4.0)
    gauss_opt = svag.SVAG(gauss_model.parameters(), lr=1e-4, l=4.0)
    sgd_opt = svag.SVAG(sgd_model.parameters(), lr=1e-4, l=1.0)
    gen = generator(0, "gaussian")

    def floor():
        for p in floor_params:
            p.grad = None
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            (task.loss(floor_model(xb), yb) * (len(xb) / n)).backward()

    def floor_update():  # the floor, then the update a Gaussian step makes (its gradient declared amplified)
        for p in update_params:
            p.grad = None
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            (task.loss(update_model(xb), yb) * (len(xb) / n)).backward()
        update_opt.mark_amplified()
        update_opt.step()

    def gauss():
        gaussian_step(gauss_opt, gauss_model, task, (x, y), batch_size=batch, generator=gen, chunk=chunk)

    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))

    def sgd_epoch():
        for start in range(0, n - batch + 1, batch):
            idx = order[start : start + batch]
            svag.train_step(sgd_opt, lambda b: task.loss(sgd_model(b[0]), b[1]), (x[idx], y[idx]))

    cases = {"floor": floor, "floor_update": floor_update, "gauss": gauss, "sgd_epoch": sgd_epoch}
    for fn in cases.values():  # warm-up
        _timed(fn, 2)
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            samples[k].append(_timed(fn, repeats))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "gauss / floor": med["gauss"] / med["floor"],
        "gauss / floor+update": med["gauss"] / med["floor_update"],
        "gauss / SGD epoch": med["gauss"] / med["sgd_epoch"],
        "gauss ms": 1e3 * med["gauss"],
        "floor ms": 1e3 * med["floor"],
        "SGD epoch ms": 1e3 * med["sgd_epoch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="training samples of the full-batch pass")
    parser.add_argument("--chunk", type=int, default=512, help="samples per forward/backward of both sides")
    parser.add_argument("--batch-size", type=int, default=32, help="B of the simulated SGD (its epoch: n/B steps)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=5, help="calls timed together within a round")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="thread CPU time or wall time")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), n {args.n}, chunk {args.chunk}, "
          f"B {args.batch_size}, {args.clock} time")  # fmt: skip
    print(f"{'model':8s} {'Gauss/floor':>12s} {'Gauss/(floor+update)':>21s} {'Gauss/SGD epoch':>16s} "
          f"{'Gauss ms':>9s} {'floor ms':>9s} {'SGD epoch ms':>13s}")  # fmt: skip
    for name, model, norm in (("mlp", "mlp", "none"), ("gn-cnn", "cnn", "gn")):
        r = measure(model, norm, args.n, args.chunk, args.batch_size, args.rounds, args.repeats)
        print(f"{name:8s} {r['gauss / floor']:12.3f} {r['gauss / floor+update']:21.3f} {r['gauss / SGD epoch']:16.3f} "
              f"{r['gauss ms']:9.2f} {r['floor ms']:9.2f} {r['SGD epoch ms']:13.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
