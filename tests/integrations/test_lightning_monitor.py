"""The Lightning callback on a user's path (issue 27): its ``svag/*`` values are monitorable (EarlyStopping,
ModelCheckpoint, ``trainer.logged_metrics``), a plain batch given to ``svag_training_step`` is refused in one line
naming ``pair_loader``, the default measures enough pairs, and too few pairs are said in words."""

import math

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

import svag
from svag.integrations.lightning import NoiseCallback, svag_training_step
from svag.lsr import FEW_ESTIMATES


def _trainer(**kw):
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
                     log_every_n_steps=1, **kw)  # fmt: skip


class Classifier(L.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
        self.lr = lr

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return svag.SVAG(self.parameters(), lr=self.lr)


class SVAGClassifier(Classifier):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, pair, batch_idx):
        return svag_training_step(self, pair, lambda b: F.cross_entropy(self.net(b[0]), b[1]))

    def configure_optimizers(self):
        return svag.SVAG(self.parameters(), lr=self.lr, l=2)


def _data(n: int, seed: int = 0) -> TensorDataset:
    """A learnable task (the class is the largest of the first three inputs), so G stands above its noise."""
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return TensorDataset(x, x[:, :3].argmax(1))


def test_early_stopping_sees_the_callbacks_values(tmp_path):
    """``EarlyStopping(monitor="svag/G", stopping_threshold=inf)`` stops after the first epoch (any finite G is
    below inf), which it can only do if it sees ``svag/G``; ``trainer.logged_metrics`` and ``callback_metrics``
    hold the epoch's values (64 samples, B = 8, fraction 1: 8 pairs per epoch)."""
    cb = NoiseCallback(8, fraction=1.0, verbose=False)
    stop = EarlyStopping(monitor="svag/G", mode="min", stopping_threshold=math.inf)
    logger = L.loggers.CSVLogger(tmp_path, name="", version="")
    trainer = _trainer(max_epochs=4, callbacks=[cb, stop], logger=logger)
    trainer.fit(Classifier(), DataLoader(_data(64), batch_size=8))
    assert trainer.current_epoch == 1 and len(cb.records) == 1 and stop.stopped_epoch == 0
    for key in ("G", "N", "gn_ratio", "B_simple", "noise_count"):
        assert float(trainer.logged_metrics[f"svag/{key}"]) == pytest.approx(cb.records[0][key], rel=1e-12)
        assert float(trainer.callback_metrics[f"svag/{key}"]) == pytest.approx(cb.records[0][key], rel=1e-12)


def test_model_checkpoint_monitors_the_ratio(tmp_path):
    """``ModelCheckpoint(monitor="svag/gn_ratio", mode="max")`` keeps the epoch of the largest G/N (3 epochs of 8
    steps, fraction 1); with ``log_every_n_steps=5`` the step records (steps 5, 10, 15, 20) come between the
    epoch records (8, 16, 24) and the checkpoint still reads each epoch's own value at its end."""
    cb = NoiseCallback(8, fraction=1.0, log_every_n_steps=5, verbose=False)
    keep = ModelCheckpoint(dirpath=tmp_path, monitor="svag/gn_ratio", mode="max", save_top_k=1)
    trainer = _trainer(max_epochs=3, callbacks=[cb, keep], enable_checkpointing=True)
    trainer.fit(Classifier(), DataLoader(_data(64), batch_size=8))
    assert [r["step"] for r in cb.records] == [5, 8, 10, 15, 16, 20, 24]
    epoch_ends = [r for r in cb.records if r["step"] % 8 == 0]
    assert float(keep.best_model_score) == pytest.approx(max(r["gn_ratio"] for r in epoch_ends), rel=1e-12)
    assert float(trainer.callback_metrics["svag/G"]) == pytest.approx(cb.records[-1]["G"], rel=1e-12)


def test_a_plain_batch_given_to_svag_training_step_is_one_line_naming_pair_loader():
    """A plain ``DataLoader`` of ``(inputs, targets)`` instead of :func:`pair_loader`'s ``(batch1, batch2)``."""
    message = r"^svag_training_step: pair must be \(batch1, batch2\)[^\n]*pair_loader[^\n]*$"
    with pytest.raises(ValueError, match=message):
        _trainer(max_epochs=1).fit(SVAGClassifier(), DataLoader(_data(32), batch_size=8))


def test_the_default_measures_enough_pairs_and_few_are_said_in_words():
    """2 epochs of 64 steps (n = 512, B = 8): the default aims at 2·FEW_ESTIMATES pairs over the window (here one
    every 2nd step: 64 pairs), where the former fraction 0.02 measured 3; the end line says in words when fewer
    than FEW_ESTIMATES back the interval, and not otherwise."""
    data = _data(512)
    default = NoiseCallback(8, verbose=False)
    _trainer(max_epochs=2, callbacks=[default]).fit(Classifier(), DataLoader(data, batch_size=8))
    assert default.prediction["count"] == 64 >= 2 * FEW_ESTIMATES
    assert "estimates back it" not in default.summary()
    sparse = NoiseCallback(8, fraction=0.02, verbose=False)
    _trainer(max_epochs=2, callbacks=[sparse]).fit(Classifier(), DataLoader(data, batch_size=8))
    assert sparse.prediction["count"] == 3  # steps 0, 50, 100
    assert f"only 3 pair estimates back it (fewer than {FEW_ESTIMATES}" in sparse.summary()


def test_the_default_follows_the_window():
    """With ``window=(1, 2)`` of 4 epochs of 64 steps, the default spreads its pairs over that epoch's 64 steps."""
    cb = NoiseCallback(8, window=(1, 2), verbose=False)
    _trainer(max_epochs=4, callbacks=[cb]).fit(Classifier(), DataLoader(_data(512), batch_size=8))
    assert cb.prediction["count"] == 64 and all(64 <= r["step"] <= 128 for r in cb.records)


def test_bad_fraction_is_still_refused():
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\] or None, got 0"):
        NoiseCallback(8, fraction=0)
