"""The verdict as text: the printed lines, ``verdicts.md`` and the rows of ``verdicts.csv``.

Everything here reads a report, the dict :func:`svag.analysis.report.compute_verdicts` returns
(and ``verdicts.json`` holds); nothing computes a statistic. Numbers in text are shown to two
significant figures of the margin δ (or of the interval's width), with a true minus sign; the CSV
keeps plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from svag.analysis.summary import model_text

__all__ = ["CSV_COLUMNS", "OUTCOME_TEXT", "csv_rows", "markdown", "verdict_header", "verdict_lines"]


def _fmt(x: float | None, digits: int) -> str:
    """``x`` with ``digits`` decimals and a true minus sign (for text; the CSV keeps plain numbers)."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}".replace("-", "−")


def _digits(scale: float) -> int:
    """Decimals that show ``scale`` (a margin or a width) to two significant figures."""
    if not math.isfinite(scale) or scale <= 0:
        return 3
    return max(0, 1 - math.floor(math.log10(scale)))


def _signed(x: float, digits: int) -> str:
    s = _fmt(x, digits)
    return s if s.startswith("−") or s == "—" else f"+{s}"


def _pair(iv: Sequence[float], digits: int) -> str:
    return f"[{_fmt(iv[0], digits)}, {_fmt(iv[1], digits)}]"


OUTCOME_TEXT = {"follows": "follows its SDE", "departs": "departs from its SDE", "inconclusive": "inconclusive"}


def verdict_header(report: Mapping, where: str = "end") -> str:
    """The line printed above :func:`verdict_lines`: the question, when (``"mid"`` or ``"end"``), how the SDE
    is extrapolated, the interval's level and whether the seeds are paired."""
    j = report["points"][where]
    when = "at the end" if where == "end" else "at mid-run"
    fit = ", ".join(f"{l:g}" for l in report["fit_ls"])
    return (
        f"does SGD follow its SDE? {when} (epoch {report['epochs'][j]:g}), the gap SGD − SDE "
        f"(SDE: {report['fit']} Richardson over l = {fit}) with its {report['level']:.0%} interval, "
        f"{'paired' if report['paired'] else 'unpaired'} seeds:"
    )


def verdict_lines(report: Mapping, where: str = "end") -> list[str]:
    """One line per metric with a verdict at ``where`` (``"mid"`` or ``"end"``), e.g.
    ``test_loss: follows its SDE — gap +0.004 [−0.010, 0.018] (δ = 0.021, 3 seeds)``, the interval at
    95%; with NGD runs a second line splits the gap."""
    j = report["points"][where]
    lines = []
    for metric, entry in report["metrics"].items():
        row = entry["rows"][j]
        if "outcome" not in row:
            continue
        d = _digits(row["delta"])
        text = (
            f"{metric}: {OUTCOME_TEXT[row['outcome']]} — gap {_signed(row['gap'], d)} {_pair(row['gap_interval'], d)} "
            f"(δ = {_fmt(row['delta'], d)}, {row['seeds']} seeds"
        )
        if row["outcome"] == "inconclusive":
            text += f"; about {row['seeds_needed']} seeds per l would decide"
        lines.append(text + ")")
        if row.get("non_gaussian"):
            ng, di = row["non_gaussian"], row["discretization"]
            lines.append(
                f"  = non-Gaussian noise (SGD − NGD) {_signed(ng['estimate'], d)} {_pair([ng['low'], ng['high']], d)}"
                f" + discretization (NGD − SDE) {_signed(di['estimate'], d)} {_pair([di['low'], di['high']], d)}"
            )
    return lines


def _margin_text(entry: dict | None, delta: float | None, digits: int) -> str:
    if entry is None:
        return "none"
    value = _fmt(delta, digits)
    if entry["source"] == "--margin":
        return f"{value} (--margin {entry['given']})"
    return f"{value} ({entry['value']:.0%} of SGD)" if entry["relative"] else value


def markdown(report: Mapping) -> str:
    """``verdicts.md``: the setting, the verdict table at mid-run and at the end, the decomposition
    (with NGD runs), pairing widths, the weak-order check and the notes."""
    lines = _setting_lines(report) + _table_lines(report)
    if report.get("ngd_seeds"):
        lines += _decomposition_lines(report)
    if report["paired"]:
        lines += _pairing_lines(report)
    lines += _order_lines(report) + _margin_lines(report)
    if report["notes"]:
        lines += _section("Notes", *(f"- {n}" for n in report["notes"]))
    return "\n".join(lines) + "\n"


def _recorded(setting: Mapping) -> dict:
    """What the runner recorded of the setting's run (``model_options``), as :func:`model_text` reads it; a
    ``verdicts.json`` from before that record has none."""
    return {"model_options": setting["model_options"]} if "model_options" in setting else {}


def _section(title: str, *lines: str) -> list[str]:
    """A ``## title`` section of ``verdicts.md``: a blank line, the heading, a blank line, then ``lines``."""
    return ["", f"## {title}", "", *lines]


def _setting_lines(report: Mapping) -> list[str]:
    """The title, the setting, how the SDE is extrapolated and what each verdict means."""
    level, alpha = report["level"], report["alpha"]
    eq = 1 - 2 * alpha
    ls = ", ".join(f"{l:g}" for l in report["ls"])
    fit_ls = ", ".join(f"{l:g}" for l in report["fit_ls"])
    fit = (
        f"weighted least squares of the per-l means on 1/l over l = {fit_ls} (weights: seeds per l)"
        if report["fit"] == "wls"
        else f"two-point Richardson on l = {fit_ls}"
    )
    s = report["setting"]
    names = s.get("names") or {}
    return [
        "# Does SGD follow its SDE? The verdict",
        "",
        f"{model_text(s, _recorded(s))}, {names.get('simulated', s['optimizer'])} η={s['lr']:g}, "
        f"B={s['batch_size']}, λ={s['weight_decay']:g}, {s['epochs']:g} epochs, sampling {s['sampling']}.",
        "",
        f"SGD is the l = 1 run; its SDE (l → ∞) is extrapolated from SVAG at l = {ls}: Richardson, μ_l = μ_∞ + c/l, "
        f"{fit}. Seeds {', '.join(map(str, report['seeds']))}; {report['pairing']}.",
        "",
        f"*follows*: the {eq:.0%} interval of the gap SGD − SDE lies inside ±δ (two one-sided tests at "
        f"{alpha:.0%}); *departs*: the {1 - alpha:.0%} interval excludes 0 and |gap| > δ; otherwise *inconclusive*, "
        f"with the seeds per l at which the {eq:.0%} interval's half-width would fall below δ/2 at the observed "
        f"spread. Intervals shown: {level:.0%} (t over seeds).",
        "",
    ]


def _table_lines(report: Mapping) -> list[str]:
    """One row per metric and report point (mid-run, end): SGD, SDE, the gap and its intervals, δ, the verdict."""
    level, eq = report["level"], 1 - 2 * report["alpha"]
    lines = [
        f"| metric | when | SGD | SDE ({level:.0%}) | gap SGD − SDE ({level:.0%}) | {eq:.0%} interval | δ | verdict "
        "| seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for metric, entry in report["metrics"].items():
        for where, j in report["points"].items():
            row = entry["rows"][j]
            when = f"{where} (epoch {row['epoch']:g})"
            if "gap" not in row:
                lines.append(f"| {metric} | {when} | — | — | — | — | — | no interval: {row.get('error', '')} | — |")
                continue
            width = row["gap_interval"][1] - row["gap_interval"][0]
            d = _digits(row.get("delta") or width / 4)
            dm = _digits(abs(row["sde_interval"][1] - row["sde_interval"][0]) / 4)
            outcome = row.get("outcome")
            if outcome == "inconclusive":
                outcome += f" ({row['seeds_needed']} seeds per l would decide)"
            elif outcome is None:
                outcome = f"no margin (--margin {metric}=VALUE)" if entry["margin"] is None else row.get("reason", "")
            cells = [
                metric,
                when,
                _fmt(row["sgd"], dm),
                f"{_fmt(row['sde'], dm)} {_pair(row['sde_interval'], dm)}",
                f"{_signed(row['gap'], d)} {_pair(row['gap_interval'], d)}",
                _pair(row["gap_equivalence_interval"], d),
                _margin_text(entry["margin"], row.get("delta"), d),
                outcome,
                str(row["seeds"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _decomposition_lines(report: Mapping) -> list[str]:
    """With NGD runs: the gap as SGD − NGD (non-Gaussian noise) plus NGD − SDE (discretization)."""
    level = report["level"]
    lines = _section(
        "The gap in two parts (NGD runs)",
        "NGD: full-batch gradient plus Gaussian noise with SGD's covariance, at l = 1 (P1's NGD; Euler–Maruyama "
        f"of the SDE with step η). SGD − NGD is the effect of SGD's non-Gaussian noise, NGD − SDE the "
        f"discretization error at step η; the two add up to the gap. {level:.0%} intervals.",
        "",
        "| metric | when | NGD | SGD − SDE | SGD − NGD (non-Gaussian) | NGD − SDE (discretization) |",
        "|---|---|---|---|---|---|",
    )
    for metric, entry in report["metrics"].items():
        for where, j in report["points"].items():
            row = entry["rows"][j]
            if not row.get("non_gaussian"):
                continue
            d = _digits(row.get("delta") or (row["gap_interval"][1] - row["gap_interval"][0]) / 4)
            parts = [row["total"], row["non_gaussian"], row["discretization"]]
            cells = " | ".join(f"{_signed(p['estimate'], d)} {_pair([p['low'], p['high']], d)}" for p in parts)
            lines.append(f"| {metric} | {where} | {_fmt(row['ngd'], d)} | {cells} |")
    return lines


def _pairing_lines(report: Mapping) -> list[str]:
    """With paired seeds: the width of the gap's interval at the end, paired and unpaired."""
    level = report["level"]
    lines = _section(
        "Pairing",
        f"Width of the gap's {level:.0%} interval at the end, paired (as above) and with the same runs treated as "
        "independent groups (unpaired):",
        "",
        "| metric | paired | unpaired | paired / unpaired |",
        "|---|---|---|---|",
    )
    j = report["points"]["end"]
    for metric, entry in report["metrics"].items():
        row = entry["rows"][j]
        if "gap_interval_unpaired" not in row:
            continue
        wp = row["gap_interval"][1] - row["gap_interval"][0]
        wu = row["gap_interval_unpaired"][1] - row["gap_interval_unpaired"][0]
        d = _digits(wp / 4)
        lines.append(f"| {metric} | {_fmt(wp, d)} | {_fmt(wu, d)} | {wp / wu:.2f} |" if wu > 0 else
                     f"| {metric} | {_fmt(wp, d)} | {_fmt(wu, d)} | — |")  # fmt: skip
    return lines


def _order_lines(report: Mapping) -> list[str]:
    """The weak-order-1 check: the metrics whose successive differences do not halve, if any."""
    level = report["level"]
    flagged = []
    for metric, entry in report["metrics"].items():
        for where, j in report["points"].items():
            order = entry["rows"][j].get("order")
            if order and any(order["flags"]):
                ratios = ", ".join(f"{r:.2f}" for r in order["ratios"])
                flagged.append(f"- {metric} ({where}): ratios {ratios} (expected {order['expected'][0]:.2f})")
    lines = _section("Weak order 1")
    if len(report["ls"]) < 3:
        lines.append("Checking that successive differences μ_l − μ_{2l} halve needs at least 3 values of l.")
    elif flagged:
        lines.append(
            "The successive differences μ_l − μ_{2l} of these metrics do not shrink like 1/l (the contrast "
            f"d_(j+1) − ρ d_j excludes 0 at {level:.0%}): the extrapolation's O(1/l²) bias may not be small. "
            "A two-point fit on the largest l (`--fit two_point`) or a fit without l = 1 (`--fit-ls`) is less exposed."
        )
        lines += ["", *flagged]
    else:
        lines.append(f"Successive differences μ_l − μ_{{2l}} are consistent with 1/l ({level:.0%}) for every metric "
                     "at mid-run and at the end.")  # fmt: skip
    return lines


def _margin_lines(report: Mapping) -> list[str]:
    """Each metric's margin δ: none, a ``--margin``, or the default with its rationale."""
    lines = _section("Margins")
    for metric, entry in report["metrics"].items():
        m = entry["margin"]
        if m is None:
            lines.append(f"- {metric}: none (no default; give one with --margin {metric}=VALUE or PERCENT%)")
        elif m["source"] == "--margin":
            lines.append(f"- {metric}: {m['given']} (--margin)")
        else:
            size = f"{m['value']:.0%} of SGD's value" if m["relative"] else f"{m['value']:g}"
            lines.append(f"- {metric}: {size}, {m['rationale']}")
    return lines


CSV_COLUMNS = (
    "metric", "where", "sde_time", "epoch", "sgd", "sde", "sde_low", "sde_high", "gap", "gap_se", "gap_df",
    "gap_low", "gap_high", "gap_eq_low", "gap_eq_high", "delta", "outcome", "seeds", "seeds_needed",
    "width_paired", "width_unpaired", "ngd", "non_gaussian", "non_gaussian_low", "non_gaussian_high",
    "discretization", "discretization_low", "discretization_high",
)  # fmt: skip


def csv_rows(report: Mapping) -> list[dict]:
    where = {j: w for w, j in report["points"].items()}
    out = []
    for metric, entry in report["metrics"].items():
        for j, row in enumerate(entry["rows"]):
            r = {"metric": metric, "where": where.get(j, ""), "sde_time": row["time"], "epoch": row["epoch"]}
            if "gap" in row:
                r.update(
                    sgd=row["sgd"], sde=row["sde"], sde_low=row["sde_interval"][0], sde_high=row["sde_interval"][1],
                    gap=row["gap"], gap_se=row["gap_se"], gap_df=row["gap_df"], gap_low=row["gap_interval"][0],
                    gap_high=row["gap_interval"][1], gap_eq_low=row["gap_equivalence_interval"][0],
                    gap_eq_high=row["gap_equivalence_interval"][1], seeds=row["seeds"],
                )  # fmt: skip
                width = row["gap_interval"][1] - row["gap_interval"][0]
                if report["paired"]:
                    r["width_paired"] = width
                    if "gap_interval_unpaired" in row:
                        r["width_unpaired"] = row["gap_interval_unpaired"][1] - row["gap_interval_unpaired"][0]
                else:
                    r["width_unpaired"] = width
            for key in ("delta", "outcome", "seeds_needed", "ngd"):
                if row.get(key) is not None:
                    r[key] = row[key]
            for part in ("non_gaussian", "discretization"):
                if row.get(part):
                    r[part], r[f"{part}_low"], r[f"{part}_high"] = (row[part][k] for k in ("estimate", "low", "high"))
            out.append(r)
    return out
