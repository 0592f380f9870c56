"""PyTorch Lightning: measure ``G`` and ``N`` in a user's own training, and train a LightningModule with SVAG.

Needs the optional extra (``pip install 'svag[lightning]'``); ``import svag`` never imports this
module or Lightning: ``from svag.integrations.lightning import NoiseCallback``.

**The callback.** :class:`NoiseCallback` measures P1's gradient signal ``G = ‖∇L‖²`` and noise
``N = Tr Σ_B`` during an unmodified ``Trainer.fit``, with the runner's estimators (:mod:`svag.noise`):
at every ``k``-th optimizer step (inside ``window`` if given; by default ``k`` spreads ``TARGET_PAIRS``
pairs over the window, ``k = round(1/fraction)`` with ``fraction=``) it computes the gradient of one extra
batch of ``B`` indices drawn i.i.d. from the training set with its own generator (the ``noise_batches``
stream of :mod:`svag.seeds`), at the parameters of the step, and pairs it with the step's own batch
gradient (``on_after_backward``): the unbiased
``Ĝ = ⟨g1, g2⟩``, ``N̂ = ‖g1 − g2‖²/2`` (:func:`svag.noise.pair_estimates`), averaged apart over
each logging interval (:class:`svag.noise.NoiseAccumulator`). This is exactly what ``svag train``
does for an SGD run, so on the same trajectory both give the same numbers (a test checks it). The
extra batch leaves the user's run as it was: BatchNorm running statistics and every module's mode
are restored (as :func:`svag.noise.measure_noise` does), ``.grad`` is not touched, and the global
RNG (dropout) is forked around it. A module trained with SVAG (:func:`svag_training_step`) hands
its own two batch gradients to the callback instead, at every step of the window, as the runner does.

At the end of each epoch it logs through the module's ``log`` ``svag/G``, ``svag/N``, ``svag/gn_ratio``
(G/N), their SEs, ``svag/noise_count`` and ``svag/B_simple`` (``B·N/G``, McCandlish et al.'s simple noise
scale): they reach the loggers and ``trainer.logged_metrics``, and ``EarlyStopping``/``ModelCheckpoint`` can
monitor them (``monitor="svag/gn_ratio"``). Every ``log_every_n_steps`` steps, if given, it writes them to the
loggers at that step and into ``trainer.callback_metrics`` (monitorable; the trainer's own
``log_every_n_steps`` does not thin them out). At the end of training it pools the window's records
(:func:`svag.noise.pool_window`) and states P1's prediction ``B* = B0·τ·N0/G0`` with its 95% interval
(:func:`svag.lsr.predict_from_window`, the formula of ``svag lsr``), in words when fewer than
:data:`svag.lsr.FEW_ESTIMATES` pairs back the interval. P1 reads ``G/N`` at the equilibrium of the
constant-LR phase: choose ``window`` there (e.g. the last sixth of the first constant-LR phase, as
``svag lsr`` does).

What it assumes: ``training_step`` returns the **mean** loss of the batch (a tensor, or a dict or
tuple holding it: :mod:`svag.batch_loss`), or you pass ``loss_fn(module, batch)``; the data set of
the training ``DataLoader`` is map-style and its ``collate_fn`` makes a batch from samples; full
precision and one device (under DDP the gradient after backward is the average over the processes' batches).

**With gradient accumulation** (``accumulate_grad_batches = A > 1``) no extra batch is drawn: the ``A``
micro-batch gradients of every optimizer step in the window give ``Ĝ`` and ``N̂`` at the step's batch
``B = A·b`` (:class:`svag.noise.MicroBatchSums`, McCandlish et al. 2018, App. A), pooled as the pairs are.
Each micro-batch's gradient is the change of ``.grad`` over its backward (one copy of the gradient held
between backwards, one subtraction and one norm per micro-batch; ``.grad`` itself is never changed), read
unclipped in ``on_before_optimizer_step``. ``batch_size`` is then the step's ``B`` (``A`` times the loader's);
the micro-batches must be of equal size (``drop_last=True`` when ``b`` does not divide the data set).

**SVAG in Lightning** (the recipe; ``examples/lightning_svag.py`` runs it). Manual optimization,
:func:`pair_loader` for two batches per step and :func:`svag_training_step` for the step:

.. code-block:: python

    class Module(L.LightningModule):
        def __init__(self, net, lr, l):
            super().__init__()
            self.net, self.lr, self.l = net, lr, l
            self.automatic_optimization = False  # svag.train_step does the two forwards and the step

        def configure_optimizers(self):
            return svag.SVAG(self.parameters(), lr=self.lr, l=self.l)  # lr of the SGD run

        def training_step(self, pair, batch_idx):
            return svag_training_step(self, pair, lambda b: F.cross_entropy(self.net(b[0]), b[1]))

    loader = pair_loader(train_set, batch_size=32, l=4, seed=0)  # (batch1, batch2) per step, l·n/B per epoch
    L.Trainer(max_epochs=epochs, callbacks=[NoiseCallback(32)]).fit(Module(net, 0.1, 4), loader)

Each batch gets its own forward pass (BatchNorm sees each batch's statistics, as in the SGD run),
the amplified gradient ``a1 g1 + a2 g2`` steps with ``lr/l``, and ``schedule=`` sets the LR from
the optimizer's continuous time ``sde_time`` before each step (a :mod:`svag.schedules` schedule on
``t``), so every ``l`` follows the same schedule in time. ``l`` SVAG steps cover one SGD step: run
``l ×`` the SGD run's steps (``opt.clock().steps_to(lr, T)``): an epoch of :func:`pair_loader` is
``l·n/B`` steps (one epoch of the simulated SGD run), so ``max_epochs`` stays the SGD run's.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader

from svag.batch_loss import scalar_loss
from svag.clock import Clock, check_l
from svag.data.loader import StepBatches
from svag.data.sampling import PairSampler
from svag.lsr import FEW_ESTIMATES, check_tau, check_window, prediction_line, window_prediction
from svag.noise import MicroBatchSums, NoiseAccumulator, _Preserved, pair_estimates
from svag.runner.recorder import NOISE_KEYS
from svag.runner.timeline import TIME_RTOL
from svag.seeds import check_seed, generator, stream_seed
from svag.step import amplified_backward

__all__ = ["NoiseCallback", "pair_loader", "svag_training_step"]

TARGET_PAIRS = 2 * FEW_ESTIMATES  # what the default spreads over the window: twice the count below which B* is rough
ENDLESS_PERIOD = 50  # the default's period in a fit of unknown length (no max_steps, max_epochs=-1): fraction 0.02


def _training_step_loss(module: LightningModule, batch: Any) -> torch.Tensor:
    """The mean loss ``module.training_step`` returns on ``batch``, with its ``self.log`` calls muted
    (the extra batch must not enter the user's logged metrics)."""
    module.log, module.log_dict = _mute, _mute  # instance attributes shadow the methods
    try:
        return scalar_loss(module.training_step(batch, 0), "NoiseCallback")
    finally:
        del module.log, module.log_dict


def _mute(*args: Any, **kwargs: Any) -> None:
    return None


class NoiseCallback(Callback):
    """Log ``G``, ``N``, ``G/N`` and ``B_simple`` during ``Trainer.fit`` and state P1's ``B*`` at the end.

    Args:
        batch_size: ``B`` of the run (of each optimizer step): ``N`` is the noise at this batch size, and the
            extra batches have it; with ``accumulate_grad_batches = A`` it is ``A`` times the loader's batch.
        fraction: share of optimizer steps that draw the extra batch (cost ≈ ``fraction`` of the
            forward/backward work); the steps ``0, k, 2k, …`` with ``k = round(1/fraction)``, as
            ``svag train --noise-fraction``. Default ``None``: ``k = max(1, ⌊S/TARGET_PAIRS⌋)`` with ``S`` the
            fit's optimizer steps in the window (``trainer.estimated_stepping_batches``), so about
            ``TARGET_PAIRS = 2·FEW_ESTIMATES = 60`` pairs back ``B*`` whatever the run's length: a long run pays
            little (``1/k``), a short one measures often (every step below 120 steps) instead of predicting
            from a handful (the former default 0.02 gave 5 pairs in 2 epochs of ~125 steps); a fit of unknown
            length measures every 50th step. SVAG-trained modules measure at every step of the window.
        window: ``(start, end)`` in epochs (``global_step`` / steps per epoch): measure only from
            ``start`` to ``end``, and predict ``B*`` from that window (default: the whole run).
        tau: P1's threshold ``τ`` on ``G/N`` (``B* = B0·τ·N/G``).
        seed: root of the seed tree whose ``noise_batches`` stream draws the extra batches.
        dataset: where the extra batches come from (default: the training ``DataLoader``'s data set).
        loss_fn: ``loss_fn(module, batch) -> mean loss`` (default: what ``training_step`` returns).
        log_every_n_steps: also log every this many optimizer steps (default: at epoch ends only).
        verbose: print the prediction at the end of training (rank 0).

    After ``fit``: :attr:`records` (one dict per logged interval: ``step``, ``epoch`` and the fields
    ``G``, ``N``, ``G_se``, ``N_se``, ``GN_cov``, ``gn_ratio``, ``gn_ratio_se``, ``noise_count`` of
    ``metrics.jsonl``, plus ``B_simple``) and :attr:`prediction` (``B_star``, ``B_star_se``, ``low``,
    ``high``, ``tau``, the pooled ``G``, ``N``, ``ratio``, ``ratio_se``, ``count``, ``window``).
    """

    def __init__(
        self,
        batch_size: int,
        *,
        fraction: float | None = None,
        window: tuple[float, float] | None = None,
        tau: float = 2.0,
        seed: int = 0,
        dataset: Any = None,
        loss_fn: Callable[[LightningModule, Any], Any] | None = None,
        log_every_n_steps: int | None = None,
        verbose: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1
        ):
            raise ValueError(f"fraction must be in (0, 1] or None, got {fraction!r}")
        window, tau = check_window(window), check_tau(tau)
        if log_every_n_steps is not None and (not isinstance(log_every_n_steps, int) or log_every_n_steps < 1):
            raise ValueError(f"log_every_n_steps must be an integer >= 1 or None, got {log_every_n_steps!r}")
        self.batch_size, self.tau = batch_size, float(tau)
        self.fraction = None if fraction is None else float(fraction)
        self.window = window
        self.seed = check_seed(seed)
        self.period = 1 if fraction is None else round(1 / self.fraction)  # as the runner: every period-th step
        self.dataset, self.loss_fn, self.log_every, self.verbose = dataset, loss_fn, log_every_n_steps, verbose
        self._gen = generator(self.seed, "noise_batches")
        self.acc = NoiseAccumulator(self.batch_size)
        self.records: list[dict[str, Any]] = []
        self.prediction: dict[str, Any] | None = None
        self._extra: list[torch.Tensor | None] | None = None
        self._collate: Callable[[list], Any] | None = None
        self._accumulate = 1  # accumulate_grad_batches of the fit (automatic optimization)
        self._sums = MicroBatchSums()
        self._before: list[torch.Tensor | None] | None = None  # .grad before this micro-batch's backward

    # -- when to measure ------------------------------------------------------------------------
    def _steps_per_epoch(self, trainer: Trainer) -> float:
        n = trainer.num_training_batches
        return float(n) if isinstance(n, (int, float)) and math.isfinite(n) and n > 0 else math.inf

    def default_period(self, trainer: Trainer) -> int:
        """``k = max(1, ⌊S/TARGET_PAIRS⌋)``, ``S`` the optimizer steps of the fit in the window (``fraction=None``)."""
        total = float(trainer.estimated_stepping_batches)
        per_epoch = self._steps_per_epoch(trainer)
        if self.window is not None and math.isfinite(per_epoch):
            start, end = (math.ceil(min(total, w * per_epoch)) for w in self.window)  # first steps in, past
            steps = end - start
        else:
            steps = total
        if not math.isfinite(steps):
            return ENDLESS_PERIOD
        return max(1, int(steps // TARGET_PAIRS))

    def in_window(self, trainer: Trainer) -> bool:
        """Whether the step about to be taken (``global_step``) lies in the window."""
        if self.window is None:
            return True
        epoch = trainer.global_step / self._steps_per_epoch(trainer)
        return self.window[0] <= epoch < self.window[1]

    # -- Lightning hooks --------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size != 1:
            raise ValueError(f"NoiseCallback measures on one device, got world_size {trainer.world_size}")
        if str(trainer.precision) not in ("32-true", "64-true", "32", "64"):
            raise ValueError(f"NoiseCallback needs full precision (32-true or 64-true), got {trainer.precision!r}")
        self._accumulate = int(trainer.accumulate_grad_batches) if pl_module.automatic_optimization else 1
        if self.fraction is None:
            self.period = self.default_period(trainer)
        self._sums.reset()
        self._before = None
        if self._accumulate > 1:  # the micro-batches are the estimator: no extra batch, no data set needed
            return
        if self.dataset is None:
            loader = trainer.train_dataloader
            self.dataset = getattr(loader, "dataset", None)
            self._collate = getattr(loader, "collate_fn", None)
        if not (hasattr(self.dataset, "__getitem__") and hasattr(self.dataset, "__len__")):
            raise ValueError(
                f"NoiseCallback draws its extra batches from a map-style data set, got {type(self.dataset).__name__}: "
                "pass dataset=..."
            )
        if self._collate is None:
            self._collate = torch.utils.data.default_collate

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self._accumulate > 1 or not pl_module.automatic_optimization:
            return
        if step % self.period or not self.in_window(trainer):
            return
        self._extra = self.extra_grads(pl_module)

    def extra_grads(self, pl_module: LightningModule) -> list[torch.Tensor | None]:
        """The gradient of the mean loss on one extra batch of ``B`` i.i.d. indices, at the current
        parameters; BatchNorm statistics, module modes, ``.grad`` and the global RNG are left as they were."""
        idx = torch.randint(len(self.dataset), (self.batch_size,), generator=self._gen)
        batch = self._collate([self.dataset[i] for i in idx.tolist()])
        batch = move_data_to_device(batch, pl_module.device)
        params = [p for p in pl_module.parameters() if p.requires_grad]
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _Preserved(pl_module):
            if self.loss_fn is None:
                loss = _training_step_loss(pl_module, batch)
            else:
                loss = scalar_loss(self.loss_fn(pl_module, batch), "NoiseCallback")
            return list(torch.autograd.grad(loss, params, allow_unused=True))

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._accumulate > 1:
            if self.in_window(trainer):
                self._add_micro(pl_module)
            return
        if self._extra is None:
            return
        params = [p for p in pl_module.parameters() if p.requires_grad]
        self.add_pair([p.grad for p in params], self._extra)
        self._extra = None

    def _add_micro(self, pl_module: LightningModule) -> None:
        """This micro-batch's gradient ``(.grad after) − (.grad before)``, which Lightning scaled by ``1/A``."""
        grads = [p.grad for p in pl_module.parameters() if p.requires_grad]
        before = self._before
        delta = grads if before is None else [g if b is None else g - b for g, b in zip(grads, before)]
        self._sums.add(delta, scale=1.0 / self._accumulate)
        self._before = [None if g is None else g.detach().clone() for g in grads]

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self._accumulate == 1:
            return
        sums, self._before = self._sums, None
        if sums.count >= 2:  # .grad = (m/A)·ḡ of the m micro-batches (m < A at an epoch's short last step)
            grads = [p.grad for p in pl_module.parameters() if p.requires_grad]
            G, N = sums.result(grads, scale=sums.count / self._accumulate)
            if math.isfinite(G) and math.isfinite(N):
                self.acc.add(G, N)
        sums.reset()

    def add_pair(self, g1: list[torch.Tensor | None], g2: list[torch.Tensor | None]) -> None:
        """Add the pair estimate of two independent batch gradients at the same parameters."""
        G, N = pair_estimates([None if g is None else g.unsqueeze(0) for g in g1],
                              [None if g is None else g.unsqueeze(0) for g in g2])  # fmt: skip
        G, N = float(G[0]), float(N[0])
        if math.isfinite(G) and math.isfinite(N):
            self.acc.add(G, N)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if self.log_every and trainer.global_step % self.log_every == 0:
            self._record(trainer, pl_module, at_step=True)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, pl_module)

    def _record(self, trainer: Trainer, pl_module: LightningModule | None = None, at_step: bool = False) -> None:
        """Log the interval's G/N (if it has estimates) and start the next interval.

        At an epoch's end through ``pl_module.log`` (``on_epoch``: Lightning hands them to the loggers and to
        ``logged_metrics``, and the monitoring callbacks, which run after, see them); at a step (``at_step``)
        straight to the loggers, at that step, and into ``callback_metrics`` through ``pl_module.log``
        (``logger=False``); after training (no ``pl_module``: ``log`` is not allowed there) to the loggers."""
        if self.acc.count == 0:
            return
        res = self.acc.result()
        self.acc.reset()
        values = (res.G, res.N, res.G_se, res.N_se, res.GN_cov, res.ratio, res.ratio_se, res.m)
        row = {"step": trainer.global_step, "epoch": trainer.global_step / self._steps_per_epoch(trainer),
               **dict(zip(NOISE_KEYS, values))}  # fmt: skip
        row["B_simple"] = self.batch_size / res.ratio if res.ratio > 0 else math.inf
        self.records.append(row)
        metrics = {f"svag/{k}": float(v) for k, v in row.items() if k not in ("step", "epoch")}
        if pl_module is not None:
            to_loggers = not at_step and bool(trainer.loggers)  # Lightning warns of logger=True without a logger
            pl_module.log_dict(metrics, on_step=at_step, on_epoch=not at_step, logger=to_loggers, batch_size=1)
        if pl_module is None or at_step:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer)  # the steps after the last epoch end (max_steps inside an epoch)
        if not self.records:
            if self.verbose and trainer.is_global_zero:
                print("svag: no G/N estimates (no measured step in the window); no B* predicted", flush=True)
            return
        estimator = "microbatch" if self._accumulate > 1 else "pairs"
        self.prediction = window_prediction(self.batch_size, self.records, self.tau, window=self.window,
                                            estimator=estimator)  # fmt: skip
        pred = self.prediction
        for logger in trainer.loggers:
            logger.log_metrics({f"svag/{k}": pred[k] for k in ("B_star", "B_star_se", "low", "high")
                                if math.isfinite(pred[k])}, step=trainer.global_step)  # fmt: skip
        if self.verbose and trainer.is_global_zero:
            print(self.summary(), flush=True)

    def summary(self) -> str:
        """The prediction in one line (after ``fit``; :func:`svag.lsr.prediction_line`): a positive 95% interval
        (Fieller's, :func:`svag.lsr.max_batch_interval`), said in words when too few estimates were pooled or
        ``G`` is not distinguishable from 0."""
        return prediction_line(self.prediction)

    # -- Lightning checkpoints: resume the measurement with the run ---------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self._gen.get_state(),
            "acc": dict(self.acc.__dict__),
            "records": list(self.records),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._gen.set_state(state_dict["generator"])
        self.batch_size = state_dict["batch_size"]
        self.records = list(state_dict["records"])
        self.acc = NoiseAccumulator(self.batch_size)
        self.acc.__dict__.update(state_dict["acc"])


# -- SVAG inside Lightning ------------------------------------------------------------------------
def pair_loader(
    dataset: Any,
    batch_size: int,
    *,
    l: float | None = None,
    clock: Clock | None = None,
    seed: int = 0,
    sampling: str = "disjoint",
    steps_per_epoch: int | None = None,
    num_workers: int = 0,
    collate_fn: Callable[[list], Any] | None = None,
    **loader_kwargs: Any,
) -> DataLoader:
    """A ``DataLoader`` whose items are the batches of one step: ``(batch1, batch2)`` for SVAG
    (``l > 1``), ``(batch, None)`` for SGD, drawn by :class:`svag.data.PairSampler` (the runner's
    sampler, ``sampling`` mode, seeded from the ``data_order`` stream of ``seed``: the runner's batches).

    An epoch of the loader is ``steps_per_epoch`` steps, by default ``round(k·n/B)`` with ``k`` the
    optimizer's steps per step of the simulated run, which its clock owns (:attr:`svag.Clock.steps_per_original`):
    the steps that cover one epoch of the simulated run (the runner's epoch), so ``max_epochs`` and a
    :class:`NoiseCallback` window mean the same for every ``l``. Pass ``clock=opt.clock()`` (``k = l``
    for SVAG, ``l²`` for SVAGAdam/AdamW/RMSprop); ``l`` alone means SVAG's clock at ``l`` (default 1,
    SGD), and with a clock ``l`` may be left out (it is the clock's). Each epoch continues the same
    stream (epochs never repeat an order). ``loader_kwargs`` go to ``DataLoader`` (``pin_memory``,
    ``prefetch_factor``, ...); the workers' seeds come from the ``loader`` stream.
    """
    if clock is None:
        clock = Clock(1, 1.0 if l is None else l)  # SVAG's (P1): l steps per step of the simulated run
    elif l is not None and check_l(l) != clock.l:
        raise ValueError(f"l={l:g} differs from the clock's l={clock.l:g}; pass one of them")
    sampler = PairSampler(len(dataset), batch_size, pairs=clock.l > 1, mode=sampling,
                          seed=stream_seed(seed, "data_order"))  # fmt: skip
    per_epoch = clock.steps_per_original * len(dataset) / batch_size
    steps = steps_per_epoch if steps_per_epoch is not None else max(1, round(per_epoch))
    collate = torch.utils.data.default_collate if collate_fn is None else collate_fn
    B = batch_size

    def collate_pair(samples: list) -> tuple[Any, Any]:
        return collate(samples[:B]), collate(samples[B:]) if len(samples) > B else None

    return DataLoader(dataset, batch_sampler=StepBatches(sampler, steps, joined=True), collate_fn=collate_pair,
                      num_workers=num_workers, generator=generator(seed, "loader"), **loader_kwargs)  # fmt: skip


def svag_training_step(
    module: LightningModule,
    pair: tuple[Any, Any],
    loss_fn: Callable[[Any], Any],
    *,
    schedule: Callable[[float], float] | None = None,
    mode: str = "accumulate",
) -> torch.Tensor:
    """One SVAG step inside ``module.training_step`` (manual optimization): :func:`svag.train_step`
    on ``pair = (batch1, batch2)`` with the module's optimizer (a :class:`svag.SVAG` or adaptive SVAG):
    two forward passes, ``a1·loss1 + a2·loss2`` backpropagated (``mode`` as there), one step.

    Sets the LR to ``schedule(sde_time)`` first when given (continuous time, the runner's rule);
    hands the two batch gradients to a :class:`NoiseCallback` of the trainer at steps in its window
    (the runner's free SVAG estimates). Logs ``train_loss`` (batch 1's) and returns it.
    """
    if module.automatic_optimization:
        raise ValueError("svag_training_step needs manual optimization: set self.automatic_optimization = False")
    _check_pair(pair)
    opt = module.optimizers()
    inner = getattr(opt, "optimizer", opt)  # Lightning wraps the optimizer; sde_time lives in the inner one
    if schedule is not None:
        lr = schedule(inner.sde_time * (1 + TIME_RTOL))  # a milestone reached up to rounding counts (runner)
        for group in inner.param_groups:
            group["lr"] = lr
    trainer = module.trainer
    callback = next((c for c in trainer.callbacks if isinstance(c, NoiseCallback)), None)
    measure = callback is not None and pair[1] is not None and callback.in_window(trainer)
    # the gradient through the inner optimizer (it holds the clock), the step through Lightning's wrapper
    # (which counts global_step): svag.train_step is exactly these two calls
    out = amplified_backward(inner, loss_fn, pair[0], pair[1], mode=mode, return_grads=measure)
    opt.step()
    if measure:
        callback.add_pair(*out.grads)
    module.log("train_loss", out.loss1, prog_bar=True)
    return out.loss1


def _check_pair(pair: Any) -> None:
    """Refuse what cannot be ``(batch1, batch2)``: not a pair, or a plain batch of two tensors of different shapes or
    dtypes (``(inputs, targets)`` from a plain ``DataLoader``). Two tensors of one shape and dtype may be either
    (a pair of tensor batches, or ``(tokens, targets)``): they pass, so feed :func:`pair_loader`'s pairs."""
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        a, b = pair
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or (
            a.shape == b.shape and a.dtype == b.dtype
        ):
            return
        got = f"one batch of two tensors, {tuple(a.shape)} {a.dtype} and {tuple(b.shape)} {b.dtype}"
    else:
        size = f" of {len(pair)} items" if isinstance(pair, (tuple, list, dict)) else ""
        got = f"a {type(pair).__name__}{size}"
    raise ValueError(
        f"svag_training_step: pair must be (batch1, batch2), the two batches of one step, got {got}: train on "
        "pair_loader(dataset, batch_size, clock=opt.clock()) rather than a plain DataLoader"
    )
