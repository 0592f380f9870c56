"""The runner's SGD (l = 1) training throughput vs a hand-written PyTorch loop, side by side.

Prints, for the MNIST-1D MLP and the small CNN with BatchNorm (CPU by default):
  - runner, noise off            / plain loop   (target <= 1.05)
  - runner, noise pairs (f=0.02) / plain loop   (the default G/N logging)
as time per training step, ratio of medians over interleaved rounds (runner, runner, plain, ...),
so load on a shared machine affects every side alike.

What is timed. The plain loop is the usual one: ``torch.randperm`` shuffling, batch indexing,
``zero_grad``, ``F.cross_entropy``, ``backward``, ``torch.optim.SGD.step`` and ``loss.item()``
each step, on the same model (``svag.models.build_model``) and data (``svag.data.load_dataset``);
only its step loop is timed. The runner is called as users call it,
``svag.runner.run(RunConfig(..., eval_every=epochs, checkpoint_every=0), out, progress=False)``,
and its training time is the time spent in ``Group.train`` minus the time spent in
``Recorder.record`` (the evaluations at t = 0 and at the end) and ``Group.save`` (the final
checkpoint): those methods are wrapped with a stopwatch for the duration of the call. So start-up
(data, model, files), evaluation and checkpointing are excluded from both sides, and everything
the runner does per step (sampler, schedule, batch gather, SVAG step, bookkeeping) is included.

``--profile`` runs cProfile over the training steps of one runner run (MLP, noise off; start-up,
evaluations and checkpoints left out, as in the timing) and prints the functions with the most own
time per training step, in microseconds.

Intra-op threads default to 1: with 2 threads on a loaded 2-core machine, PyTorch's worker
threads spin-wait for each other and step times swing by 10-100x between runs.

    python benchmarks/bench_runner.py [--rounds 11] [--epochs 4] [--threads 1] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import pstats
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from svag import runner
from svag.config import RunConfig
from svag.data import load_dataset
from svag.models import build_model
from svag.runner.loop import Group
from svag.runner.recorder import Recorder

CASES = {  # name: (model, norm)
    "mlp": ("mlp", "none"),
    "cnn-bn": ("cnn", "bn"),
}


@contextlib.contextmanager
def stopwatch(owner: type, names: tuple[str, ...]):
    """Wrap ``owner.<name>`` for each name so that the wall time spent in it adds up in the
    yielded dict (calls nested inside another wrapped method count in both); restored on exit."""
    totals = dict.fromkeys(names, 0.0)
    originals = {name: getattr(owner, name) for name in names}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - t0

        return timed

    for name, fn in originals.items():
        setattr(owner, name, wrap(name, fn))
    try:
        yield totals
    finally:
        for name, fn in originals.items():
            setattr(owner, name, fn)


def config(model: str, norm: str, noise: str, epochs: float, device: str) -> RunConfig:
    return RunConfig(
        data="mnist1d",
        model=model,
        norm=norm,
        l=1,
        noise=noise,
        noise_fraction=0.02,
        epochs=epochs,
        eval_every=epochs,
        checkpoint_every=0,
        device=device,
    )


def runner_step_time(cfg: RunConfig) -> tuple[float, int]:
    """Seconds per training step of ``runner.run(cfg)`` (evaluation and checkpoints excluded)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        stopwatch(Group, ("train", "save")) as t,
        stopwatch(Recorder, ("record",)) as r,
    ):
        result = runner.run(cfg, Path(tmp) / "run", progress=False)
    steps = result.records[-1]["step"]
    return (t["train"] - r["record"] - t["save"]) / steps, steps


def plain_step_time(cfg: RunConfig, steps: int) -> float:
    """Seconds per step of a hand-written SGD loop on the same model and data."""
    device = runner.resolve_device(cfg.device)
    ds = load_dataset(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed)
    x, y = ds.train_x.to(device, torch.float32), ds.train_y.to(device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, input_shape=ds.input_shape, num_classes=ds.num_classes, norm=cfg.norm).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    n, B = len(x), cfg.batch_size
    done = 0
    t0 = time.perf_counter()
    while done < steps:
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(min(n // B, steps - done)):
            idx = perm[i * B : (i + 1) * B]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"plain loop diverged at step {done + i}")
        done += min(n // B, steps - done)
    return (time.perf_counter() - t0) / steps


def measure(name: str, epochs: float, rounds: int, device: str) -> dict[str, float]:
    model, norm = CASES[name]
    cfgs = {noise: config(model, norm, noise, epochs, device) for noise in ("off", "pairs")}
    samples: dict[str, list[float]] = {"off": [], "pairs": [], "plain": []}
    for r in range(rounds + 1):  # round 0 warms up (imports, allocator, kernels) and is dropped
        off, steps = runner_step_time(cfgs["off"])
        pairs, _ = runner_step_time(cfgs["pairs"])
        plain = plain_step_time(cfgs["off"], steps)
        if r:
            for key, value in (("off", off), ("pairs", pairs), ("plain", plain)):
                samples[key].append(value)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "off / plain": med["off"] / med["plain"],
        "pairs / plain": med["pairs"] / med["plain"],
        "plain us": 1e6 * med["plain"],
        "off us": 1e6 * med["off"],
        "pairs us": 1e6 * med["pairs"],
        "steps": steps,
    }


@contextlib.contextmanager
def profiling(prof: cProfile.Profile, owner: type, name: str, on: bool):
    """Turn ``prof`` on (``on``) or off for the duration of each call of ``owner.<name>``, back on exit."""
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        prof.enable() if on else prof.disable()
        try:
            return original(*args, **kwargs)
        finally:
            prof.disable() if on else prof.enable()

    setattr(owner, name, wrapped)
    try:
        yield
    finally:
        setattr(owner, name, original)


def profile(epochs: float, device: str, top: int = 18) -> None:
    """cProfile the training steps of one runner run (MLP, noise off): own time per step, in microseconds.
    What the timing excludes is excluded here too: start-up, evaluations (``Recorder.record``), checkpoints."""
    cfg = config("mlp", "none", "off", epochs, device)
    runner_step_time(cfg)  # warm-up
    prof = cProfile.Profile()
    with (
        tempfile.TemporaryDirectory() as tmp,
        profiling(prof, Group, "train", on=True),
        profiling(prof, Recorder, "record", on=False),
        profiling(prof, Group, "save", on=False),
    ):
        result = runner.run(cfg, Path(tmp) / "run", progress=False)
    steps = result.records[-1]["step"]
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # by own time
    print(f"\ncProfile of one runner run's training steps (mlp, noise off, {steps} steps; profiler inflates calls)")
    print(f"{'own us/step':>12s} {'cum us/step':>12s} {'calls/step':>11s}  function")
    for (file, line, fn), (_, ncalls, tottime, cumtime, _) in rows[:top]:
        where = f"{Path(file).name}:{line}({fn})" if line else fn
        print(f"{1e6 * tottime / steps:12.1f} {1e6 * cumtime / steps:12.1f} {ncalls / steps:11.2f}  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--epochs", type=float, default=4.0, help="run length per timing (125 steps per epoch)")
    parser.add_argument("--models", default="mlp,cnn-bn", help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="also cProfile one runner run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, MNIST-1D, B=32")
    print(f"{'model':8s} {'runner/plain':>13s} {'+pairs/plain':>13s} {'plain us/step':>14s} {'runner us':>10s}")
    for name in args.models.split(","):
        r = measure(name, args.epochs, args.rounds, args.device)
        print(
            f"{name:8s} {r['off / plain']:13.3f} {r['pairs / plain']:13.3f} {r['plain us']:14.1f} {r['off us']:10.1f}"
        )
    if args.profile:
        profile(args.epochs, args.device)


if __name__ == "__main__":
    main()
