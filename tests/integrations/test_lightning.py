"""svag inside PyTorch Lightning (svag.integrations.lightning), against a real Trainer on the CPU: the callback's
G/N equals the runner's on the same trajectory, leaves the training as it was, logs through the
trainer's logger and predicts B* as `svag lsr` does; SVAG in Lightning equals the runner's SVAG."""

import csv
import math
import runpy
import subprocess
import sys
from dataclasses import replace

import lightning.pytorch as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import svag
from helpers import ROOT
from svag import runner
from svag.build import build_models
from svag.config import RunConfig
from svag.data import PairSampler, load_dataset
from svag.data.loader import StepBatches
from svag.integrations.lightning import NoiseCallback, pair_loader, svag_training_step
from svag.noise import pool_window
from svag.seeds import stream_seed

CFG = RunConfig(
    data="mnist1d", n_train=256, n_test=64, model="mlp", lr=0.1, batch_size=16, epochs=3.0, eval_every=1.0,
    checkpoint_every=0.0, eval_train_samples=64, noise_fraction=0.25, dtype="float64", device="cpu", seed=3,
)  # fmt: skip


def _trainer(**kw):
    kw.setdefault("logger", False)
    kw.setdefault("log_every_n_steps", 1)
    return L.Trainer(accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kw)  # fmt: skip


class Classifier(L.LightningModule):
    """A user's module around any network: mean cross-entropy, plain SGD (svag.SVAG at l = 1)."""

    def __init__(self, net, lr: float) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return svag.SVAG(self.parameters(), lr=self.lr)


class SVAGClassifier(L.LightningModule):
    """The README's recipe: manual optimization, two batches per step, svag_training_step."""

    def __init__(self, net, lr: float, l: float) -> None:
        super().__init__()
        self.net, self.lr, self.l = net, lr, l
        self.automatic_optimization = False

    def training_step(self, pair, batch_idx):
        return svag_training_step(self, pair, lambda b: F.cross_entropy(self.net(b[0]), b[1]))

    def configure_optimizers(self):
        return svag.SVAG(self.parameters(), lr=self.lr, l=self.l)


def _builtin(cfg: RunConfig):
    """The runner's data set and model for ``cfg`` (same initialization from the seed tree)."""
    ds = load_dataset(cfg.data, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed)
    (model,) = build_models(cfg, [cfg.seed], ds, torch.device("cpu"), torch.float64)
    return TensorDataset(ds.train_x.double(), ds.train_y), model


KEYS = ("G", "N", "G_se", "N_se", "GN_cov", "gn_ratio", "gn_ratio_se", "noise_count")


def test_callback_equals_the_runner_on_the_same_trajectory(tmp_path):
    """An SGD run of the built-in MLP (MNIST-1D, n = 256, B = 16, 3 epochs, seed 3, float64) through
    `svag.run` and through a Lightning Trainer with the same initialization, the same batches (the
    runner's sampler) and the callback at the runner's fraction 1/4: every epoch's G, N, their SEs,
    covariance, G/N and count agree (rtol 1e-9), and the logger received them."""
    rows = runner.run(CFG, tmp_path / "run", progress=False).records[1:]  # the t = 0 record has no G/N
    data, net = _builtin(CFG)
    sampler = PairSampler(len(data), CFG.batch_size, pairs=False, seed=stream_seed(CFG.seed, "data_order"))
    loader = DataLoader(data, batch_sampler=StepBatches(sampler, steps=len(data) // CFG.batch_size))
    cb = NoiseCallback(CFG.batch_size, fraction=CFG.noise_fraction, seed=CFG.seed, verbose=False)
    logger = L.loggers.CSVLogger(tmp_path / "logs", name="", version="")
    _trainer(max_epochs=3, callbacks=[cb], logger=logger).fit(Classifier(net, CFG.lr), loader)
    assert len(cb.records) == len(rows) == 3
    for got, want in zip(cb.records, rows):
        assert {k: got[k] for k in KEYS} == pytest.approx({k: want[k] for k in KEYS}, rel=1e-9, abs=1e-12)
        ratio = want["gn_ratio"]  # B_simple = B·N/G, infinite when Ĝ <= 0 (svag lsr's rule)
        assert got["B_simple"] == pytest.approx(CFG.batch_size / ratio if ratio > 0 else math.inf, rel=1e-12)
    with open(tmp_path / "logs" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("svag/G")]
    assert [float(r["svag/G"]) for r in logged] == pytest.approx([r["G"] for r in rows], rel=1e-9)
    # the end-of-training prediction is svag lsr's formula on the pooled window
    pooled = pool_window(rows)
    assert cb.prediction["ratio"] == pytest.approx(pooled.ratio, rel=1e-9)
    want = svag.lsr.predict_from_window(CFG.batch_size, pooled, 2.0)
    assert cb.prediction["B_star"] == pytest.approx(want.B_star, rel=1e-9)
    assert cb.prediction["B_star_se"] == pytest.approx(want.B_star_se, rel=1e-9)
    assert cb.prediction["low"] < cb.prediction["B_star"] < cb.prediction["high"]


def test_predict_from_window_is_predict_max_batch_with_se():
    """The one owner of B* from a window (svag lsr and the callback): the delta-method ratio SE."""
    res = pool_window([{"noise_count": 5, "G": 2.0, "N": 8.0, "G_se": 0.3, "N_se": 0.5, "GN_cov": 0.01}])
    pred = svag.lsr.predict_from_window(32, res, 2.0)
    assert pred.B_star == pytest.approx(32 * 2 * 8 / 2)
    assert pred.B_star_se == pytest.approx(pred.B_star * res.ratio_se / res.ratio)
    one = svag.lsr.predict_from_window(32, {"G": 2.0, "N": 8.0, "G_se": math.nan, "N_se": math.nan}, 2.0)
    assert one.B_star == pytest.approx(256) and math.isnan(one.B_star_se)


class DropoutBN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 32), torch.nn.BatchNorm1d(32),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 10))  # fmt: skip

    def forward(self, x):
        return self.body(x)


def _fit_state(data, callbacks, epochs=2):
    torch.manual_seed(0)
    module = Classifier(DropoutBN().double(), 0.1)
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    _trainer(max_epochs=epochs, callbacks=callbacks).fit(module, loader)
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_callback_leaves_the_training_unmodified():
    """With BatchNorm and dropout, 2 epochs with the callback measuring at every other step end with
    exactly the parameters and running statistics of the same run without it."""
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(128, 1, 40, generator=gen, dtype=torch.float64), torch.randint(0, 10, (128,)))
    without = _fit_state(data, [])
    cb = NoiseCallback(16, fraction=0.5, verbose=False)
    with_cb = _fit_state(data, [cb])
    assert sum(r["noise_count"] for r in cb.records) == 8  # steps 0, 2, ..., 14 of 16
    assert without.keys() == with_cb.keys()
    assert all(torch.equal(without[k], with_cb[k]) for k in without)


def test_window_limits_the_measurement_and_the_prediction(capsys):
    """``window=(1, 2)`` epochs: estimates only from steps in the second epoch (8 steps per epoch,
    fraction 1: 8 estimates), and the printed prediction names that window."""
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 40, generator=gen, dtype=torch.float64), torch.randint(0, 10, (64,)))
    torch.manual_seed(0)
    cb = NoiseCallback(8, fraction=1.0, window=(1, 2))
    _trainer(max_epochs=3, callbacks=[cb]).fit(Classifier(DropoutBN().double(), 0.05), DataLoader(data, batch_size=8))
    assert [r["noise_count"] for r in cb.records] == [8] and cb.records[0]["step"] == 16
    assert cb.prediction["count"] == 8
    out = capsys.readouterr().out
    assert "epochs [1, 2)" in out and "B* = B·τ·N/G" in out and cb.summary() in out


def test_svag_in_lightning_equals_the_runner(tmp_path):
    """SVAG at l = 2 through the recipe (pair_loader + svag_training_step + the callback) reproduces
    the runner's l = 2 run of the built-in MLP: the same per-epoch G/N from SVAG's own two batches
    (rtol 1e-9, float64), so the same trajectory, and the same final ‖x‖²."""
    cfg = replace(CFG, l=2.0, epochs=1.0, eval_every=0.5)
    rows = runner.run(cfg, tmp_path / "run", progress=False).records[1:]
    data, net = _builtin(cfg)
    loader = pair_loader(data, cfg.batch_size, l=cfg.l, seed=cfg.seed)
    cb = NoiseCallback(cfg.batch_size, seed=cfg.seed, log_every_n_steps=16, verbose=False)  # the runner's records
    module = SVAGClassifier(net, cfg.lr, cfg.l)
    _trainer(max_epochs=1, callbacks=[cb]).fit(module, loader)  # one epoch of the SGD run: l·n/B = 32 steps
    assert len(cb.records) == len(rows) == 2
    for got, want in zip(cb.records, rows):
        assert {k: got[k] for k in KEYS} == pytest.approx({k: want[k] for k in KEYS}, rel=1e-9, abs=1e-12)
    weights = sum(float((p.detach() ** 2).sum()) for p in module.parameters() if p.requires_grad)
    assert weights == pytest.approx(rows[-1]["weight_norm_sq"], rel=1e-12)
    assert module.optimizers().optimizer.sde_time == pytest.approx(rows[-1]["sde_time"], rel=1e-12)


def test_callback_state_round_trips():
    """What Lightning checkpoints of the callback (generator, open interval, records) restores it."""
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 40, generator=gen, dtype=torch.float64), torch.randint(0, 10, (64,)))
    cb = NoiseCallback(8, fraction=0.5, verbose=False, log_every_n_steps=3)
    _trainer(max_epochs=1, callbacks=[cb]).fit(Classifier(DropoutBN().double(), 0.05), DataLoader(data, batch_size=8))
    cb.acc.add(1.0, 2.0)  # an interval in progress
    twin = NoiseCallback(8)
    twin.load_state_dict(cb.state_dict())
    assert twin.records == cb.records and len(cb.records) >= 2
    assert twin.acc.count == 1 and twin.acc.result() == cb.acc.result()
    assert torch.equal(torch.randint(100, (5,), generator=twin._gen), torch.randint(100, (5,), generator=cb._gen))


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\] or None, got 0"):
        NoiseCallback(16, fraction=0)
    with pytest.raises(ValueError, match="window must be"):
        NoiseCallback(16, window=(2, 1))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        NoiseCallback(0)
    data = TensorDataset(torch.randn(32, 1, 40, dtype=torch.float64), torch.randint(0, 10, (32,)))
    torch.manual_seed(0)
    module = Classifier(DropoutBN().double(), 0.1)
    with pytest.raises(ValueError, match=r"needs full precision .* got 'bf16-mixed'"):
        _trainer(max_epochs=1, precision="bf16-mixed", callbacks=[NoiseCallback(8)]).fit(
            module, DataLoader(data, batch_size=8)
        )


class _MicroBatches:
    """The runner's step batches (B indices each) as M consecutive micro-batches of B/M: what --micro-batches M
    splits them into (torch.tensor_split), in order, for a loader under accumulate_grad_batches=M."""

    def __init__(self, steps, M):
        self.steps, self.M = steps, M

    def __iter__(self):
        for idx in self.steps:
            yield from (chunk.tolist() for chunk in torch.as_tensor(list(idx)).tensor_split(self.M))

    def __len__(self):
        return len(self.steps) * self.M


def test_accumulation_uses_the_micro_batches_as_the_runner_does(tmp_path):
    """accumulate_grad_batches = 4 (issue 25): the callback's G/N from the 4 micro-batches of every step equals
    `svag train --micro-batches 4 --noise-source microbatch` on the same trajectory (the MLP of the test above,
    B = 16, 3 epochs, float64; rtol 1e-7: Lightning sums loss/4 where the runner weighs the chunks, so the
    trajectories agree to rounding), and no extra batch is drawn (the generator stays at its start)."""
    cfg = replace(CFG, micro_batches=4, noise_source="microbatch")
    rows = runner.run(cfg, tmp_path / "run", progress=False).records[1:]
    data, net = _builtin(cfg)
    sampler = PairSampler(len(data), cfg.batch_size, pairs=False, seed=stream_seed(cfg.seed, "data_order"))
    steps = StepBatches(sampler, steps=len(data) // cfg.batch_size)
    loader = DataLoader(data, batch_sampler=_MicroBatches(steps, 4))
    cb = NoiseCallback(cfg.batch_size, seed=cfg.seed, verbose=False)
    start = cb._gen.get_state()
    _trainer(max_epochs=3, accumulate_grad_batches=4, callbacks=[cb]).fit(Classifier(net, cfg.lr), loader)
    assert len(cb.records) == len(rows) == 3 and cb.records[0]["noise_count"] == 16
    for got, want in zip(cb.records, rows):
        assert {k: got[k] for k in KEYS} == pytest.approx({k: want[k] for k in KEYS}, rel=1e-7, abs=1e-12)
    assert torch.equal(cb._gen.get_state(), start)


def test_import_svag_does_not_import_lightning():
    code = "import sys, svag; svag.lsr; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_example_runs_small(tmp_path, monkeypatch, capsys):
    """examples/lightning_svag.py at its small size: SGD and SVAG in Lightning with the callback."""
    monkeypatch.setattr(sys, "argv", ["lightning_svag.py", "--small", "--out", str(tmp_path)])
    torch.set_default_dtype(torch.float32)  # as a script runs (conftest's float64 is restored after the test)
    runpy.run_path(str(ROOT / "examples" / "lightning_svag.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "B* = B·τ·N/G" in out and "| SVAG l=2 |" in out


def test_pair_loader_epoch_comes_from_the_optimizers_clock():
    """One loader epoch covers one epoch of the simulated run, as the optimizer's clock counts it:
    n/B steps for SGD, l·n/B for SVAG (P1), l²·n/B for SVAGAdam (P2's square-root rule) — here n = 96,
    B = 8, l = 2: 12, 24 and 48 steps of pairs."""
    data = TensorDataset(torch.randn(96, 3), torch.randint(0, 2, (96,)))
    model = torch.nn.Linear(3, 2)
    sgd = pair_loader(data, 8)
    svag_sgd = pair_loader(data, 8, clock=svag.SVAG(model.parameters(), lr=0.1, l=2).clock())
    adam = svag.SVAGAdam(model.parameters(), lr=1e-3, l=2)
    svag_adam = pair_loader(data, 8, clock=adam.clock())
    assert [len(loader) for loader in (sgd, svag_sgd, svag_adam)] == [12, 24, 48]
    assert len(pair_loader(data, 8, l=2)) == 24  # l alone: SVAG's clock
    batch1, batch2 = next(iter(svag_adam))
    assert batch1[0].shape == batch2[0].shape == (8, 3) and next(iter(sgd))[1] is None
    with pytest.raises(ValueError, match="l=4 differs from the clock's l=2"):
        pair_loader(data, 8, l=4, clock=adam.clock())
