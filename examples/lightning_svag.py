"""SGD and SVAG inside PyTorch Lightning, with svag's G/N callback (README: "Inside PyTorch Lightning").

1. **SGD as the user trains it**: a LightningModule with automatic optimization, ``torch.optim.SGD``
   and a ``MultiStepLR`` decay, unchanged; ``svag.integrations.lightning.NoiseCallback`` measures G and N at every
   step of the window before the decay (the last sixth of the constant-LR phase, as ``svag lsr``), logs them
   with the trainer's logger and ends with P1's prediction B* = B·τ·N/G and its interval.
2. **The same network with SVAG** (l = 4 by default): the recipe of :mod:`svag.integrations.lightning` (manual
   optimization, two batches per step from ``pair_loader``, ``svag_training_step`` with the same
   decay on continuous time). Its test accuracy and G/N should match SGD's if SGD follows its SDE.

    python examples/lightning_svag.py            # the real size: MNIST-1D, 4000 samples, 12 epochs
    python examples/lightning_svag.py --small    # what the test suite runs (seconds)

Metrics go to --out (Lightning's CSVLogger: one folder per run, metrics.csv with svag/G, svag/N, ...).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import svag

warnings.filterwarnings("ignore", message=r".*does not have many workers")  # tiny CPU data: workers would not help
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")  # lightning vs torch
import lightning.pytorch as L  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from svag.integrations.lightning import NoiseCallback, pair_loader, svag_training_step  # noqa: E402

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def make_net(num_classes: int = 10) -> nn.Module:
    """The user's network: an MLP with BatchNorm (each SVAG batch gets its own statistics)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 128),
                         nn.ReLU(), nn.Linear(128, num_classes))  # fmt: skip


class Classifier(L.LightningModule):
    """The user's module: mean cross-entropy, SGD with weight decay, LR ×0.1 at ``milestone`` epochs."""

    def __init__(self, lr: float, weight_decay: float, milestone: int) -> None:
        super().__init__()
        self.net = make_net()
        self.lr, self.weight_decay, self.milestone = lr, weight_decay, milestone

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return [opt], [torch.optim.lr_scheduler.MultiStepLR(opt, [self.milestone], gamma=0.1)]


class SVAGClassifier(Classifier):
    """The recipe: the same module simulating the SDE of its SGD run with SVAG at amplification ``l``."""

    def __init__(self, lr: float, weight_decay: float, milestone: int, l: float, steps_per_epoch: float) -> None:
        super().__init__(lr, weight_decay, milestone)
        self.l = l
        self.automatic_optimization = False  # svag_training_step does both forwards, the backward and the step
        # the decay on continuous time t (SGD: lr per step): at the milestone's epoch for every l
        self.schedule = svag.schedules.MultiStep(lr, milestones=(milestone * steps_per_epoch * lr,), gamma=0.1)

    def training_step(self, pair, batch_idx):
        return svag_training_step(self, pair, lambda b: F.cross_entropy(self(b[0]), b[1]), schedule=self.schedule)

    def configure_optimizers(self):
        return svag.SVAG(self.parameters(), lr=self.lr, l=self.l, weight_decay=self.weight_decay)


@torch.no_grad()
def test_accuracy(module: L.LightningModule, x: torch.Tensor, y: torch.Tensor) -> float:
    module.eval()
    return float((module(x).argmax(1) == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="256 samples, 3 epochs, l = 2 (for the tests)")
    parser.add_argument("--l", type=float, default=4.0, help="SVAG amplification")
    parser.add_argument("--out", default="runs/lightning", help="folder of the CSV logs")
    args = parser.parse_args()
    n_train, n_test, epochs, milestone, l = (256, 128, 3, 2, 2.0) if args.small else (4000, 1000, 12, 10, args.l)
    B, lr, wd = 32, 0.1, 5e-4
    torch.set_num_threads(1)
    ds = svag.data.load_dataset("mnist1d", n_train=n_train, n_test=n_test)
    train = TensorDataset(ds.train_x, ds.train_y)  # any map-style Dataset works the same
    window = (milestone * 5 / 6, milestone)  # the last sixth of the constant-LR phase, in epochs

    results = {}
    for name in ("SGD", f"SVAG l={l:g}"):
        start = time.perf_counter()
        torch.manual_seed(0)  # the same initialization for both
        # every step of the window draws the extra batch (fraction 1, as svag lsr's baseline): G/N needs many
        callback = NoiseCallback(B, window=window, fraction=1.0, verbose=name == "SGD")
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[callback],
                            logger=CSVLogger(args.out, name=name.replace(" ", "_").replace("=", "")),
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            log_every_n_steps=min(10, n_train // B))  # fmt: skip
        if name == "SGD":
            module = Classifier(lr, wd, milestone)
            loader = DataLoader(train, batch_size=B, shuffle=True, drop_last=True)
        else:
            module = SVAGClassifier(lr, wd, milestone, l, steps_per_epoch=n_train / B)
            loader = pair_loader(train, B, l=l, seed=0)  # (batch1, batch2) per step, l·n/B steps per epoch
        trainer.fit(module, loader)
        p = callback.prediction
        results[name] = (test_accuracy(module, ds.test_x, ds.test_y), p["ratio"], p["ratio_se"], p["B_star"])
        print(f"{name}: {trainer.global_step} steps in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"\n| run | test acc | G/N in epochs [{window[0]:g}, {window[1]:g}) | B* |\n|---|---|---|---|")
    for name, (acc, ratio, ratio_se, b_star) in results.items():
        print(f"| {name} | {acc:.3f} | {ratio:.3g} ± {ratio_se:.2g} | {b_star:.4g} |")


if __name__ == "__main__":
    main()
