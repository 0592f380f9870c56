"""Write a small CSV data set to try svag on data of your own: three interleaved spirals in the plane,
embedded in 8 features (2 informative, 6 noise), one sample per row, the label last.

    python examples/own_model_csv/make_csv.py DIR [--n-train 3000] [--n-test 1000] [--seed 0]

writes DIR/train.csv and DIR/test.csv with the header f0,...,f7,label.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

FEATURES = 8
CLASSES = 3


def spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of three spiral arms (radius r ∈ [0.1, 1], one turn, noise 0.05) and 6 noise features."""
    labels = rng.integers(0, CLASSES, n)
    r = rng.uniform(0.1, 1.0, n)
    angle = 2 * np.pi * r + 2 * np.pi * labels / CLASSES
    xy = np.stack([r * np.cos(angle), r * np.sin(angle)], 1) + 0.05 * rng.standard_normal((n, 2))
    return np.concatenate([xy, 0.5 * rng.standard_normal((n, FEATURES - 2))], 1), labels


def write(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{i}" for i in range(FEATURES)] + ["label"])
        for row, label in zip(x, y):
            out.writerow([f"{v:.6f}" for v in row] + [int(label)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write train.csv and test.csv into")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, n in (("train", args.n_train), ("test", args.n_test)):
        write(out / f"{name}.csv", *spirals(n, rng))
    print(f"wrote {out / 'train.csv'} ({args.n_train} rows) and {out / 'test.csv'} ({args.n_test} rows)")


if __name__ == "__main__":
    main()
