"""How the cost of a run grows with l, B and model size, measured side by side in one run.

A run of E SGD-equivalent epochs at batch size B takes E·n/B SGD steps, or l·E·n/B SVAG steps of
two batches each. For each model and B this times one plain SGD step and one SVAG step (l = 2,
default ``accumulate`` mode; the step cost does not depend on l) interleaved over rounds, and
prints

    cost(SVAG run at l) / cost(SGD run) = l · t_svag(B) / t_sgd(B)

for l = 2, 4, 8, and the SGD step time per sample (how B amortizes per-step overhead).
Models: the MNIST-1D MLP (40-256-128-10 region), the small CNN (BN), ResNet-32 (BN) at width 0.5.

    python benchmarks/bench_cost.py [--batch-sizes 32,128,512] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from bench_step import _timed  # seconds per call of fn, over `steps` calls (this folder is on sys.path)
from svag import SVAG, train_step
from svag.models import build_model

MODELS = {"mlp": ((40,), "none", 1.0), "cnn-bn": ((1, 40), "bn", 1.0), "resnet32-bn": ((1, 40), "bn", 0.5)}


def measure(name: str, batch: int, rounds: int, steps: int) -> tuple[float, float]:
    shape, norm, width = MODELS[name]
    torch.manual_seed(0)
    model = build_model(name.split("-")[0], input_shape=shape, num_classes=10, norm=norm, width=width)
    params = [p for p in model.parameters() if p.requires_grad]
    sgd, svag = torch.optim.SGD(params, lr=1e-4), SVAG(params, lr=1e-4, l=2.0)
    b = [(torch.randn(batch, *shape), torch.randint(0, 10, (batch,))) for _ in range(2)]

    def loss_fn(batch_):
        return F.cross_entropy(model(batch_[0]), batch_[1])

    def sgd_step():
        sgd.zero_grad(set_to_none=True)
        loss_fn(b[0]).backward()
        sgd.step()

    def svag_step():
        train_step(svag, loss_fn, b[0], b[1])

    sgd_step(), svag_step()
    t_sgd, t_svag = [], []
    for _ in range(rounds):
        t_sgd.append(_timed(sgd_step, steps))
        t_svag.append(_timed(svag_step, steps))
    return statistics.median(t_sgd), statistics.median(t_svag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="32,128,512")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':12s} {'B':>5s} {'SGD ms':>8s} {'SVAG ms':>8s} {'us/sample':>10s} "
          f"{'run cost l=2':>13s} {'l=4':>6s} {'l=8':>6s}")  # fmt: skip
    for name in MODELS:
        for B in (int(x) for x in args.batch_sizes.split(",")):
            t1, t2 = measure(name, B, args.rounds, args.steps)
            r = t2 / t1
            print(f"{name:12s} {B:5d} {1e3 * t1:8.2f} {1e3 * t2:8.2f} {1e6 * t1 / B:10.2f} "
                  f"{2 * r:13.2f} {4 * r:6.2f} {8 * r:6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
