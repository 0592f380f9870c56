"""Stacked seed ensembles vs K sequential runs, and the two stackings against each other, in one run.

Part ``step``, the training step. For each model (MNIST-1D shapes: the default MLP, the small
BatchNorm CNN, BatchNorm PreResNet-32 and ResNet-32 at width 0.5, and a plug-in MLP, :func:`plugin_mlp`,
which only ``torch.func`` can stack) times one SVAG step (l = 2, two batches of B = 32 per replica):
  - seq:  one plain model's step, times K (the K replicas one after another),
  - hand: one step of the K replicas stacked by hand-written layers (:class:`svag.runner.ensemble.Ensemble`),
  - func: one step of the K replicas stacked by ``torch.func`` (:class:`svag.runner.vmap_ensemble.VmapEnsemble`),
and prints seq/hand and seq/func (> 1: stacking is faster) and func/hand (> 1: torch.func is slower).

Part ``e2e``, end to end (what ``svag compare`` does with ``--ensemble on`` and ``off``): K seeds of
a config (MNIST-1D, SVAG l = 2, G/N pairs on, evaluation twice per epoch, the widths of part
``step``) trained by ``run_replicas`` as one stacked ensemble vs ``run`` seed after seed, on the
plug-in MLP, the CNN and PreResNet-32;
with ``--e2e-func`` the zoo's models also run stacked by ``torch.func`` (the hand-written layers
switched off). Target (the issue): >= 3x at K = 8 on the MLP and the CNN, 2 CPU cores.

Both parts interleave their contenders in rounds (A, B, C, A, B, C, ...; the order turns each
round) and report the ratio of medians, so load on a shared machine affects every side alike.

    python benchmarks/bench_ensemble.py [--part step,e2e] [--k 8] [--rounds 5] [--e2e-epochs 1] [--e2e-func]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from svag import SVAG, train_step
from svag.config import RunConfig
from svag.models import build_model
from svag.runner import ensemble as stacking
from svag.runner import run, run_replicas
from svag.runner.engine import EnsembleEngine, SingleEngine
from svag.runner.ensemble import Ensemble
from svag.runner.vmap_ensemble import VmapEnsemble
from svag.task import CrossEntropy

PLUGIN = f"{Path(__file__).resolve()}:plugin_mlp"
SHAPES = {"mlp": (40,), "cnn": (1, 40), "preresnet32": (1, 40), "resnet32": (1, 40), "plugin-mlp": (40,)}
NORM = {"mlp": "none", "cnn": "bn", "preresnet32": "bn", "resnet32": "bn", "plugin-mlp": "none"}
WIDTH = {"mlp": 1.0, "cnn": 1.0, "preresnet32": 0.5, "resnet32": 0.5, "plugin-mlp": 1.0}
E2E = {"plugin-mlp": PLUGIN, "cnn": "cnn", "preresnet32": "preresnet32"}


class _PluginMLP(nn.Module):
    """A user's MLP: its own ``forward`` (flatten by ``reshape``, GELU), which the hand-written layers cannot take."""

    def __init__(self, features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.inp, self.mid = nn.Linear(features, hidden), nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.inp(x.reshape(x.shape[0], -1)))
        return self.out(nn.functional.gelu(self.mid(h)))


def plugin_mlp(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """The benchmark's plug-in (``--model benchmarks/bench_ensemble.py:plugin_mlp``): 2 hidden layers of 128·width."""
    return _PluginMLP(math.prod(input_shape), max(1, round(128 * width)), num_classes)


def _make(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if name == "plugin-mlp":
        return plugin_mlp(SHAPES[name], 10, WIDTH[name])
    return build_model(name, input_shape=SHAPES[name], num_classes=10, norm=NORM[name], width=WIDTH[name])


def _timed(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def measure_step(name: str, K: int, batch: int, rounds: int, steps: int) -> dict[str, float]:
    """Median seconds of one step: ``seq`` (K plain steps), ``hand`` and ``func`` (one stacked step)."""
    shape = SHAPES[name]
    task = CrossEntropy()
    engines = {"seq": SingleEngine(_make(name, 0), task)}
    if name != "plugin-mlp":
        engines["hand"] = EnsembleEngine(Ensemble([_make(name, k) for k in range(K)], input_shape=shape), task)
    engines["func"] = EnsembleEngine(VmapEnsemble([_make(name, k) for k in range(K)], input_shape=shape), task)
    fns = {}
    for key, eng in engines.items():
        opt = SVAG(eng.params, lr=0.01, l=2.0)
        lead = () if key == "seq" else (K,)
        batches = [(torch.randn(*lead, batch, *shape), torch.randint(0, 10, (*lead, batch))) for _ in range(2)]
        fns[key] = lambda opt=opt, eng=eng, batches=batches: train_step(opt, eng.loss, *batches)
        fns[key]()  # warm-up
    times: dict[str, list[float]] = {key: [] for key in fns}
    for r in range(rounds):
        for key in list(fns)[:: 1 if r % 2 == 0 else -1]:
            times[key].append(_timed(fns[key], steps * (K if key == "seq" else 1)))
    out = {key: statistics.median(t) for key, t in times.items()}
    out["seq"] *= K
    return out


@contextlib.contextmanager
def _func_only():
    """The zoo's models stacked by torch.func too: no family takes the hand-written layers."""
    saved = stacking.LAYERED
    stacking.LAYERED = ()
    try:
        yield
    finally:
        stacking.LAYERED = saved


def end_to_end(model: str, K: int, epochs: float, rounds: int, func: bool) -> dict[str, float]:
    """Median seconds for K seeds of the config: ``seq`` one after another, ``stacked`` as one ensemble,
    and with ``func`` ``func`` (stacked by torch.func)."""
    name = next(k for k, v in E2E.items() if v == model)
    cfg = RunConfig(data="mnist1d", model=model, norm=NORM[name], width=WIDTH[name], l=2.0, epochs=epochs,
                    eval_every=0.5, checkpoint_every=0.0, device="cpu")  # fmt: skip
    ways = {
        "seq": lambda out: [run(replace(cfg, seed=s), out / f"s{s}", progress=False) for s in range(K)],
        "stacked": lambda out: run_replicas(cfg, list(range(K)), [out / f"e{s}" for s in range(K)], progress=False),
    }
    if func:

        def stacked_by_func(out):
            with _func_only():
                return run_replicas(cfg, list(range(K)), [out / f"f{s}" for s in range(K)], progress=False)

        ways["func"] = stacked_by_func
    times: dict[str, list[float]] = {key: [] for key in ways}
    for r in range(rounds):
        for key in list(ways)[:: 1 if r % 2 == 0 else -1]:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                ways[key](Path(tmp))
                times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(t) for key, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="step,e2e", help="step, e2e or both (comma-separated)")
    ap.add_argument("--models", default="mlp,cnn,preresnet32,resnet32,plugin-mlp", help="models of the step part")
    ap.add_argument("--e2e-models", default="plugin-mlp,cnn,preresnet32", help="models of the end-to-end part")
    ap.add_argument("--k", type=int, default=8, help="seeds stacked (K)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the step part")
    ap.add_argument("--steps", type=int, default=10, help="steps timed per round and contender (times K: seq)")
    ap.add_argument("--e2e-rounds", type=int, default=3)
    ap.add_argument("--e2e-epochs", type=float, default=1.0)
    ap.add_argument("--e2e-func", action="store_true", help="end to end, also the zoo's models stacked by torch.func")
    args = ap.parse_args()
    parts, K = args.part.split(","), args.k
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, SVAG l=2, B={args.batch_size} per replica, K={K}")
    if "step" in parts:
        print(f"\nstep: {'model':12s} {'seq ms':>9s} {'hand ms':>9s} {'func ms':>9s} {'seq/hand':>9s} {'seq/func':>9s} "
              f"{'func/hand':>9s}")  # fmt: skip
        for name in args.models.split(","):
            t = measure_step(name, K, args.batch_size, args.rounds, args.steps)
            hand = t.get("hand", math.nan)
            ms = f"{1e3 * t['seq']:9.1f} {1e3 * hand:9.1f} {1e3 * t['func']:9.1f}"
            print(f"      {name:12s} {ms} {t['seq'] / hand:9.2f} {t['seq'] / t['func']:9.2f} {t['func'] / hand:9.2f}",
                  flush=True)  # fmt: skip
    if "e2e" in parts:
        print(f"\nend to end: MNIST-1D, SVAG l=2, {args.e2e_epochs:g} epoch(s) per seed, {args.e2e_rounds} rounds")
        head = f"{'seq s':>8s} {'stacked s':>10s} {'func s':>8s} {'seq/stacked':>12s} {'func/stacked':>13s}"
        print(f"e2e:  {'model':12s} {head}")
        for name in args.e2e_models.split(","):
            func = args.e2e_func and name != "plugin-mlp"
            t = end_to_end(E2E[name], K, args.e2e_epochs, args.e2e_rounds, func)
            f = t.get("func", math.nan)
            print(f"      {name:12s} {t['seq']:8.1f} {t['stacked']:10.1f} {f:8.1f} {t['seq'] / t['stacked']:12.2f} "
                  f"{f / t['stacked']:13.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
