"""The report of ``svag verify``: the text tables, ``verify.csv``, ``verify.json`` and the log-log
figure, all drawn from the data that :func:`svag.problems.verify.run_verification` returns (never recomputed).

Reading layer: statistics produce the data (:mod:`svag.problems.verify`); this module only formats it, so a
saved ``verify.json`` redraws the same figure and tables.
"""

from __future__ import annotations

import os
from pathlib import Path

from svag.records import write_csv, write_json

__all__ = ["csv_rows", "format_tables", "plot_verification", "write_report"]


def write_report(data: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``verify.json`` (the data as is), ``verify.csv`` (:func:`csv_rows`) and ``verify.png``
    (:func:`plot_verification`) into the folder ``out``; returns their paths by kind."""
    out = Path(out)
    paths = {"json": out / "verify.json", "csv": out / "verify.csv", "figure": out / "verify.png"}
    write_json(paths["json"], data)
    write_csv(paths["csv"], csv_rows(data))
    plot_verification(data, paths["figure"])
    return paths


def csv_rows(data: dict) -> list[dict]:
    """One row per ``l``: the OU columns prefixed ``ou_``, the regression columns ``reg_``, and (data with a
    Gaussian-noise section) its OU and regression columns prefixed ``gauss_ou_`` and ``gauss_reg_``."""
    gauss = data.get("gaussian")
    n = len(data["ou"]["rows"])
    g_ou = gauss["rows_ou"] if gauss else [{}] * n
    g_reg = gauss["rows_regression"] if gauss else [{}] * n
    rows = []
    for ou, reg, gou, greg in zip(data["ou"]["rows"], data["regression"]["rows"], g_ou, g_reg):
        row = {"l": ou["l"]}
        row.update({f"ou_{k}": v for k, v in ou.items() if k != "l"})
        row.update({f"reg_{k}": v for k, v in reg.items() if k != "l"})
        row.update({f"gauss_ou_{k}": v for k, v in gou.items() if k not in ("l", "steps")})
        row.update({f"gauss_reg_{k}": v for k, v in greg.items() if k not in ("l", "steps")})
        rows.append(row)
    return rows


def _setting(p: dict) -> str:
    return (
        f"d={p['dim']}, n={p['n_samples']}, B={p['batch_size']} ({p['sampling']}), η={p['lr']:g}, "
        f"λ={p['weight_decay']:g}, T={p['horizon']:g} = {p['sgd_steps']} SGD steps"
    )


def format_tables(data: dict) -> str:
    """The two text tables of ``svag verify`` (reads the result data only)."""
    ou, reg, slopes = data["ou"], data["regression"], data["slopes"]
    cfg = data["config"]
    lines = [
        f"SVAG vs its SDE on problems with exact answers (P1 Thm 4.3: weak error O(1/l)); "
        f"Monte-Carlo: {cfg['replicas']} replicas per l, seed {cfg['seed']}",
        "",
        f"[1] OU, skewed additive noise ({_setting(ou['problem'])}); exact values at time T",
        f"{'l':>4} {'steps':>6} {'|Ex-EX|':>10} {'|E|x|²-E|X|²|':>14} {'skew exact':>11} {'skew MC ± SE':>17} "
        f"{'MC max|z|':>10}",
    ]
    for r in ou["rows"]:
        lines.append(
            f"{r['l']:>4} {r['steps']:>6} {r['mean_err']:>10.3e} {r['sq_norm_err']:>14.3e} {r['skewness']:>11.4f} "
            f"{r['skewness_mc']:>9.4f} ± {r['skewness_mc_se']:.4f} {r['mc_max_abs_z']:>10.2f}"
        )
    lines.append(
        f"{'slope':>11} {slopes['ou_mean_err']:>10.3f} {slopes['ou_sq_norm_err']:>14.3f} {slopes['ou_skewness']:>11.3f}"
    )
    ref = reg["reference"]
    lines += [
        "",
        f"[2] Regression, state-dependent noise ({_setting(reg['problem'])}); "
        f"SDE: E L = {ref['sde_loss']:.5f}, E|X|² = {ref['sde_sq_norm']:.4f}",
        f"{'l':>4} {'steps':>6} {'|ΔE L|':>10} {'MC |ΔE L| ± SE':>22} {'|ΔE|x|²|':>10} {'MC |ΔE|x|²| ± SE':>22} "
        f"{'MC max|z|':>10}",
    ]
    for r in reg["rows"]:
        lines.append(
            f"{r['l']:>4} {r['steps']:>6} {r['loss_err']:>10.3e} {r['loss_mc_dist']:>11.2e} ± {r['loss_mc_se']:.2e} "
            f"{r['sq_norm_err']:>10.3e} {r['sq_norm_mc_dist']:>11.2e} ± {r['sq_norm_mc_se']:.2e} "
            f"{r['mc_max_abs_z']:>10.2f}"
        )
    lines += [
        f"{'slope':>11} {slopes['regression_loss_err']:>10.3f} {'':>22} {slopes['regression_sq_norm_err']:>10.3f}",
        "",
        "|Δ·| exact: SVAG at l vs the SDE at T, from exact moments. MC: real svag.SVAG + train_step runs vs an "
        f"Euler–Maruyama run of the SDE (Δt = η/{ref['substeps']}, {cfg['replicas']} chains; its exact bias: "
        f"E L {ref['exact_loss_bias']:+.1e}, E|X|² {ref['exact_sq_norm_bias']:+.1e}).",
        "MC max|z|: largest |z| of the SVAG (and EM: "
        f"{ref['mc_max_abs_z']:.2f}) samples' mean, covariance, E|x|² (and 3rd moment) against the exact "
        "finite-l moments. skew: standardized skewness of x_1 (0 for the SDE); MC SE √(6/R).",
    ]
    if "gaussian" in data:
        lines += ["", *_gaussian_table(data["gaussian"])]
    return "\n".join(lines)


def _gaussian_table(g: dict) -> list[str]:
    """Section [3]: the Gaussian-noise step (NGD at l = 1, Euler–Maruyama with Δt = η/l)."""
    s = g["slopes"]
    lines = [
        f"[3] Gaussian noise (P1's NGD at l = 1 = Euler–Maruyama, Δt = η/l; {g['noise']}); MC: real "
        f"gaussian_step runs, {g['replicas']} chains per l",
        f"{'l':>4} {'OU |Ex-EX|':>11} {'|ΔE e^-|x|²/2|':>15} {'|Δmom| SVAG':>12} {'|skew SVAG|':>12} "
        f"{'skew MC ± SE':>17} {'MC max|z|':>10} {'reg |ΔE L|':>11} {'reg |Δmom|':>11} {'MC max|z|':>10}",
    ]
    for o, r in zip(g["rows_ou"], g["rows_regression"]):
        lines.append(
            f"{o['l']:>4} {o['mean_err']:>11.3e} {o['kernel_err']:>15.3e} {o['svag_moment_gap']:>12.1e} "
            f"{o['svag_third_gap']:>12.4f} {o['skewness_mc']:>9.4f} ± {o['skewness_mc_se']:.4f} "
            f"{o['mc_max_abs_z']:>10.2f} {r['loss_err']:>11.3e} {r['svag_moment_gap']:>11.1e} "
            f"{r['mc_max_abs_z']:>10.2f}"
        )
    lines += [
        f"{'slope':>4} {s['ou_mean_err']:>11.3f} {s['ou_kernel_err']:>15.3f} {'':>12} {s['svag_third_gap']:>12.3f} "
        f"{'':>17} {'':>10} {s['regression_loss_err']:>11.3f}",
        "",
        "|Δ·|: the Gaussian iteration at l vs the SDE at T, exact. |Δmom| SVAG: largest gap in mean and covariance to "
        "SVAG at the same l (0: identical recursions); |skew SVAG|: the gap in standardized third moment of x_1 (the "
        "Gaussian's is 0), falling like 1/l: both approach the same SDE. MC max|z|: mean, covariance, E|x|² (OU: "
        "also the third moment, 0, and E e^-|x|²/2) of the runs against the exact finite-l values.",
    ]
    return lines


def plot_verification(data: dict, path: str | Path) -> Path:
    """The log-log figure of ``svag verify``, drawn from the result data only (never recomputes)."""
    from svag.analysis.plotting import plt, save_figure  # plotting selects the Agg backend first

    ls = data["ls"]
    ou, reg, slopes = data["ou"]["rows"], data["regression"]["rows"], data["slopes"]
    gauss = data.get("gaussian")
    fig, axes = plt.subplots(1, 4 if gauss else 3, figsize=(18.5 if gauss else 14, 4.2))

    def guide(ax, y1):
        ax.plot(ls, [y1 / l for l in ls], ls=":", color="grey", lw=1, label="∝ 1/l")

    ax = axes[0]
    for key, label in (("mean_err", "‖E x − E X‖"), ("sq_norm_err", "|E‖x‖² − E‖X‖²|")):
        ax.plot(ls, [r[key] for r in ou], "o-", label=f"{label} (slope {slopes['ou_' + key]:.2f})")
    guide(ax, ou[0]["sq_norm_err"])
    ax.set_title("OU, skewed noise: exact weak error")

    ax = axes[1]
    ax.plot(ls, [abs(r["skewness"]) for r in ou], "o-", label=f"exact (slope {slopes['ou_skewness']:.2f})")
    _mc_points(ax, ls, [abs(r["skewness_mc"]) for r in ou], [r["skewness_mc_se"] for r in ou], "Monte-Carlo ± SE")
    guide(ax, abs(ou[0]["skewness"]))
    ax.set_title("OU: |skewness of x₁| at T (SDE: 0)")

    ax = axes[2]
    for key, label, color in (("loss", "E L", "C0"), ("sq_norm", "E‖x‖²", "C1")):
        slope = slopes[f"regression_{key}_err"]
        ax.plot(ls, [r[f"{key}_err"] for r in reg], "-", color=color, label=f"|Δ{label}| exact (slope {slope:.2f})")
        dists, ses = [r[f"{key}_mc_dist"] for r in reg], [r[f"{key}_mc_se"] for r in reg]
        _mc_points(ax, ls, dists, ses, f"MC vs Euler–Maruyama ± SE ({label})", color=color)
    guide(ax, reg[0]["sq_norm_err"])
    ax.set_title("Regression, state-dependent noise")

    if gauss:
        ax = axes[3]
        g_ou, g_slopes = gauss["rows_ou"], gauss["slopes"]
        for key, label in (("mean_err", "‖E x − E X‖"), ("kernel_err", "|ΔE exp(−‖x‖²/2)|")):
            ax.plot(ls, [r[key] for r in g_ou], "o-", label=f"{label} (slope {g_slopes['ou_' + key]:.2f})")
        reg_err = [r["loss_err"] for r in gauss["rows_regression"]]
        ax.plot(ls, reg_err, "^-", label=f"regression |ΔE L| (slope {g_slopes['regression_loss_err']:.2f})")
        third = [r["svag_third_gap"] for r in g_ou]
        ax.plot(ls, third, "s--", label=f"|skewness SVAG − Gaussian| (slope {g_slopes['svag_third_gap']:.2f})")
        guide(ax, g_ou[0]["mean_err"])
        ax.set_title("Gaussian noise (NGD = Euler–Maruyama, Δt = η/l)")

    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ls, [str(l) for l in ls])
        ax.set_yscale("log")
        ax.set_xlabel("amplification l")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    cfg = data["config"]
    fig.suptitle(f"SVAG vs its SDE (P1 Thm 4.3): weak error O(1/l); MC {cfg['replicas']} replicas", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _mc_points(ax, ls, values, ses, label, color="C3") -> None:
    """Monte-Carlo points with ±SE bars on a log axis (the lower bar stops at a tenth of the value;
    hollow markers: not resolved, the value is within one SE of zero)."""
    lower = [min(se, 0.9 * v) if v > 0 else 0.0 for v, se in zip(values, ses)]
    ax.errorbar(ls, [max(v, 1e-300) for v in values], yerr=[lower, ses], fmt="none", ecolor=color, capsize=3)
    resolved = [v > se for v, se in zip(values, ses)]
    for flag, face in ((True, color), (False, "none")):
        xs = [l for l, ok in zip(ls, resolved) if ok == flag]
        ys = [v for v, ok in zip(values, resolved) if ok == flag]
        if xs:
            ax.plot(xs, ys, "s", mfc=face, mec=color, ms=5, label=label if flag or not any(resolved) else None)
