"""SVAG's optimizer step against torch's, flag by flag (default, foreach=True, fused=True), at l = 1.

On the character GPT of the language-model example (vocabulary 65, 2 layers, width 48: 61k parameters in 28
tensors), with fixed gradients, it times ``opt.step()`` of ``svag.SVAGAdamW`` and ``torch.optim.AdamW`` (and of
``svag.SVAG`` and ``torch.optim.SGD``) with the same flag, interleaved in rounds (the order rotates, so drift and
load on a shared machine fall on all alike), and prints the ratio of the median per-step times (target ≤ 1.05 for
every flag), the ratio of the fastest rounds (less sensitive to other work on the machine), and the median ratio
of a second torch optimizer to the first: the same code on other memory, the noise floor. At l = 1 the two are
equal bit for bit (tests/test_kernels.py), so the ratio is the cost of SVAG's bookkeeping around torch's kernels:
the clock, the amplification check, the int step counts of the state (the kernels' step tensors are reused
between steps, not rebuilt) and the transformed hyperparameters (remembered per group).

    python benchmarks/bench_kernels.py [--steps 100] [--rounds 31] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import svag
from svag.models.gpt import CharGPT, GPTConfig

GPT = GPTConfig(65, block_size=32, n_layer=2, n_head=2, n_embd=48)  # the example's text has 65 characters
FLAGS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
PAIRS = {  # (SVAG's, torch's) optimizers at l = 1, each with its torch twin's hyperparameters
    "AdamW": (lambda p, **f: svag.SVAGAdamW(p, lr=1e-3, weight_decay=0.1, **f),
              lambda p, **f: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1, **f)),
    "SGD": (lambda p, **f: svag.SVAG(p, lr=0.1, weight_decay=1e-4, **f),
            lambda p, **f: torch.optim.SGD(p, lr=0.1, weight_decay=1e-4, **f)),
}  # fmt: skip


def _optimizer(make, flags: dict) -> torch.optim.Optimizer:
    """``make``'s optimizer over a fresh GPT whose every parameter holds a fixed gradient."""
    model = CharGPT(GPT, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = 1e-2 * torch.randn(p.shape, generator=gen, dtype=p.dtype)
    return make(model.parameters(), **flags)


def _per_step(opt: torch.optim.Optimizer, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def measure(name: str, flags: dict, steps: int, rounds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Median and least seconds per step of SVAG's optimizer, torch's, and a second torch optimizer (the noise
    floor: the same code on other memory), with ``flags``, interleaved in rotating order."""
    make_ours, make_theirs = PAIRS[name]
    opts = [_optimizer(make_ours, flags), _optimizer(make_theirs, flags), _optimizer(make_theirs, flags)]
    for opt in opts:  # warm-up: states allocated, counters built
        _per_step(opt, 10)
    times: list[list[float]] = [[] for _ in opts]
    for r in range(rounds):
        for i in (r % 3, (r + 1) % 3, (r + 2) % 3):
            times[i].append(_per_step(opts[i], steps))
    return tuple(statistics.median(t) for t in times), tuple(min(t) for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per timed block")
    parser.add_argument("--rounds", type=int, default=31, help="timed blocks per optimizer (median taken)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = sum(p.numel() for p in CharGPT(GPT).parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), character GPT {n} parameters, l = 1")
    print(f"{'optimizer':10s} {'flag':8s} {'SVAG ms':>8s} {'torch ms':>8s} {'SVAG/torch':>10s} {'(fastest)':>9s} "
          f"{'torch/torch':>11s}")  # fmt: skip
    for name in PAIRS:
        for flag, flags in FLAGS.items():
            (ours, theirs, again), (ours_min, theirs_min, _) = measure(name, flags, args.steps, args.rounds)
            print(f"{name:10s} {flag:8s} {1e3 * ours:8.4f} {1e3 * theirs:8.4f} {ours / theirs:10.3f} "
                  f"{ours_min / theirs_min:9.3f} {again / theirs:11.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
