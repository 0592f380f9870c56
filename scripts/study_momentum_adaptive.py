"""Two measured studies on exact-answer problems (library code: ``svag.problems.studies``).

    .venv/bin/python scripts/study_momentum_adaptive.py            # full size, ~3-5 min on 2 CPU cores
    .venv/bin/python scripts/study_momentum_adaptive.py --quick    # small sizes, ~15 s (a smoke run)

A. Momentum: exact stationary Tr Cov of SGDM(η, β) vs plain SGD at η/(1−β) and the SDE, over a ladder of
   η; fitted slope of |ratio − 1| vs η; Monte-Carlo check of the formula with torch.optim.SGD(momentum=β).
B. Adaptive SVAG: SVAGAdam / SVAGRMSprop at ℓ = 1..16 to a fixed time T, E‖x_T‖² and E uᵀx_T ± SE, the
   distances between successive ℓ and the fitted rates; center c = 0 (limit of E uᵀx_T exactly 0), and
   Adam on the off-center problem c = (2, −1) as a side case.

Writes ``<out>/momentum.json`` and ``<out>/adaptive.json`` atomically (``svag.records.write_json``), each
with its resolved config and wall time, and prints the two Markdown tables.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from svag.problems.studies import AdaptiveStudyConfig, MomentumStudyConfig, run_adaptive_study, run_momentum_study
from svag.records import write_json

MOMENTUM_HEAD = ["β", "η_eff", "η", "Tr SGDM(η)", "Tr SGD(η_eff)", "Tr SDE(η_eff)", "ratio", "ratio − 1"]
MOMENTUM_HEAD += ["ratio, 1st order", "SGDM/SDE − 1", "SGD/SDE − 1"]
MC_HEAD = ["β", "η", "R", "steps", "burn-in bias", "Tr Cov x: MC ± SE", "z vs SGDM", "z vs SGD(η_eff)", "z vs SDE"]
MC_HEAD += ["max abs z, (x, buf) moments"]
ADAPTIVE_HEAD = ["optimizer", "ℓ", "steps", "E‖x_T‖² ± SE", "dist to 2ℓ ± SE", "E uᵀx_T ± SE"]
ADAPTIVE_HEAD += ["dist to 2ℓ ± SE"]


def _markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def momentum_table(data: dict) -> str:
    rows = []
    for r in data["rows"]:
        cells = [f"{r['beta']:g}", f"{r['effective_lr']:g}", f"{r['lr']:.4g}"]
        cells += [f"{r[k]:.5f}" for k in ("trace_sgdm", "trace_sgd", "trace_sde", "ratio")]
        cells += [f"{r['ratio_minus_1']:+.3e}", f"{r['ratio_first_order']:.5f}"]
        rows.append(cells + [f"{r[k]:+.3e}" for k in ("sgdm_vs_sde", "sgd_vs_sde")])
    slopes = ", ".join(f"{k} {v:.3f}" for k, v in data["slopes"].items())
    mc = []
    for r in data["monte_carlo"]:
        cells = [f"{r['beta']:g}", f"{r['lr']:.4g}", str(r["replicas"]), str(r["steps"]), f"{r['burn_in_bias']:.1e}"]
        cells += [f"{r['trace_mc']:.5f} ± {r['trace_mc_se']:.5f}"]
        mc.append(cells + [f"{r[k]:+.2f}" for k in ("z_sgdm", "z_sgd", "z_sde")] + [f"{r['max_abs_z_state']:.2f}"])
    lines = [*_markdown(MOMENTUM_HEAD, rows), "", f"Fitted slopes of log|·| vs log η: {slopes}", ""]
    return "\n".join(lines + _markdown(MC_HEAD, mc))


def adaptive_table(data: dict) -> str:
    rows, rates = [], []
    cases = [("", data)] + ([("off-center ", data["off_center"])] if "off_center" in data else [])
    for prefix, case in cases:
        _adaptive_rows(prefix, case, rows, rates)
    return "\n".join([*_markdown(ADAPTIVE_HEAD, rows), "", *rates])


def _adaptive_rows(prefix: str, data: dict, rows: list, rates: list) -> None:
    for short, res in data["results"].items():
        name = prefix + short
        pairs = {p["l"]: p for p in res["pairs"]}
        for r in res["rows"]:
            cells, p = [name, str(r["l"]), str(r["steps"])], pairs.get(r["l"])
            for key in ("sq_norm", "mean_u"):
                cells.append(f"{r[key]:.5f} ± {r[f'{key}_se']:.5f}")
                mark = "" if p is None or p[f"{key}_resolved"] else " (< 3 SE)"
                cells.append("" if p is None else f"{p[f'{key}_dist']:.5f} ± {p[f'{key}_dist_se']:.5f}{mark}")
            rows.append(cells)
        rates.append(f"{name} fitted rates: " + ", ".join(f"{k} {v:.3f}" for k, v in res["rates"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/studies"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not the study")
    args = parser.parse_args()
    # One intra-op thread: the tensors are small, and on a shared 2-core machine two threads measured ~20× slower.
    torch.set_num_threads(1)
    momentum_cfg = MomentumStudyConfig(mc_replicas=4000) if args.quick else MomentumStudyConfig()
    adaptive_cfg = AdaptiveStudyConfig(ls=(1, 2, 4), replicas=4000) if args.quick else AdaptiveStudyConfig()
    # side case: the default center c = (2, -1) (no symmetry, no known limit), Adam only, fewer replicas
    off_center = replace(adaptive_cfg, center=(2.0, -1.0), optimizers=("adam",), replicas=adaptive_cfg.replicas // 3)

    def adaptive(cfg: AdaptiveStudyConfig) -> dict:
        return {**run_adaptive_study(cfg), "off_center": run_adaptive_study(off_center)}

    env = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}
    for name, run, cfg, table in (
        ("momentum", run_momentum_study, momentum_cfg, momentum_table),
        ("adaptive", adaptive, adaptive_cfg, adaptive_table),
    ):
        start = time.perf_counter()
        data = run(cfg)
        data.update(env=env, wall_s=time.perf_counter() - start)
        write_json(args.out / f"{name}.json", data)
        print(f"## {name} ({data['wall_s']:.0f} s, {args.out / f'{name}.json'})\n\n{table(data)}\n", flush=True)


if __name__ == "__main__":
    main()
