"""Multi-process data parallelism (torch.distributed, gloo) vs one process, in one run.

Trains the same run with ``svag train`` in one process and with
``torchrun --standalone --nproc_per_node=N -m svag train`` and compares the training wall time
each wrote to ``status.json`` (start-up excluded: the runner's clock starts at its first step).
Rounds alternate (1 process, N processes, 1, N, ...) and the ratio of medians is printed.

Threads: the single process gets all ``--cores`` intra-op threads; each of the N processes
gets ``cores // N`` (``OMP_NUM_THREADS``), so both sides use the same cores. A single process
with one thread is timed too (the per-core view, and a check on thread spin-waiting under load).

    python benchmarks/bench_ddp.py [--nproc 2] [--cores 2] [--rounds 3] [--model cnn --norm gn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def train(out: Path, nproc: int, threads: int, args: argparse.Namespace) -> tuple[float, int]:
    flags = [
        "train", "--out", str(out), "--no-progress", "--device", "cpu", "--data", "mnist1d", "--model", args.model,
        "--norm", args.norm, "--batch-size", str(args.batch_size), "--amplification", str(args.l),
        "--epochs", str(args.epochs), "--eval-every", str(args.epochs), "--checkpoint-every", "0", "--noise", "off",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if nproc == 1:
        cmd = [sys.executable, "-m", "svag", *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "svag", *flags]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = json.loads((out / "status.json").read_text())
    return float(status["wall_time"]), int(status["step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--norm", default="gn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--l", type=float, default=2.0)
    ap.add_argument("--epochs", type=float, default=2.0)
    args = ap.parse_args()
    one, many, single = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t, steps1 = train(Path(tmp) / f"one{r}", 1, args.cores, args)
            one.append(t)
            single.append(train(Path(tmp) / f"single{r}", 1, 1, args)[0])
            t, steps = train(Path(tmp) / f"many{r}", args.nproc, max(1, args.cores // args.nproc), args)
            many.append(t)
            if steps != steps1:
                raise RuntimeError(f"step counts differ: {steps1} (1 process) vs {steps} ({args.nproc} processes)")
    t1, tn, ts = statistics.median(one), statistics.median(many), statistics.median(single)
    print(f"MNIST-1D {args.model}-{args.norm}, global B={args.batch_size}, SVAG l={args.l:g}, {args.epochs:g} epochs, "
          f"{args.cores} cores, {args.rounds} rounds")  # fmt: skip
    print(
        f"1 process ({args.cores} threads): {t1:.1f} s   {args.nproc} processes "
        f"({max(1, args.cores // args.nproc)} thread each): {tn:.1f} s   throughput ratio {t1 / tn:.2f}"
    )
    print(f"1 process (1 thread): {ts:.1f} s   ({args.nproc} processes vs this: {ts / tn:.2f})")


if __name__ == "__main__":
    main()
