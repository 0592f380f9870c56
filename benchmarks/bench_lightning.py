"""The overhead of ``svag.integrations.lightning.NoiseCallback`` at its default fraction on the demo MLP (goal <= 5%).

A Lightning ``Trainer`` (CPU) fits the demo's network (``svag.models.build_model("mlp")``, MNIST-1D,
4000 samples, B = 32, ``torch.optim.SGD`` at η = 0.1) for a few epochs, with and without the
callback (``fraction=0.02``: an extra batch's forward and backward at every 50th step, plus the
pair estimate and the per-epoch logging). Rounds alternate (without, with, without, ...) so that
load on a shared machine affects both alike; each round is a fresh model and Trainer.

What is timed: from the start of the first training epoch to the end of the last (a timing
callback placed after the noise callback), so Trainer set-up and teardown are excluded on both
sides. Printed: the median over rounds of each side's training time, their ratio, and the median
and quartiles of the per-round ratios (each round's two fits ran back to back). On a loaded
machine those swing by more than the overhead, so the script also times the callback's own hooks
(everything it does: drawing and collating the extra batch, its forward and backward, the pair
estimate, the logging) and prints their share of the training time, numerator and denominator
from the same fit.

    python benchmarks/bench_lightning.py [--rounds 7] [--epochs 3] [--fraction 0.02] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore", message=r".*does not have many workers")
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
import lightning.pytorch as L  # noqa: E402

from svag.data import load_dataset  # noqa: E402
from svag.integrations.lightning import NoiseCallback  # noqa: E402
from svag.models import build_model  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


class Module(L.LightningModule):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Timer(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.elapsed = time.perf_counter() - self.start


HOOKS = ("on_train_start", "on_train_batch_start", "on_after_backward", "on_train_batch_end", "on_train_epoch_end")


def timed_hooks(callback: L.Callback, totals: list[float]) -> L.Callback:
    """Add the wall time spent in each of ``callback``'s hooks to ``totals[0]``."""
    for name in HOOKS:
        fn = getattr(callback, name)

        def timed(*args, fn=fn, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[0] += time.perf_counter() - t0

        setattr(callback, name, timed)
    return callback


def one_round(data, ds, epochs: int, fraction: float | None, in_hooks: list[float]) -> float:
    torch.manual_seed(0)
    net = build_model("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes)
    timer = Timer()
    noise = [] if fraction is None else [timed_hooks(NoiseCallback(32, fraction=fraction, verbose=False), in_hooks)]
    callbacks = [*noise, timer]
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    loader = DataLoader(data, batch_size=32, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    trainer.fit(Module(net), loader)
    return timer.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.02, help="the callback's fraction (default: its default)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist1d")
    data = TensorDataset(ds.train_x, ds.train_y)
    times: dict[str, list[float]] = {"without": [], "with": []}
    shares = []  # time inside the callback's hooks / training time, per "with" round
    for _ in range(args.rounds):
        times["without"].append(one_round(data, ds, args.epochs, None, [0.0]))
        in_hooks = [0.0]
        times["with"].append(one_round(data, ds, args.epochs, args.fraction, in_hooks))
        shares.append(in_hooks[0] / (times["with"][-1] - in_hooks[0]))
    steps = args.epochs * (len(data) // 32)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"demo MLP on MNIST-1D, B = 32, {steps} steps per fit, {args.rounds} rounds, {args.threads} thread(s)")
    for k, v in med.items():
        print(f"  {k:7s} callback: {v:.3f} s ({v / steps * 1e3:.3f} ms per step)")
    paired = sorted(w / wo for w, wo in zip(times["with"], times["without"]))  # each round's adjacent pair
    q1, q3 = paired[len(paired) // 4], paired[(3 * len(paired)) // 4]
    print(f"with / without the callback (fraction {args.fraction:g}): {med['with'] / med['without']:.3f} "
          f"(ratio of medians); per-round ratios: median {statistics.median(paired):.3f}, "
          f"quartiles {q1:.3f}-{q3:.3f}")  # fmt: skip
    print(f"time inside the callback's hooks / the rest of the training: median {statistics.median(shares):.4f}, "
          f"range {min(shares):.4f}-{max(shares):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
