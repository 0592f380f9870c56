"""Compact Markdown tables for EXPERIMENTS.md from the summary.csv of run folders.

    python scripts/experiments_tables.py runs/exp/mnist1d-cnn-bn runs/exp/adam-mnist1d-mlp ...

One table per folder: for each l, test accuracy, test loss and ‖x‖² at mid-run and at the end,
mean ± std over seeds (as written by `svag compare` / `svag plot`).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

METRICS = (("test_acc", "test acc", 3), ("test_loss", "test loss", 3), ("weight_norm_sq", "‖x‖²", 1))


def table(folder: Path) -> str:
    rows = list(csv.DictReader(open(folder / "summary.csv")))
    head = ["l", "seeds"] + [f"{label} {when}" for _, label, _ in METRICS for when in ("mid", "end")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{float(r['l']):g}", r["seeds"]]
        for key, _, digits in METRICS:
            for when in ("mid", "final"):
                cells.append(f"{float(r[f'{key}_{when}']):.{digits}f} ± {float(r[f'{key}_{when}_std']):.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"**{Path(arg).name}**\n\n{table(Path(arg))}\n")
