"""The LSR test (P1 §4) on a model of your own, from Python: where does the linear scaling rule fail?

A baseline run (B0 = 32, η0 = 0.2) measures the gradient signal G and noise N over its equilibrium
window and predicts B* = B0·τ·N/G; the sweep trains (κB0, κη0) for each batch size of --verify and
shows where G/N passes τ and the test error rises. The model is a small 1-D conv net written here,
the loss cross-entropy with label smoothing, both plain Python objects handed to ``svag.lsr_test``.

    python examples/lsr_from_python.py                # the real size (README: "Your own model")
    python examples/lsr_from_python.py --n-train 256 --n-test 128 --epochs 3 --milestone 2 --verify 64

Outputs in --out: one run folder per batch size, lsr.json, verdicts.md/.csv, lsr.png. The run
folders record the model as ``python:make_model`` (it lives in this script): run the script again
with --resume to continue them.
"""

from __future__ import annotations

import argparse

import torch.nn.functional as F
from torch import nn

import svag


class SmallConvNet(nn.Module):
    """Conv1d(C→16, 5) → ReLU → Conv1d(16→16, 5) → ReLU → global average → Linear(16→classes)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(16, 16, 5, padding=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


def make_model(input_shape, num_classes):
    """svag's model factory: one sample's shape (here MNIST-1D's (1, 40)) and the number of classes."""
    return SmallConvNet(input_shape[0], num_classes)


def smoothed_cross_entropy(outputs, targets):
    """The mean over the batch (svag checks it is a mean, not a sum)."""
    return F.cross_entropy(outputs, targets, label_smoothing=0.05)


def main(argv: list[str] | None = None) -> svag.api.LSRResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/lsr_from_python")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=30.0)
    parser.add_argument("--milestone", type=float, default=24.0, help="epoch of the LR decay (end of phase 1)")
    parser.add_argument("--verify", default="64,128,256,512", help="batch sizes of the sweep ('' for none)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per batch size of the sweep")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    verify = [int(b) for b in args.verify.split(",") if b.strip()]
    result = svag.lsr_test(
        make_model,
        "mnist1d",
        loss=smoothed_cross_entropy,
        out=args.out,
        verify=verify,
        n_train=args.n_train,
        n_test=args.n_test,
        epochs=args.epochs,
        milestones=(args.milestone,),
        seeds=args.seeds,
        resume=args.resume,
    )
    print(f"B* = {result.B_star:.4g} ± {result.B_star_se:.2g} (B_simple = B0/(G/N) = {result.B_simple:.4g})")
    for row in result.table("verdicts"):
        holds = "holds" if row["condition_holds"] else "fails"
        print(f"  B = {row['batch_size']:4d}: G/N = {row['ratio']:.3g} ({holds} G/N ≤ τ), test error "
              f"{row['test_error']:.3f}")  # fmt: skip
    print(f"outputs in {args.out}: lsr.json, verdicts.md, verdicts.csv")
    return result


if __name__ == "__main__":
    main()
