"""G/N logging during SGD runs: overhead and statistical efficiency of each mode, in one run.

The run is the LSR baseline of EXPERIMENTS.md at benchmark length: MNIST-1D, scale-invariant
BatchNorm CNN (width 2), SGD η = 0.1, B = 32, weight decay 5e-4, constant LR, ``--epochs``
epochs; the equilibrium window is the last sixth of the run (``svag lsr``'s default). Modes:

  - ``off``: no G/N at all (the reference time);
  - ``pairs f``: an extra independent batch at a fraction f of the steps, one ``(Ĝ, N̂)`` pair
    estimate per such step (``--noise pairs --noise-fraction f``; f = 0.02 is the default);
  - ``m-batch``: P1's estimator over m = max(200, 12800 // B) = 400 batches once per epoch
    (``--noise-every 1 --noise-fraction 0``);
  - ``… window``: the same, only inside the equilibrium window (``--noise-window START,END``,
    what ``svag lsr`` does by default): pairs at every step there, or m-batch at its two ends.

For each mode it prints the training time relative to ``off`` (evaluation excluded on every
side: the same evaluations run in each mode; the m-batch measurements, made at evaluation
time, are counted), the equilibrium-window G/N with its standard error
(pairs: pooled over the window's per-step estimates; m-batch: the jackknife SE of the last
measurement in the window, averaged if there are several), the spread of the window G/N over
the rounds' seeds (``SD seeds``: the error a user actually sees, trajectory fluctuations
included, comparable across modes), and the efficiencies ``SD · √(extra seconds)`` and
``SE · √(extra seconds)``: the error that mode would reach with one second of extra compute
(error ∝ 1/√compute). Lower is better.
Modes run interleaved over ``--rounds`` rounds; medians are reported.

``--paired-seeds S`` adds the test that decides what the LSR test should use: S runs that carry
**both** window estimators on one trajectory (pairs at every step of the window and m-batch at
its two ends; logging never changes an SGD trajectory). The window average of G and N is what
the LSR test divides, so the spread of (pairs − m-batch) over seeds, set against the two own SEs,
shows how far the two-point m-batch value sits from that average beyond its own SE.

    python benchmarks/bench_noise.py [--epochs 6] [--rounds 3] [--paired-seeds 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from svag import runner
from svag.config import RunConfig
from svag.experiments.lsr_sweep import equilibrium_window, equilibrium_window_epochs, window_ratio
from svag.records import read_jsonl

sys.path.insert(0, str(Path(__file__).parent))
from bench_runner import stopwatch

MODES = {
    "off": {"noise": "off"},
    "pairs 0.02": {"noise": "pairs", "noise_fraction": 0.02},
    "pairs 0.05": {"noise": "pairs", "noise_fraction": 0.05},
    "pairs 0.2": {"noise": "pairs", "noise_fraction": 0.2},
    "pairs 1.0": {"noise": "pairs", "noise_fraction": 1.0},
    "m-batch 1/epoch": {"noise": "pairs", "noise_fraction": 0.0, "noise_every": 1.0},
    "pairs 1.0 window": {"noise": "pairs", "noise_fraction": 1.0, "noise_window": "window"},
    "m-batch window ends": {"noise": "pairs", "noise_fraction": 0.0, "noise_every": "window", "noise_window": "window"},
}


def mode_config(base: RunConfig, change: dict) -> RunConfig:
    """``"window"`` stands for the equilibrium window (epochs) and, for ``noise_every``, its length."""
    start, end = equilibrium_window_epochs(base)
    values = {"noise_window": (start, end), "noise_every": end - start}
    return replace(base, **{k: values[k] if v == "window" else v for k, v in change.items()}).validate()


def base_config(epochs: float) -> RunConfig:
    return RunConfig(
        data="mnist1d", model="cnn", norm="bn", scale_invariant=True, width=2.0, lr=0.1, batch_size=32,
        weight_decay=5e-4, epochs=epochs, eval_every=0.5, checkpoint_every=0, device="cpu",
    )  # fmt: skip


def one(cfg: RunConfig) -> tuple[float, dict]:
    """Training seconds (evaluations and checkpoints excluded) and the window's G/N of one run."""
    with tempfile.TemporaryDirectory() as tmp, stopwatch(runner._Loop, ("train", "record", "save", "_measure_m")) as t:
        out = Path(tmp) / "run"
        runner.run(cfg, out, progress=False)
        seconds = t["train"] - t["record"] - t["save"] + t["_measure_m"]  # m-batch runs inside record
        window = equilibrium_window(out)
        if cfg.noise == "off":
            return seconds, {}
        if cfg.noise_every:
            lo = window[0] * (1 - 1e-9)
            rows = [r for r in read_jsonl(out / "metrics.jsonl") if lo <= r["sde_time"] and "gn_ratio_m" in r]
            ses = [r["gn_ratio_m_se"] for r in rows]
            return seconds, {"ratio": statistics.mean(r["gn_ratio_m"] for r in rows), "se": statistics.mean(ses)}
        w = window_ratio(out, window)
        return seconds, {"ratio": w["ratio"], "se": w["ratio_se"]}


def paired(base: RunConfig, seeds: int) -> None:
    """Both window estimators on the same trajectories (see the module docstring)."""
    change = dict(MODES["pairs 1.0 window"], noise_every="window")
    diffs, se_pairs, se_m = [], [], []
    print(f"\n{seeds} runs with both estimators in the window (seed, pairs ± SE, m-batch points ± SE):")
    for seed in range(seeds):
        cfg = mode_config(replace(base, seed=seed), change)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            runner.run(cfg, out, progress=False)
            p = window_ratio(out, equilibrium_window(out))
            ms = [r for r in read_jsonl(out / "metrics.jsonl") if "gn_ratio_m" in r]
        m = statistics.mean(r["gn_ratio_m"] for r in ms)
        m_se = math.sqrt(sum(r["gn_ratio_m_se"] ** 2 for r in ms)) / len(ms)
        diffs.append(p["ratio"] - m)
        se_pairs.append(p["ratio_se"])
        se_m.append(m_se)
        points = ", ".join(f"{r['gn_ratio_m']:.4f}" for r in ms)
        print(f"  {seed}: {p['ratio']:.4f} ± {p['ratio_se']:.4f}   [{points}] -> {m:.4f} ± {m_se:.4f}")
    sd = statistics.stdev(diffs)
    own = math.sqrt(statistics.mean(a * a + b * b for a, b in zip(se_pairs, se_m)))
    rms_p = math.sqrt(statistics.mean(a * a for a in se_pairs))
    rms_m = math.sqrt(statistics.mean(b * b for b in se_m))
    m_true = math.sqrt(max(sd * sd - rms_p * rms_p, 0.0))
    print(f"SD(pairs - m-batch) = {sd:.4f}; expected from the own SEs alone {own:.4f} (pairs {rms_p:.4f}, "
          f"m-batch {rms_m:.4f});\nm-batch's error about the window average ≈ √(SD² − SE_pairs²) = "
          f"{m_true:.4f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paired-seeds", type=int, default=0, help="runs with both window estimators (0: skip)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = base_config(args.epochs)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    stats: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode, change in MODES.items():
            seconds, st = one(mode_config(replace(base, seed=r), change))
            times[mode].append(seconds)
            stats[mode].append(st)
    if args.rounds:
        report(times, stats, args)
    if args.paired_seeds:
        paired(base, args.paired_seeds)


def report(times: dict[str, list[float]], stats: dict[str, list[dict]], args: argparse.Namespace) -> None:
    t_off = statistics.median(times["off"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST-1D SI-CNN-BN, B=32, "
          f"{args.epochs:g} epochs, {args.rounds} rounds (seeds 0..{args.rounds - 1})")  # fmt: skip
    print(f"{'mode':22s} {'time/off':>9s} {'G/N mean':>9s} {'SE (own)':>9s} {'SD seeds':>9s} {'SD·√extra_s':>12s} "
          f"{'SE·√extra_s':>12s}")  # fmt: skip
    for mode in MODES:
        t = statistics.median(times[mode])
        if mode == "off":
            print(f"{mode:22s} {t / t_off:9.3f} {'-':>9s} {'-':>9s} {'-':>9s} {'-':>12s} {'-':>12s}   ({t:.1f} s)")
            continue
        ratios = [s["ratio"] for s in stats[mode]]
        se = statistics.median(s["se"] for s in stats[mode])
        sd = statistics.stdev(ratios) if len(ratios) > 1 else math.nan
        extra = max(t - t_off, 1e-9)
        mean = statistics.mean(ratios)
        root = math.sqrt(extra)
        print(f"{mode:22s} {t / t_off:9.3f} {mean:9.4f} {se:9.4f} {sd:9.4f} {sd * root:12.4f} {se * root:12.4f}")


if __name__ == "__main__":
    main()
