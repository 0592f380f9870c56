"""Stacked seed ensemble vs K sequential runs, measured side by side in one run.

Part 1, the training step. For each model (the MNIST-1D models of ``svag.models``: the default
MLP (no normalization), the small BatchNorm CNN, a BatchNorm ResNet-32 at width 0.5) and K in
{4, 16, 64}, times one SVAG training step (l = 2, two batches of B = 32 per replica):
  - sequential: one plain model's step (K replicas one after another cost K times that),
  - ensemble:   one step of the K-replica ensemble,
and prints the throughput ratio  K · t_single / t_ensemble  (> 1: the ensemble is faster).
Timings are interleaved in rounds and the ratio of medians is reported, so machine load
affects both sides alike.

Part 2, end to end (what ``svag compare`` does): the default config (MNIST-1D MLP, SVAG l = 2,
noise logging on, evaluation every epoch) for K seeds, trained by ``run_replicas`` as one
ensemble vs ``run`` seed after seed, for ``--e2e-epochs`` epochs. Target (issue 6): >= 3 at
K = 16 on 2 CPU cores.

    python benchmarks/bench_ensemble.py [--models mlp,cnn,resnet32] [--ks 4,16,64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench_step import _timed  # seconds per call of fn, over `steps` calls (this folder is on sys.path)
from svag import SVAG, train_step
from svag.config import RunConfig
from svag.models import build_model
from svag.runner import run, run_replicas
from svag.runner.engine import EnsembleEngine, SingleEngine
from svag.runner.ensemble import Ensemble
from svag.task import CrossEntropy

SHAPES = {"mlp": (40,), "cnn": (1, 40), "resnet32": (1, 40)}
NORM = {"mlp": "none", "cnn": "bn", "resnet32": "bn"}
WIDTH = {"mlp": 1.0, "cnn": 1.0, "resnet32": 0.5}


def _make(name: str, seed: int):
    torch.manual_seed(seed)
    return build_model(name, input_shape=SHAPES[name], num_classes=10, norm=NORM[name], width=WIDTH[name])


def measure(name: str, K: int, batch: int, rounds: int, steps: int) -> tuple[float, float]:
    shape = SHAPES[name]
    single = SingleEngine(_make(name, 0), CrossEntropy())
    s_opt = SVAG(single.params, lr=0.01, l=2.0)
    s_b = [(torch.randn(batch, *shape), torch.randint(0, 10, (batch,))) for _ in range(2)]
    ens = EnsembleEngine(Ensemble([_make(name, k) for k in range(K)], input_shape=shape), CrossEntropy())
    e_opt = SVAG(ens.params, lr=0.01, l=2.0)
    e_b = [(torch.randn(K, batch, *shape), torch.randint(0, 10, (K, batch))) for _ in range(2)]

    def one():
        train_step(s_opt, single.loss, *s_b)

    def many():
        train_step(e_opt, ens.loss, *e_b)

    one(), many()  # warm-up
    t_one, t_many = [], []
    for _ in range(rounds):
        t_one.append(_timed(one, steps))
        t_many.append(_timed(many, max(1, steps // 4)))
    return statistics.median(t_one), statistics.median(t_many)


def end_to_end(K: int, epochs: float) -> tuple[float, float]:
    """Seconds for K seeds of the default config: one after another, then as one ensemble."""
    cfg = RunConfig(l=2.0, epochs=epochs, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for s in range(K):
            run(replace(cfg, seed=s), Path(tmp) / f"s{s}", progress=False)
        t_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_replicas(cfg, list(range(K)), [Path(tmp) / f"e{s}" for s in range(K)], progress=False)
        return t_seq, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn,resnet32")
    ap.add_argument("--ks", default="4,16,64")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--e2e-ks", default="4,16", help="K for the end-to-end part ('' to skip)")
    ap.add_argument("--e2e-epochs", type=float, default=5.0)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, SVAG l=2, B={args.batch_size} per replica")
    print(f"{'model':10s} {'K':>4s} {'single step ms':>15s} {'ensemble step ms':>17s} {'throughput ratio':>17s}")
    for name in args.models.split(","):
        for K in (int(k) for k in args.ks.split(",")):
            t1, tk = measure(name, K, args.batch_size, args.rounds, args.steps)
            print(f"{name:10s} {K:4d} {1e3 * t1:15.2f} {1e3 * tk:17.2f} {K * t1 / tk:17.2f}", flush=True)
    if args.e2e_ks:
        print(f"\nend to end: default config (MNIST-1D MLP), SVAG l=2, {args.e2e_epochs:g} epochs per seed")
        print(f"{'K':>4s} {'sequential s':>13s} {'ensemble s':>11s} {'speed-up':>9s}")
        for K in (int(k) for k in args.e2e_ks.split(",")):
            t_seq, t_ens = end_to_end(K, args.e2e_epochs)
            print(f"{K:4d} {t_seq:13.1f} {t_ens:11.1f} {t_seq / t_ens:9.2f}", flush=True)


if __name__ == "__main__":
    main()
