"""SGD vs SVAG: the same config for a list of ``l`` and seeds, into one folder of runs."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from ..config import RunConfig
from ..records import write_csv, write_text
from ..runner import run
from ..summary import load_runs, markdown_table, summary_rows


def _log(message: str) -> None:
    print(message, flush=True)


__all__ = ["run_compare", "run_dir_name", "write_summary"]

TABLE_METRICS = ("test_acc", "test_loss", "train_loss", "weight_norm_sq")


def run_dir_name(l: float, seed: int) -> str:
    return f"l{l:g}_seed{seed}"


def run_compare(
    base: RunConfig,
    ls: list[float],
    seeds: list[int],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    log=None,
) -> dict[str, str]:
    """Run ``base`` at every ``l`` in ``ls`` and every seed; returns ``{run_dir: status}``.

    A run that fails (diverges, bad data) is reported and the others still run.
    """
    log = log or _log
    out = Path(out_dir)
    statuses: dict[str, str] = {}
    jobs = [(l, s) for l in ls for s in seeds]
    for i, (l, seed) in enumerate(jobs, 1):
        cfg = replace(base, l=float(l), seed=int(seed)).validate()
        name = run_dir_name(l, seed)
        log(f"[{i}/{len(jobs)}] {name}: {'SGD' if l == 1 else f'SVAG l={l:g}'}, seed {seed}")
        try:
            result = run(cfg, out / name, resume=resume, progress=progress)
            statuses[name] = result.status
        except ValueError as err:
            statuses[name] = f"failed: {str(err).splitlines()[0]}"
            print(f"  {name} failed: {err}", file=sys.stderr)
    return statuses


def write_summary(runs_dir: str | os.PathLike, metrics: tuple[str, ...] = TABLE_METRICS) -> tuple[Path, Path]:
    """``summary.md`` and ``summary.csv`` in ``runs_dir``: per l, mid-run and final metrics
    (mean ± std over seeds) and the distance of each l to the largest l."""
    runs = load_runs(runs_dir)
    rows = summary_rows(runs, metrics)
    md, csv = Path(runs_dir) / "summary.md", Path(runs_dir) / "summary.csv"
    write_text(md, markdown_table(rows, metrics))
    write_csv(csv, rows)
    return md, csv
