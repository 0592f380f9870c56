"""Training through DataLoader workers (``--loader-workers N``) vs the in-memory path, side by side.

The runner trains the MNIST-1D CNN (BatchNorm, B = 32, 4000 samples) once indexing in-memory
tensors and once loading the same batches with ``loader_workers`` worker processes
(:mod:`svag.data.loader`); both produce the same records bit for bit (tests/data/test_loader.py), so
only the speed differs. Rounds alternate (memory, loader, memory, loader, ...) so that load on a
shared machine affects both alike; each round is a fresh ``svag.runner.run``.

What is timed: every call of ``_Run.step`` (the batch draw, the SVAG step and its bookkeeping),
nothing of start-up, evaluation or checkpointing. Printed per side: the median over rounds of the
median step time (steady state) and of the mean step time including the first step, whose draw
starts the workers; the ratio is loader steps/s over in-memory steps/s (goal >= 0.9 with 2 workers),
of the medians and, round by round (each round's two runs back to back), its median and range.

``--messages`` instead times the loader alone (``TrainLoader`` over ``TensorPairs`` of the 4000
MNIST-1D samples, SVAG pairs of B = 32, 500 steps after the first) for 1, 8 and 32 steps per worker
message: what one message costs.

    python benchmarks/bench_loader.py [--rounds 5] [--epochs 2] [--workers 2] [--l 1] [--threads 1]
    python benchmarks/bench_loader.py --messages
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from svag import runner
from svag.config import RunConfig


@contextlib.contextmanager
def step_times():
    """Record the wall time of every ``_Run.step`` call into the yielded list (restored on exit)."""
    times: list[float] = []
    original = runner._Run.step

    def timed(self, lr):
        t0 = time.perf_counter()
        try:
            return original(self, lr)
        finally:
            times.append(time.perf_counter() - t0)

    runner._Run.step = timed
    try:
        yield times
    finally:
        runner._Run.step = original


def one_round(cfg: RunConfig, out: Path) -> tuple[float, float, int]:
    with step_times() as times:
        runner.run(cfg, out, progress=False)
    return statistics.median(times), sum(times) / len(times), len(times)


def messages(workers: int) -> None:
    from svag.data import PairSampler, TensorPairs, TrainLoader, load_dataset

    ds = load_dataset("mnist1d")
    data = TensorPairs(ds.train_x, ds.train_y)
    for group in (1, 8, 32):
        loader = TrainLoader(data, PairSampler(len(data), 32, pairs=True, seed=5), workers=workers,
                             steps_per_load=group)  # fmt: skip
        loader.next()  # starts the workers
        t0 = time.perf_counter()
        for _ in range(500):
            loader.next()
        per_step = (time.perf_counter() - t0) / 500
        loader.close()
        print(f"  {group:2d} steps per message: {per_step * 1e3:.3f} ms per SVAG step (two batches of 32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--l", type=float, default=1.0, help="SVAG amplification (1: SGD)")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the training process")
    parser.add_argument("--messages", action="store_true", help="time the loader alone per message size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.messages:
        messages(args.workers)
        return
    base = RunConfig(data="mnist1d", model=args.model, norm=args.norm, lr=0.1, batch_size=32, l=args.l,
                     epochs=args.epochs, eval_every=args.epochs, checkpoint_every=0.0, eval_train_samples=256,
                     noise="off", device="cpu")  # fmt: skip
    sides = {"memory": base, f"loader {args.workers} workers": replace(base, loader_workers=args.workers)}
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            for name, cfg in sides.items():
                results[name].append(one_round(cfg, Path(tmp) / f"{name.split()[0]}{k}"))
    print(f"MNIST-1D {args.model} ({args.norm}), B = 32, l = {args.l:g}, {args.epochs:g} epochs, "
          f"{results['memory'][0][2]} steps per run, {args.rounds} rounds, {args.threads} thread(s)")  # fmt: skip
    med = {name: statistics.median(r[0] for r in rows) for name, rows in results.items()}
    mean = {name: statistics.median(r[1] for r in rows) for name, rows in results.items()}
    for name in sides:
        print(f"  {name:18s} median step {med[name] * 1e3:7.3f} ms   mean step (with start) {mean[name] * 1e3:7.3f} ms")
    loader = next(name for name in sides if name != "memory")
    print(f"loader / in-memory steps/s: {med['memory'] / med[loader]:.3f} (median step), "
          f"{mean['memory'] / mean[loader]:.3f} (mean step, worker start included)")  # fmt: skip
    paired = sorted(m[0] / o[0] for m, o in zip(results["memory"], results[loader]))  # rounds ran back to back
    print(f"per-round ratios (median step): median {statistics.median(paired):.3f}, "
          f"range {paired[0]:.3f}-{paired[-1]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
