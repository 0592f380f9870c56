"""The SVAG step on a character-level GPT, eager vs ``torch.compile``, measured side by side in one run.

Prints the one-off compile time (first steps, warm-up included), then per-step times of ``svag.train_step``
at l = 1 (SGD) and l = 4 for the eager model and the compiled one, interleaved in rounds (A, B, A, B, ...)
with the ratio of medians, so load on a shared machine affects both sides alike.

    OMP_NUM_THREADS=1 python benchmarks/bench_compile.py [--rounds 7] [--steps 20] [--batch-size 32]

Needs a C++ compiler (inductor's CPU backend).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import svag
from svag.data.text import CharText, synthetic_text
from svag.models.gpt import CharGPT, GPTConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    text = CharText(synthetic_text(60000), block_size=64)
    cfg = GPTConfig(text.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=64)
    gen = torch.Generator().manual_seed(0)
    batches = [text.batch(args.batch_size, gen) for _ in range(2 * args.steps)]
    print(f"char GPT: {sum(p.numel() for p in CharGPT(cfg).parameters())} parameters, B = {args.batch_size}, "
          f"T = {cfg.block_size}, threads {torch.get_num_threads()}")  # fmt: skip

    setups = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        for l in (1, 4):
            torch.manual_seed(0)
            model = CharGPT(cfg)
            forward = torch.compile(model) if compiled else model
            opt = svag.SVAG(model.parameters(), lr=0.5, l=l)

            def step(k, opt=opt, forward=forward):
                b1, b2 = batches[2 * k], batches[2 * k + 1]
                svag.train_step(opt, lambda b: forward(*b), b1, b2)

            t0 = time.perf_counter()
            for k in range(3):  # warm-up (and compilation)
                step(k)
            first = time.perf_counter() - t0
            setups[(name, l)] = step
            print(f"{name:>8} l={l}: first 3 steps (warm-up{', compilation' if compiled else ''}) {first:.1f} s")

    times = {key: [] for key in setups}
    for _ in range(args.rounds):
        for key, step in setups.items():
            t0 = time.perf_counter()
            for k in range(args.steps):
                step(k)
            times[key].append((time.perf_counter() - t0) / args.steps)
    for l in (1, 4):
        eager, comp = statistics.median(times[("eager", l)]), statistics.median(times[("compiled", l)])
        print(f"l={l}: eager {1e3 * eager:.2f} ms/step, compiled {1e3 * comp:.2f} ms/step, "
              f"compiled/eager {comp / eager:.3f}")  # fmt: skip
    ratio = statistics.median(times[("eager", 4)]) / statistics.median(times[("eager", 1)])
    print(f"eager: step at l=4 / step at l=1 = {ratio:.2f} (two forward/backward passes vs one)")


if __name__ == "__main__":
    main()
