"""SVAG and Euler–Maruyama converge to the same SDE on a network (issue 12; PAPER.md §2, §6).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/svag_vs_euler_maruyama.py   # the EXPERIMENTS.md §4 run, ~7 min
    .venv/bin/python scripts/svag_vs_euler_maruyama.py --quick             # a smoke run, ~5 s

An MNIST-1D MLP (no normalization) on a fixed training subset, at every ``l`` of a ladder and several
seeds, trained twice with the runner (``svag.run_replicas`` via :func:`svag.experiments.compare.run_compare`):

- **SVAG(l)** (``gradient_noise="minibatch"``): two minibatches of ``B`` per step, ``a1 g1 + a2 g2``;
- **EM(l)** (``gradient_noise="gaussian"``, :mod:`svag.gaussian`): the full-batch gradient plus Gaussian
  noise of the same covariance ``l·Σ_1/B``; Euler–Maruyama of the SDE with ``Δt = η/l`` (P1's NGD at l = 1).

Both take the same steps ``x ← x − (η/l)(ĝ + λx)`` with noise of the same mean and covariance; they differ
only in the noise's higher cumulants (SVAG's third cumulant ``(3l−1)/2·κ_1/B²`` per step, EM's 0). Both
are weak order-1 schemes for the same SDE (P1 Thm 4.3 for SVAG; Euler–Maruyama's classical weak order 1),
so ``|E f(SVAG_l) − E f(EM_l)| = O(1/l)``: the fitted log-log slope of the distance against ``l`` should
be about −1. Batches are drawn **with replacement** (``sampling="replacement"``): then SVAG's two batches
are exactly independent and its per-step covariance is ``l·Σ_1/B``, the covariance EM matches (with
``disjoint`` pairs SVAG's would be ``l·Σ_1(n − B/l)/(B(n − 1))`` and EM's ``Σ_1(n − B)/(B(n − 1))``: two
different SDEs, :mod:`svag.runner`).

**Pairing.** The SVAG and EM runs of one seed share their initialization (seed tree ``"init"``) but not
their noise (``"data_order"`` vs ``"gaussian"``): the per-seed differences ``d_s = f(SVAG_s) − f(EM_s)``
are paired by seed, ``E f(SVAG_l) − E f(EM_l)`` is estimated by their mean ``d̄`` with the Student-t
interval over seeds (df = seeds − 1), and the distance is ``|d̄|`` (biased upwards where the gap is
below its SE: read the interval). The fitted order is :func:`svag.analysis.stats.fit_loglog_slope` of ``|d̄|``
against ``l`` (OLS, its classical SE). ``f`` at the end of the run: test loss, train loss (the full
training subset), ``‖x‖²``.

Writes ``<out>/svag/l*_seed*/`` and ``<out>/em/l*_seed*/`` (run folders; ``--resume`` reuses them),
``<out>/svag_vs_em.json`` (config, rows, fits, wall time), ``<out>/svag_vs_em.csv`` (the rows) and the
figure (distance against ``l``, log-log, with a slope −1 guide), and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from svag.analysis.stats import fit_loglog_slope, mean_se, t_interval
from svag.commands._executor import add_executor_arguments, executor_from_args
from svag.config import RunConfig
from svag.experiments.compare import run_compare
from svag.experiments.executors import Executor
from svag.records import write_csv, write_json
from svag.runfolder import RunFolder
from svag.sweepfolder import compare_run

METRICS = ("test_loss", "train_loss", "weight_norm_sq")
KINDS = {"svag": "minibatch", "em": "gaussian"}  # sub-folder: gradient_noise
LEVEL = 0.95


def base_config(*, n_train: int = 256, n_test: int = 1000, batch_size: int = 8, lr: float = 0.2,
                epochs: float = 30.0, data_seed: int = 0) -> RunConfig:  # fmt: skip
    """The run every ``l`` and seed shares: MNIST-1D, MLP without normalization, plain SGD, batches with
    replacement, records at the start and the end only, no G/N logging, one checkpoint at the end."""
    return RunConfig(
        data="mnist1d", n_train=n_train, n_test=n_test, data_seed=data_seed, model="mlp", norm="none",
        lr=lr, batch_size=batch_size, epochs=epochs, sampling="replacement", noise="off", eval_every=epochs,
        eval_train_samples=n_train, checkpoint_every=0.0, device="cpu",
    ).validate()  # fmt: skip


def train(base: RunConfig, ls: list[float], seeds: list[int], out: Path, *, jobs: int | Executor = 1,
          resume: bool = False, progress: bool = False, log=None) -> dict[str, dict[str, str]]:  # fmt: skip
    """SVAG and EM runs of ``base`` at every ``l`` and seed into ``out/svag`` and ``out/em``; the statuses.
    The seeds of each ``l`` train as one stacked ensemble (``--ensemble on``; each writes what its single
    run would, up to rounding)."""
    log = log or (lambda m: None)
    statuses = {}
    for kind, noise in KINDS.items():
        statuses[kind] = run_compare(replace(base, gradient_noise=noise), ls, seeds, out / kind, resume=resume,
                                     jobs=jobs, progress=progress, ensemble="on", log=log)  # fmt: skip
    return statuses


def final_values(out: Path, kind: str, l: float, seed: int) -> dict[str, float]:
    """``f`` at the end of one run: the metrics of its last record (``nan`` if it did not complete)."""
    folder = RunFolder(out / kind / compare_run(l, seed))
    if folder.status().status != "completed":
        return dict.fromkeys(METRICS, math.nan)
    last = folder.records()[-1]
    return {m: float(last[m]) for m in METRICS}


def distances(out: Path, ls: list[float], seeds: list[int], level: float = LEVEL) -> list[dict]:
    """One row per ``(l, metric)``: the means of both sides, the paired mean gap ``d̄`` (SVAG − EM), its SE,
    its ``level`` t-interval over seeds and the distance ``|d̄|``."""
    rows = []
    for l in ls:
        values = {kind: [final_values(out, kind, l, s) for s in seeds] for kind in KINDS}
        for m in METRICS:
            a = np.array([v[m] for v in values["svag"]])
            b = np.array([v[m] for v in values["em"]])
            d = a - b
            mean, se = mean_se(d) if len(d) > 1 else (float(d.mean()), math.nan)
            low, high = t_interval(mean, se, len(d) - 1, level) if len(d) > 1 else (math.nan, math.nan)
            rows.append({
                "l": l, "metric": m, "seeds": len(seeds), "svag_mean": float(a.mean()), "em_mean": float(b.mean()),
                "gap": mean, "gap_se": se, "gap_low": low, "gap_high": high, "distance": abs(mean),
                "excludes_zero": bool(low > 0 or high < 0),
            })  # fmt: skip
    return rows


def fits(rows: list[dict]) -> dict[str, dict]:
    """Per metric, the OLS slope of ``log |d̄|`` on ``log l`` and its SE (``nan`` where undefined)."""
    result = {}
    for m in METRICS:
        sel = [r for r in rows if r["metric"] == m and math.isfinite(r["distance"])]
        fit = fit_loglog_slope([r["l"] for r in sel], [r["distance"] for r in sel])
        result[m] = {"slope": fit.slope, "slope_se": fit.slope_se, "intercept": fit.intercept, "points": fit.n}
    return result


def shrinkage(out: Path, seeds: list[int], metric: str, l_small: float, l_large: float,
              level: float = LEVEL) -> dict[str, float]:  # fmt: skip
    """How much the gap shrinks from ``l_small`` to ``l_large``, paired by seed: the mean over seeds of
    ``σ·(d_s(l_small) − d_s(l_large))`` with ``σ`` the sign of ``d̄(l_small)``, its SE and t-interval.
    A lower end above 0 says the gap at ``l_large`` is smaller, in the direction of the ``l_small`` gap,
    beyond its interval."""

    def gaps(l):
        return np.array([final_values(out, "svag", l, s)[metric] - final_values(out, "em", l, s)[metric]
                         for s in seeds])  # fmt: skip

    small, large = gaps(l_small), gaps(l_large)
    sign = 1.0 if small.mean() >= 0 else -1.0
    mean, se = mean_se(sign * (small - large))
    low, high = t_interval(mean, se, len(seeds) - 1, level)
    return {"metric": metric, "l_small": l_small, "l_large": l_large, "shrink": mean, "se": se, "low": low,
            "high": high}  # fmt: skip


def markdown(rows: list[dict], fit: dict[str, dict]) -> str:
    lines = ["| l | f | E f(SVAG) | E f(EM) | gap SVAG − EM ± SE | 95% interval | distance |", "|---" * 7 + "|"]
    for r in rows:
        lines.append(
            f"| {r['l']:g} | {r['metric']} | {r['svag_mean']:.4f} | {r['em_mean']:.4f} | {r['gap']:+.4f} ± "
            f"{r['gap_se']:.4f} | [{r['gap_low']:+.4f}, {r['gap_high']:+.4f}] | {r['distance']:.4f} |"
        )
    lines.append("")
    for m, f in fit.items():
        lines.append(f"fitted order of |gap| vs l, {m}: slope {f['slope']:+.2f} ± {f['slope_se']:.2f} (SE)")
    return "\n".join(lines)


def figure(rows: list[dict], fit: dict[str, dict], path: Path, title: str) -> Path:
    """Distance against ``l`` (log-log), one panel per metric, interval bars, fitted line, slope −1 guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from svag.analysis.plotting import save_figure

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    for ax, m in zip(axes, METRICS):
        sel = [r for r in rows if r["metric"] == m]
        ls = np.array([r["l"] for r in sel])
        dist = np.array([r["distance"] for r in sel])
        half = np.array([max(abs(r["gap_high"] - r["gap"]), 0.0) for r in sel])
        low = np.maximum(dist - half, dist * 1e-2)  # a log axis has no 0: a bar reaching 0 is drawn to 1% of |d̄|
        ax.errorbar(ls, dist, yerr=[dist - low, half], fmt="none", ecolor="C0", capsize=3)
        apart = np.array([r["excludes_zero"] for r in sel])
        ax.plot(ls[apart], dist[apart], "o", color="C0", label=f"|d̄|, {LEVEL:.0%} interval excludes 0")
        ax.plot(ls[~apart], dist[~apart], "o", mfc="white", color="C0", label="|d̄|, interval holds 0")
        f = fit[m]
        if math.isfinite(f["slope"]):
            ax.plot(ls, np.exp(f["intercept"]) * ls ** f["slope"], "-", color="C0", alpha=0.6,
                    label=f"fit: slope {f['slope']:+.2f} ± {f['slope_se']:.2f}")  # fmt: skip
        if dist[0] > 0:
            ax.plot(ls, dist[0] * ls[0] / ls, "--", color="gray", label="slope −1")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("l")
        ax.set_title(m)
        ax.legend(fontsize=7, loc="lower left")
    axes[0].set_ylabel("distance at the end of the run")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/svag-vs-em"), help="folder of the runs and results")
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: <out>/svag-vs-em.png)")
    parser.add_argument("--ls", default="1,2,4,8,16", help="the ladder of l")
    parser.add_argument("--seeds", type=int, default=16, help="seeds 0..N-1 for every l and both schemes")
    parser.add_argument("--n-train", type=int, default=256, help="training subset (EM's full-batch pass)")
    parser.add_argument("--n-test", type=int, default=1000, help="test samples (test loss)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--epochs", type=float, default=30.0, help="SGD-equivalent epochs")
    add_executor_arguments(parser)  # --jobs, or --cluster ray with its resources (svag.commands._executor)
    parser.add_argument("--resume", action="store_true", help="reuse completed runs in --out")
    parser.add_argument("--quick", action="store_true", help="smoke run: 128 samples, B 32, l = 1, 4, 2 seeds, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.batch_size, args.seeds, args.ls, args.epochs = 128, 200, 32, 2, "1,4", 1.0
    ls = [float(v) for v in args.ls.split(",")]
    seeds = list(range(args.seeds))
    base = base_config(n_train=args.n_train, n_test=args.n_test, batch_size=args.batch_size, lr=args.lr,
                       epochs=args.epochs)  # fmt: skip
    start = time.perf_counter()
    statuses = train(base, ls, seeds, args.out, jobs=executor_from_args(args), resume=args.resume, log=print)
    wall = time.perf_counter() - start
    failed = {f"{k}/{n}": s for k, st in statuses.items() for n, s in st.items() if s != "completed"}
    rows = distances(args.out, ls, seeds)
    fit = fits(rows)
    shrink = {m: shrinkage(args.out, seeds, m, ls[0], ls[-1]) for m in METRICS} if len(seeds) > 1 else {}
    import torch

    write_json(args.out / "svag_vs_em.json", {
        "config": base.to_dict(), "ls": ls, "seeds": seeds, "level": LEVEL, "rows": rows, "fits": fit,
        "shrink": shrink, "failed": failed, "wall_time_s": wall, "torch_threads": torch.get_num_threads(),
        "jobs": args.jobs, "platform": platform.platform(), "torch": torch.__version__,
    })  # fmt: skip
    write_csv(args.out / "svag_vs_em.csv", rows)
    title = (f"MNIST-1D MLP, n={args.n_train}, B={args.batch_size}, η={args.lr:g}, {args.epochs:g} epochs, "
             f"{args.seeds} seeds paired: SVAG(l) vs Euler–Maruyama(l)")  # fmt: skip
    path = figure(rows, fit, args.figure or args.out / "svag-vs-em.png", title)
    print(markdown(rows, fit))
    for m, s in shrink.items():
        print(f"shrink of the gap from l={s['l_small']:g} to l={s['l_large']:g}, {m}: {s['shrink']:+.4f} ± "
              f"{s['se']:.4f} [{s['low']:+.4f}, {s['high']:+.4f}]")  # fmt: skip
    print(f"training wall time {wall:.0f} s; figure {path}; results {args.out / 'svag_vs_em.json'}")
    for name, status in failed.items():
        print(f"  {name}: {status}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
