"""Figures. Plotting only reads runs (:class:`svag.runfolder.Run`) and their aggregates
(:mod:`svag.analysis.summary`); it never trains or recomputes a statistic. Optimizer names and clocks
come from each run's ``derived`` (the optimizer's facts, saved by the runner), and so do the model options
a title shows (only those that reached the model: :func:`svag.analysis.summary.model_text`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from svag.analysis.summary import aggregate, model_text
from svag.runfolder import Run

__all__ = [
    "figure_format",
    "lsr_figure",
    "plot_compare",
    "plot_lsr",
    "plot_rules",
    "plot_scale",
    "plot_verdicts",
    "save_figure",
]

LABELS = {
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "weight_norm_sq": r"$\|x\|^2$",
    "grad_norm_sq": r"$\|\nabla L\|^2$",
    "gn_ratio": "G/N",
}
OUTCOME_COLORS = {"follows": "tab:green", "departs": "tab:red", "inconclusive": "tab:orange"}


def plot_compare(
    runs: list[Run],
    path: str | os.PathLike,
    metrics: tuple[str, ...] = ("train_loss", "test_loss", "test_acc", "weight_norm_sq"),
    x: str = "effective_step",
) -> Path:
    """The paper-style figure: each metric vs effective steps (= SVAG steps / l), one line per
    ``l`` (SGD is ``l = 1``), mean over seeds with a ±1 std band."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    cmap = plt.get_cmap("viridis")
    cfg = runs[0].config
    base, svag_name, hyper = _optimizer_names(runs)
    for ax, metric in zip(axes[0], metrics):
        curves = aggregate(runs, metric)
        for i, c in enumerate(curves):
            gaussian = c.gradient_noise == "gaussian"  # NGD (l = 1) or Euler–Maruyama: dashed
            color = "tab:purple" if gaussian else "black" if c.l == 1 else cmap(i / max(1, len(curves) - 1) * 0.85)
            xs = getattr(c, x)
            label = f"Gaussian noise l={c.l:g}" if gaussian else base if c.l == 1 else f"{svag_name} l={c.l:g}"
            label = "NGD" if gaussian and c.l == 1 else label
            ax.plot(xs, c.mean, color=color, lw=1.6 if c.l == 1 else 1.2, ls="--" if gaussian else "-",
                    label=f"{label} (n={c.n_seeds})")  # fmt: skip
            ax.fill_between(xs, c.mean - c.std, c.mean + c.std, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("effective steps" if x == "effective_step" else x.replace("_", " "))
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _title(
        fig,
        f"{model_text(cfg, runs[0].derived)}, {hyper}, B={cfg['batch_size']}, "
        f"λ={cfg['weight_decay']:g}: {base} vs {svag_name}, mean ± std over seeds",
    )
    return save_figure(fig, path)


def plot_scale(curves: dict, path: str | os.PathLike, *, base: Run, rule: str) -> Path:
    """A batch-size sweep under a scaling rule: one panel per metric, one line per batch size B
    (mean over seeds, ±1 std band), colored on a log scale of B.

    ``curves`` is :func:`svag.experiments.scale.scale_curves`'s ``{metric: [ScaleCurve]}``; the
    x-axis is each curve's ``x``, the base run's continuous time at the same epoch, which is each
    run's own SDE time when the rule preserves the SDE. ``base`` is a run of the base batch size
    (:func:`svag.experiments.scale.base_run`): its config and its optimizer's clock.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, LogNorm

    metrics = list(curves)
    sizes = sorted({c.batch_size for cs in curves.values() for c in cs})
    cfg = base.config
    b0 = cfg["batch_size"]
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.9, 256)))  # no pale yellow end
    lo, hi = (min(sizes), max(sizes)) if sizes else (b0, b0)
    norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        for c in curves[metric]:
            color = cmap(norm(c.batch_size))
            is_base = c.batch_size == b0
            label = f"B={c.batch_size} (κ={c.kappa:g}{', base' if is_base else ''}, n={c.n_seeds})"
            ax.plot(c.x, c.mean, color=color, lw=2.0 if is_base else 1.2, ls="--" if is_base else "-", label=label)
            ax.fill_between(c.x, c.mean - c.std, c.mean + c.std, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("$t_0$: base run's time at the same epoch", loc="left")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    if sizes:
        axes[0][0].legend(fontsize=7)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), label="batch size B", pad=0.01)
    bar.set_ticks(sizes, labels=[str(b) for b in sizes])
    bar.minorticks_off()
    fig.supxlabel(_base_time_label(base), fontsize=9)
    what = {"linear": "η·κ", "sqrt": "η·√κ, 1−β → κ(1−β), ε/√κ"}.get(rule, rule)
    fig.suptitle(
        f"{model_text(cfg, base.derived)}, {base.derived['optimizer_names']['simulated']}: "
        f"{rule} rule ({what}) from B0={b0}, η0={cfg['lr']:g}, same epochs; mean ± std over seeds",
        fontsize=10,
    )
    return save_figure(fig, path)


def _title(fig, text: str) -> None:
    """Title ``fig`` (10 pt) and lay it out tight: every figure here but :func:`plot_scale`'s (constrained)."""
    fig.suptitle(text, fontsize=10)
    fig.tight_layout()


def _base_time_label(base: Run) -> str:
    """The figure's x note: t0 = the base run's continuous time at the same epoch, with its clock."""
    return (
        f"x: $t_0(e)$ = the base run's continuous time at epoch e, {_step_time(base.derived['clock'])} per step "
        f"({base.derived['optimizer_names']['simulated']} clock): e·τ0 at constant LR, "
        "τ0 = time per epoch of B0. When the rule holds, this is each run's own SDE time."
    )


def _step_time(clock: dict) -> str:
    """The continuous time of one original step at LR η0, ``(η0·lr_factor)^power``, as text."""
    f, power = clock["lr_factor"], clock["power"]
    lr = "η0" if f == 1 else f"{f:.4g}·η0"
    sup = {1: "", 2: "²"}.get(power, f"^{power}")
    return f"{lr}{sup}" if f == 1 or power == 1 else f"({lr}){sup}"


def figure_format(path: str | os.PathLike) -> str:
    """The format matplotlib writes ``path`` in, from its suffix (``png``, ``pdf``, ``svg``, ...); a
    ``ValueError`` naming the path and the suffixes it accepts when there is none it knows, or when
    ``path`` is a folder."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    known = FigureCanvasBase.get_supported_filetypes()
    if path.is_dir():
        raise ValueError(f"cannot save a figure to {path}: it is a folder; give a file name in it, such as "
                         f"{path / 'figure.png'}")  # fmt: skip
    fmt = path.suffix[1:].lower()
    if fmt not in known:
        first = ("png", "pdf", "svg")
        names = ", ".join(f".{k}" for k in (*first, *sorted(set(known) - set(first))) if k in known)
        got = f"its suffix {path.suffix!r} is not" if fmt else "its name has no suffix that says"
        raise ValueError(f"cannot save a figure to {path}: {got} a format matplotlib writes; end it in one of {names}")
    return fmt


def save_figure(fig, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Save ``fig`` to ``path`` atomically (:func:`svag.records.atomic_path`: a temporary file in the
    same folder, then replace; the folder is created; the mode follows the umask), close it and
    return the path. The format comes from the suffix (:func:`figure_format`)."""
    from svag.records import atomic_path

    path = Path(path)
    try:
        fmt = figure_format(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _optimizer_names(runs: list[Run]) -> tuple[str, str, str]:
    """(name of the l = 1 runs, name of the SVAG runs, hyperparameters), the names as the runs'
    optimizers gave them (``derived["optimizer_names"]``)."""
    minibatch = [r for r in runs if r.config.get("gradient_noise", "minibatch") != "gaussian"] or runs
    base = next((r for r in minibatch if r.config["l"] == 1), minibatch[0])
    svag = next((r for r in minibatch if r.config["l"] != 1), minibatch[0])
    cfg = base.config
    hyper = f"η={cfg['lr']:g}"
    if cfg["optimizer"] != "sgd":
        hyper += f", β={tuple(cfg['betas'])}"
    elif cfg["momentum"]:
        hyper += f", β={cfg['momentum']:g}"
    return base.derived["optimizer_names"]["simulated"], svag.derived["optimizer_names"]["svag"], hyper


def _log_limits(values: list[float], pad: float = 1.5) -> tuple[float, float]:
    """Limits of a log axis holding every positive finite value, with a factor ``pad`` of margin."""
    vals = [v for v in values if v > 0 and np.isfinite(v)]
    return (min(vals) / pad, max(vals) * pad) if vals else (1.0, 10.0)


def lsr_figure(result: dict):
    """P1's LSR figure from an ``lsr.json`` result (see :mod:`svag.experiments.lsr_sweep`), as a
    matplotlib figure (:func:`plot_lsr` saves it).

    Top: G/N vs B in log–log (mean over seeds, its SE as bars), slope-1 lines through each run, the
    threshold τ, runs above τ in red, the baseline's predicted ``B*`` as a red dashed line and the
    sweep's slope-1 envelope as a dotted one. Bottom: final train and test error vs B (mean over
    seeds, ± SD as bars), with the region where the test error rose ≥ 20% above the baseline shaded.
    The axis limits hold every marker, bar and line position drawn.
    """
    rows = result.get("verdicts", [])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True)
    marks = [b for b in (result["B_star"], result.get("B_star_envelope", math.nan)) if math.isfinite(b) and b > 0]
    xlim = _log_limits([r["batch_size"] for r in rows] + marks)
    _lsr_ratio_panel(top, result, rows, xlim)
    _lsr_error_panel(bottom, result, rows, xlim)
    base = result["baseline"]
    rule = "square-root rule" if result.get("rule") == "sqrt" else "LSR"
    _title(fig, f"{rule} test ({result.get('optimizer', 'sgd')}): baseline B0={base['batch_size']}, η0={base['lr']:g}")
    return fig


def _lsr_ratio_panel(top, result: dict, rows: list[dict], xlim: tuple[float, float]) -> None:
    """The top of :func:`lsr_figure`: G/N vs B (log–log) with its SE bars, slope-1 lines through each run,
    τ, runs above τ in red, and the baseline's ``B*`` (dashed) and the sweep's envelope (dotted)."""
    tau = result["tau"]
    lo, hi = xlim
    bs = [r["batch_size"] for r in rows if r["ratio"] > 0]
    gs = [r["ratio"] for r in rows if r["ratio"] > 0]
    errs = [r.get("ratio_se", 0.0) or 0.0 for r in rows if r["ratio"] > 0]
    errs = [e if math.isfinite(e) else 0.0 for e in errs]
    lower: list[float] = []  # error bars below the points (none when no run measured G/N > 0)
    if bs:
        for b, g in zip(bs, gs):
            top.plot([lo, hi], [g * lo / b, g * hi / b], color="0.8", lw=0.8, zorder=1)
        colors = ["tab:red" if g > tau else "tab:blue" for g in gs]
        lower = [min(e, 0.9 * g) for g, e in zip(gs, errs)]  # a bar below 0 has no log
        top.errorbar(bs, gs, yerr=[lower, errs], fmt="none", ecolor="0.4", zorder=2)
        top.scatter(bs, gs, c=colors, zorder=3)
    top.axhline(tau, color="k", ls=":", lw=1, label=f"τ = {tau:g}")
    if math.isfinite(result["B_star"]):
        top.axvline(result["B_star"], color="tab:red", ls="--", label=f"baseline's B* ≈ {result['B_star']:.0f}")
    env = result.get("B_star_envelope", math.nan)
    if math.isfinite(env):
        top.axvline(env, color="tab:red", ls=":", label=f"sweep's slope-1 envelope B* ≈ {env:.0f}")
    top.set_xscale("log", base=2)
    top.set_yscale("log")
    top.set_xlim(lo, hi)
    top.set_ylim(*_log_limits([g - lw for g, lw in zip(gs, lower)] + [g + e for g, e in zip(gs, errs)] + [tau]))
    top.set_ylabel(f"{result.get('ratio_name', 'G/N')} at the run's own B")
    if result.get("B_rule_limit", math.inf) < hi:  # the square-root rule's own reach, κ(1 − β1) < 1
        top.axvspan(result["B_rule_limit"], hi, color="0.85", alpha=0.5, label="past the √ rule's κ(1−β1) < 1")
    top.legend(fontsize=7)
    top.grid(alpha=0.3, which="both")


def _lsr_error_panel(bottom, result: dict, rows: list[dict], xlim: tuple[float, float]) -> None:
    """The bottom of :func:`lsr_figure`: final train and test error vs B (mean ± SD over seeds), the
    region where the test error rose ≥ 20% shaded, the baseline's ``B*`` dashed."""
    lo, hi = xlim
    all_b = [r["batch_size"] for r in rows]
    for key, fmt, label in (("train_error", "o-", "train error"), ("test_error", "s-", "test error")):
        ys = [r[key] for r in rows]
        sds = [r.get(f"{key}_sd", math.nan) for r in rows]
        sds = [v if math.isfinite(v) else 0.0 for v in sds]
        seeds = max((r.get("n_seeds", 1) for r in rows), default=1)
        bottom.errorbar(all_b, ys, yerr=sds, fmt=fmt, capsize=2,
                        label=label + (f" (mean ± SD, {seeds} seeds)" if seeds > 1 else ""))  # fmt: skip
    risen = [r["batch_size"] for r in rows if r["error_rose"]]
    if risen:
        bottom.axvspan(min(risen) / 1.2, hi, color="tab:red", alpha=0.1, label="test error ≥ +20%")
    if math.isfinite(result["B_star"]):
        bottom.axvline(result["B_star"], color="tab:red", ls="--")
    if rows:
        ys = [r[k] + s * (r.get(f"{k}_sd", 0.0) if math.isfinite(r.get(f"{k}_sd", math.nan)) else 0.0)
              for r in rows for k in ("train_error", "test_error") for s in (-1, 1)]  # fmt: skip
        span = max(ys) - min(ys) or 0.05
        bottom.set_ylim(min(ys) - 0.1 * span, max(ys) + 0.1 * span)
    bottom.set_xscale("log", base=2)
    bottom.set_xlim(lo, hi)
    rule = "√ rule: η = √κ·η0, 1−β → κ(1−β)" if result.get("rule") == "sqrt" else "LSR: η = κη0"
    bottom.set_xlabel(f"batch size B ({rule})")
    bottom.set_ylabel("final error")
    bottom.legend(fontsize=7)
    bottom.grid(alpha=0.3)


def plot_lsr(result: dict, path: str | os.PathLike) -> Path:
    """:func:`lsr_figure` saved to ``path`` (see :func:`save_figure`)."""
    return save_figure(lsr_figure(result), path)


def plot_verdicts(report: dict, path: str | os.PathLike, metrics: tuple[str, ...] | None = None) -> Path:
    """The verdict figure from a verdicts report (``verdicts.json``, :mod:`svag.analysis.report`).

    Top row, per metric: the gap SGD − SDE against SGD-equivalent epochs with its 95% band (t over
    seeds), the margin ±δ dashed, and the verdict at mid-run and at the end (green follows, red departs,
    orange inconclusive). Bottom row: ``|μ̄_l − μ̂_∞|`` at the end against ``l`` on log-log axes, with a
    slope −1 guide through ``l = 1`` (weak order 1: the error falls like ``1/l``); with NGD runs,
    ``|μ̄_NGD − μ̂_∞|`` is marked at ``l = 1``.
    """
    with_margin = [m for m, e in report["metrics"].items() if e["margin"] is not None] or list(report["metrics"])
    names = [m for m in (metrics or with_margin) if m in report["metrics"]]
    if not names:
        raise ValueError(f"no metric to plot; the report has {', '.join(report['metrics']) or 'none'}")
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 6.4), squeeze=False)
    epochs = np.asarray(report["epochs"])
    end = report["points"]["end"]
    ls = np.asarray(report["ls"], dtype=float)
    for k, metric in enumerate(names):
        rows = report["metrics"][metric]["rows"]
        top, bottom = axes[0][k], axes[1][k]
        _gap_panel(top, rows, epochs, report["points"])
        top.set_title(LABELS.get(metric, metric), fontsize=10)
        _distance_panel(bottom, rows[end], ls)
        if k == 0:
            top.set_ylabel("gap SGD − SDE")
            bottom.set_ylabel(f"distance to the SDE at epoch {epochs[end]:g}")
            top.legend(fontsize=7)
            bottom.legend(fontsize=7)
    s = report["setting"]
    pairing = "paired seeds" if report["paired"] else "unpaired"
    fit = f"{report['fit']} over l = {', '.join(f'{l:g}' for l in report['fit_ls'])}"
    _title(
        fig,
        f"{s['data']} / {s['model']}, η={s['lr']:g}, B={s['batch_size']}: does SGD follow its SDE? "
        f"SDE = Richardson ({fit}), {len(report['seeds'])} seeds, {pairing}",
    )
    return save_figure(fig, path)


def _gap_panel(top, rows: list[dict], epochs: np.ndarray, points: dict[str, int]) -> None:
    """A metric's top panel in :func:`plot_verdicts`: the gap SGD − SDE vs epochs with its 95% band, the
    margin ±δ dashed, and the verdict at each of ``points`` (mid-run, end) in its outcome's color."""
    ok = np.array(["gap" in r for r in rows])
    gap = np.array([r.get("gap", np.nan) for r in rows])
    low = np.array([r["gap_interval"][0] if "gap" in r else np.nan for r in rows])
    high = np.array([r["gap_interval"][1] if "gap" in r else np.nan for r in rows])
    top.axhline(0.0, color="0.5", lw=0.8)
    top.plot(epochs[ok], gap[ok], color="black", lw=1.4, label="SGD − SDE")
    top.fill_between(epochs[ok], low[ok], high[ok], color="black", alpha=0.15, lw=0, label="95% interval")
    delta = np.array([r.get("delta", np.nan) or np.nan for r in rows], dtype=float)
    if np.isfinite(delta).any():
        top.plot(epochs, delta, color="tab:blue", ls="--", lw=1, label="±δ (margin)")
        top.plot(epochs, -delta, color="tab:blue", ls="--", lw=1)
    for where, j in points.items():
        outcome = rows[j].get("outcome")
        if outcome and "gap" in rows[j]:
            top.plot(epochs[j], gap[j], "o", color=OUTCOME_COLORS[outcome], ms=7, zorder=3)
            color, ha = OUTCOME_COLORS[outcome], "right" if where == "end" else "center"
            top.annotate(outcome, (epochs[j], gap[j]), textcoords="offset points", xytext=(0, 8), ha=ha,
                         fontsize=8, color=color)  # fmt: skip
    top.set_xlabel("SGD-equivalent epochs")
    top.grid(alpha=0.3)


def _distance_panel(bottom, row: dict, ls: np.ndarray) -> None:
    """A metric's bottom panel in :func:`plot_verdicts`: ``|μ̄_l − μ̂_∞|`` at the end (``row``) vs ``l``,
    log-log, a slope −1 guide through ``l = 1`` and NGD's distance at ``l = 1`` when there is one."""
    if "sde" in row:
        dist = np.abs(np.asarray(row["means"], dtype=float) - row["sde"])
        keep = np.isfinite(dist) & (dist > 0)
        bottom.loglog(ls[keep], dist[keep], "o-", color="black", label=r"$|\bar\mu_l - \hat\mu_\infty|$")
        if keep[0]:
            guide = dist[0] / ls
            bottom.loglog(ls, guide, color="0.6", ls=":", label="slope −1")
        if row.get("ngd") is not None and abs(row["ngd"] - row["sde"]) > 0:
            bottom.loglog([1.0], [abs(row["ngd"] - row["sde"])], "x", color="tab:purple", ms=8, label="NGD")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(ls, [f"{l:g}" for l in ls])
    bottom.minorticks_off()
    bottom.set_xlabel("l (1 = SGD)")
    bottom.grid(alpha=0.3, which="both")


def plot_rules(result: dict, path: str | os.PathLike) -> Path:
    """Transfer rules side by side (``rules.json`` of :func:`svag.experiments.scale.rule_verdicts`): one panel
    per metric, the gap ``μ_κ − μ_1`` of its final value against B (log2) for each rule with its ``(1 − α)``
    interval, the margin ``±δ`` shaded; a departing point filled, a following one open."""
    metrics = result["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    markers = "osD^vP*X"
    b0 = None
    for ax, metric in zip(axes[0], metrics):
        deltas = []
        for i, (rule, r) in enumerate(result["rules"].items()):
            b0 = r["base_batch_size"]
            rows = [row for row in r["rows"] if math.isfinite(row["cells"][metric].get("estimate", math.nan))]
            if not rows:
                continue
            bs = [row["batch_size"] * (1 + 0.04 * (i - 1)) for row in rows]  # side by side at one B
            est = [row["cells"][metric]["estimate"] for row in rows]
            lo = [e - row["cells"][metric]["interval"][0] for e, row in zip(est, rows)]
            hi = [row["cells"][metric]["interval"][1] - e for e, row in zip(est, rows)]
            deltas += [row["cells"][metric]["delta"] for row in rows]
            bars = ax.errorbar(bs, est, yerr=[lo, hi], fmt=markers[i % len(markers)] + "-", ms=5, capsize=2,
                               label=rule, mfc="none")  # fmt: skip
            gone = [(b, e) for b, e, row in zip(bs, est, rows) if row["cells"][metric]["outcome"] == "departs"]
            if gone:
                ax.scatter(*zip(*gone), marker=markers[i % len(markers)], s=30, color=bars[0].get_color(), zorder=3)
        if deltas:
            d = max(deltas)
            ax.axhspan(-d, d, color="0.85", alpha=0.6, label=f"±δ = {d:.3g}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_ylabel(f"Δ final {LABELS.get(metric, metric)} vs B0")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _title(fig, f"transfer rules from B0 = {b0}: gap to the base run at the end (filled: departs)")
    return save_figure(fig, path)


def plot_cbs(result: dict, path: str | os.PathLike) -> Path:
    """The critical batch size over training (``cbs.json``'s ``result``, :func:`svag.experiments.cbs.cbs_table`):
    the measured CBS at each checkpoint against the baseline's epochs (log y; an open marker where the ladder
    ended without a departure, so the CBS is at least that), with ``B_simple = B·N/G`` and P1's
    ``B* = τ·B·N/G`` (±1 SE) from the baseline's G/N near each checkpoint, and the largest ``κB`` tried."""
    rows = [r for r in result["rows"] if math.isfinite(r["epoch"])]
    B = result["batch_size"]
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    x = [r["epoch"] for r in rows]
    bounded = [r["departs_at"] is not None or r["undecided_at"] is not None for r in rows]
    ax.plot(x, [r["cbs"] for r in rows], "-", color="C0", lw=1.2)
    for xi, r, b in zip(x, rows, bounded):
        ax.plot(xi, r["cbs"], "o", color="C0", ms=7, mfc="C0" if b else "none")
    ax.plot([], [], "o-", color="C0", label=f"CBS measured (ε = {100 * result['epsilon']:g}%; open: ≥)")
    simple = [(xi, r["B_simple"]) for xi, r in zip(x, rows) if math.isfinite(r["B_simple"]) and r["B_simple"] > 0]
    if simple:
        ax.plot(*zip(*simple), "s--", color="C1", ms=5, label="B_simple = B·N/G")
    star = [
        (xi, r["B_star"], r["B_star_se"]) for xi, r in zip(x, rows) if math.isfinite(r["B_star"]) and r["B_star"] > 0
    ]
    if star:
        xs, ys, se = zip(*star)
        se = [s if math.isfinite(s) else 0.0 for s in se]
        low = [min(s, y * 0.9) for s, y in zip(se, ys)]  # a log axis: keep the bar above 0
        ax.errorbar(xs, ys, yerr=[low, se], fmt="D:", color="C2", ms=5, capsize=2,
                    label=f"B* = τ·B·N/G (τ = {result['tau']:g})")  # fmt: skip
    ax.axhline(B * max(result["kappas"]), color="0.6", lw=0.8, ls="-.", label="largest κB tried")
    ax.axhline(B, color="0.3", lw=0.8, label=f"baseline B = {B}")
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("training progress of the baseline (epochs)")
    ax.set_ylabel("batch size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    _title(fig, f"critical batch size over training: {result['optimizer']}, {result['rule']} rule")
    return save_figure(fig, path)
