"""The runner: one loop for SGD (``l = 1``) and SVAG, driven by continuous SDE time.

``run(config, out_dir)`` trains one model; ``run_replicas(config, seeds, out_dirs)`` trains
several seeds of the same config at once (stacked parameters, :mod:`svag.runner.ensemble`) and
writes exactly what the single runs would (a model that cannot be stacked raises
:class:`svag.runner.ensemble.NotStackable` here, and :func:`svag.runner.run_replicas` trains its seeds
one by one). What a folder holds is :mod:`svag.runfolder`'s
business; what a record holds, :mod:`svag.runner.recorder`'s; what a checkpoint holds,
:mod:`svag.runner.state`'s; when things happen, :mod:`svag.runner.timeline`'s (all on continuous time,
whose clock belongs to the optimizer). This module builds those pieces and runs the loop.

A record at grid time ``t_j`` is taken after the first step whose ``sde_time >= t_j``. A
checkpoint is taken between steps only; SIGINT or SIGTERM lets the current step finish, then
checkpoints, marks the folder ``interrupted`` and raises :class:`RunInterrupted`, so ``--resume``
continues bit-identically (a second signal stops at once, as a kill would).

With ``loader_workers > 0`` the batches come through ``DataLoader`` workers
(:mod:`svag.data.loader`), and a data plug-in's ``Dataset`` splits stay on disk
(:mod:`svag.data.streamed`): the run holds only the evaluation subset, takes ``n`` from the data
set, and reads every other sample by index, the same numbers as the in-memory path.

**Gaussian-noise runs** (``gradient_noise="gaussian"``, :mod:`svag.gaussian`). Each step is
:func:`svag.gaussian.gaussian_step` on the **whole training set** (the ``n_train`` samples the run
loaded: ``--n-train`` is what makes full-batch steps affordable; ``gaussian_chunk`` samples per
forward/backward) with the same optimizer as the SVAG run, so ``l = 1`` is P1's NGD and ``l > 1``
Euler–Maruyama of the SDE with step ``η/l`` (weight decay not amplified); clock, timeline and
records are those of SVAG. The noise ``z`` comes from the replica's ``"gaussian"`` stream of the
seed tree, saved in every checkpoint, so resume stays bit-identical. The covariance matched is that
of **one** batch as ``sampling`` draws it: ``Σ_1/B`` with ``replacement``, ``Σ_1(n−B)/(B(n−1))``
(SGD's, finite population) with ``disjoint``. (SVAG's disjoint pairs carry
``l·Σ_1(n−B/l)/(B(n−1))`` instead, since the two batches of a step are slightly anti-correlated:
compare SVAG and Euler–Maruyama at ``l > 1`` with ``sampling="replacement"``, where both are
``l·Σ_1/B`` exactly.) What does not apply: the sampler is never called (its state stays at its
start); there is no minibatch pair, so the G/N pair fields of every record are ``None`` (P1's
m-batch measurement, ``noise_every``, works as usual); the data set's training augmentation
(CIFAR's crop and flip) is not applied (a line says so); multi-process runs are refused (each
process would repeat the same full-batch pass). Several seeds train stacked as for SVAG
(:func:`run_replicas`): each chunk's inputs are shared, each replica draws its ``z`` from its own
stream, and the memory is that of ``R·gaussian_chunk`` samples.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch

from svag.batch_loss import scalar_loss
from svag.build import build_models, build_optimizer
from svag.config import RunConfig
from svag.data import load_dataset
from svag.data.loader import TensorPairs, TrainLoader
from svag.data.streamed import Chunks, fetch
from svag.gaussian import gaussian_step
from svag.models.plugin import passed_options
from svag.noise import MicroBatchSums, squared_norm
from svag.plugins import KINDS, MODEL_OPTIONS, fingerprints, is_spec
from svag.runfolder import RunFolder
from svag.runner import state as runstate
from svag.runner.distributed import Dist
from svag.runner.engine import EVAL_CHUNK, EnsembleEngine, SingleEngine
from svag.runner.ensemble import stack
from svag.runner.progress import notice, progress_bar
from svag.runner.recorder import Recorder, Tensors
from svag.runner.signals import RunInterrupted, stop_on_signals
from svag.runner.timeline import TIME_RTOL, Timeline
from svag.step import checked_loss, train_step
from svag.task import make_task

__all__ = ["Group", "RunDiverged"]


class RunDiverged(ValueError):
    """The training loss became NaN or infinite; everything written so far is kept."""


def _streamed(cfg: RunConfig, ds, n_eval: int, seed: int, device: torch.device, dtype: torch.dtype) -> Tensors:
    """The run's data when its splits stay Datasets (:mod:`svag.data.streamed`): the first ``n_eval``
    training samples in memory (train loss and ‖∇L‖²), the test set read in evaluation chunks by
    ``cfg.loader_workers`` processes at each record, training batches read by index."""
    ex, ey = fetch(ds.train, range(n_eval))
    test = Chunks(ds.test, EVAL_CHUNK, workers=cfg.loader_workers, seed=seed, device=device, dtype=dtype)
    return Tensors(ex.to(device, dtype), ey.to(device), None, None, n_eval, None, train_set=ds.train, test_set=test)


class Group:
    """A group of replicas, built from the config: data, engine, optimizer, timeline, recorder."""

    def __init__(self, cfg: RunConfig, seeds: list[int], folders: list[RunFolder], progress: bool, dist: Dist,
                 device: torch.device) -> None:  # fmt: skip
        self.cfg, self.dist, self.device = cfg, dist, device
        self.progress = progress and dist.main
        dtype = getattr(torch, cfg.dtype)
        ds = load_dataset(cfg.data, root=cfg.data_root, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed,
                          datasets=cfg.loader_workers > 0)  # fmt: skip
        self.ds = ds
        self.gaussian = cfg.gradient_noise == "gaussian"
        if self.gaussian and ds.augment is not None and dist.main:
            notice(f"{cfg.data}'s training augmentation is not applied: a gaussian run's gradient is over the "
                    "un-augmented training set")  # fmt: skip
        n_eval = min(cfg.eval_train_samples, ds.n_train)
        if hasattr(ds, "train_x"):
            self.data = Tensors(ds.train_x.to(device, dtype), ds.train_y.to(device), ds.test_x.to(device, dtype),
                                ds.test_y.to(device), n_eval, ds.augment)  # fmt: skip
        else:  # a plug-in's Datasets left on disk (svag.data.streamed): only the evaluation subset in memory
            self.data = _streamed(cfg, ds, n_eval, seeds[0], device, dtype)
        task = make_task(cfg.loss, ds.num_classes)
        models = build_models(cfg, seeds, ds, device, dtype)
        if cfg.sync_bn and dist.world > 1:
            if device.type != "cuda":
                raise ValueError(
                    "--sync-bn needs GPUs (PyTorch's SyncBatchNorm runs on cuda only); on CPU use --norm gn"
                )
            models = [torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in models]
        if len(models) == 1:
            self.engine: SingleEngine = SingleEngine(models[0], task)
        else:  # raises NotStackable (the runner then trains the seeds one by one)
            x, y = self._trial_batch(len(models), cfg.batch_size)
            self.engine = EnsembleEngine(stack(models, input_shape=ds.input_shape, task=task, x=x, y=y), task)
        n = self.data.n
        self.replicas = [runstate.Replica(cfg, s, f, n) for s, f in zip(seeds, folders)]
        self.loaders = []  # --loader-workers N: each replica's batches through DataLoader workers, same indices
        if cfg.loader_workers:
            train_set = TensorPairs(ds.train_x, ds.train_y) if self.data.train_set is None else self.data.train_set
            self.loaders = [TrainLoader(train_set, r.sampler, workers=cfg.loader_workers, seed=r.seed, device=device,
                                        dtype=dtype) for r in self.replicas]  # fmt: skip
        self.data_device = self.data.x.device  # where batch indices must be to take a batch
        # one replica whose batches need no DataLoader, sharding, transfer or augmentation (Group._batches)
        self.direct = (len(self.replicas) == 1 and not self.loaders and dist.world == 1 and self.data.augment is None
                       and self.data.train_set is None and self.data_device.type == "cpu")  # fmt: skip
        self.opt = build_optimizer(cfg, self.engine.params)
        dist.attach(self.opt)  # multi-process: average gradients over processes before each update
        self.single = all(self.opt.variance_factor(g) == 1.0 for g in self.opt.param_groups)  # l = 1: one batch
        # adaptive optimizers: the preconditioned ratio's weights w = 1/(√v̂ + ε) (svag.noise, recorder)
        self.preconditioned = callable(getattr(self.opt, "preconditioner_weights", None))
        self.clock = self.opt.clock()
        self.timeline = Timeline.of(cfg, n, self.clock)
        self.recorder = Recorder(cfg, self.engine, self.data, self.timeline, self.clock, dist, self.batch, models[0])
        tl = self.timeline
        # G/N pairs from steps starting in [noise_from, noise_to) (up to rounding); SGD: every period-th step
        on = cfg.noise == "pairs" and not self.gaussian  # a gaussian step has no minibatch pair
        self.noise_from = tl.noise_from * (1 - TIME_RTOL) if on else math.inf
        self.noise_to = tl.noise_to * (1 - TIME_RTOL) if on else -math.inf
        self.noise_period = round(1 / cfg.noise_fraction) if cfg.noise_fraction > 0 else 0
        # --noise-source microbatch: each step's M micro-batch gradients (W·M over W processes) instead of pairs
        micro_on = cfg.noise_source == "microbatch"
        self.micro_sums = MicroBatchSums(stacked=self.engine.K > 1) if micro_on else None
        self.micro_mean_sq: torch.Tensor | None = None
        if dist.world > 1 and (cfg.batch_size // dist.world) % cfg.micro_batches:
            raise ValueError(
                f"micro_batches must divide the per-process batch {cfg.batch_size // dist.world} "
                f"(batch_size={cfg.batch_size} over {dist.world} processes), got {cfg.micro_batches}"
            )
        if self.micro_sums is not None:  # after dist.attach's hook: reads the all-reduced gradient
            self.opt.register_step_pre_hook(self._micro_mean)
        self.counters = runstate.Counters(
            next_ckpt=tl.next_checkpoint(0.0),
            next_m=tl.noise_from if tl.m_interval > 0 else float("inf"),
        )
        self.saved_step: int | None = None  # the step of the last checkpoint taken by this process

    def _trial_batch(self, K: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of :func:`svag.runner.ensemble.stack`'s trial step, ``(K, b, ...)``: replica k takes the
        ``b = min(B, n)`` in-memory training samples from ``k·b`` on (cyclically); no stream is drawn from."""
        n = len(self.data.x)
        b = min(batch_size, n)
        idx = (torch.arange(K * b) % n).view(K, b).to(self.data.x.device)
        return self.data.x[idx], self.data.y[idx]

    @property
    def t(self) -> float:
        return self.opt.sde_time

    def live(self) -> list[runstate.Replica]:
        return [r for r in self.replicas if not r.diverged]

    def derived(self) -> dict[str, Any]:
        """What ``config.json`` records besides the config: the timeline, the data, the clock, the model options
        that reached the model (a plug-in's factory takes those it names: :func:`svag.models.plugin.passed_options`)."""
        engine = self.engine
        return {
            **self.timeline.to_dict(),
            "n_train": self.data.n,
            "n_test": self.data.n_test,
            "input_shape": list(self.ds.input_shape),
            "num_classes": self.ds.num_classes,
            "n_params": sum(p[0].numel() if engine.K > 1 else p.numel() for p in engine.params),
            "task": engine.task.name,
            "metrics": list(engine.task.metrics),
            "clock": self.clock.to_dict(),
            "optimizer_names": self.opt.names(),
            "model_options": passed_options(self.cfg.model, {k: getattr(self.cfg, k) for k in MODEL_OPTIONS}),
            **({"gaussian_finite_population": self._finite_population} if self.gaussian else {}),
            **({"plugins": self._plugins()} if self._plugins() else {}),
        }

    def _plugins(self) -> dict:
        """The fingerprints of the config's plug-ins (:func:`svag.plugins.fingerprints`), for resume."""
        if not any(is_spec(getattr(self.cfg, k)) for k in KINDS):
            return {}
        return fingerprints(self.cfg)

    @property
    def _finite_population(self) -> bool:
        """Gaussian runs match one batch as ``sampling`` draws it: without replacement (finite-population
        factor) for ``disjoint``, with replacement for ``replacement`` (module docstring)."""
        return self.cfg.sampling == "disjoint"

    def batch(self, r: runstate.Replica, idx: torch.Tensor | None):
        if idx is None:
            return None
        if self.dist.world > 1:
            idx = self.dist.shard(idx)
        if idx.device != self.data_device:
            idx = idx.to(self.data_device)
        xb, yb = self.data.take(idx)
        if self.data.augment is not None:
            xb = self.data.augment(xb, r.aug_gen)
        return xb, yb

    def draw(self, k: int) -> tuple:
        """Replica ``k``'s batches of the next step: its sampler's indices into the in-memory tensors,
        or the same indices loaded by its DataLoader (:mod:`svag.data.loader`); augmented alike."""
        r = self.replicas[k]
        if not self.loaders:
            i1, i2 = r.sampler.next()
            return self.batch(r, i1), self.batch(r, i2)
        augment = self.data.augment
        pair = self.loaders[k].next()
        return tuple(b if b is None or augment is None else (augment(b[0], r.aug_gen), b[1]) for b in pair)

    def close(self) -> None:
        """Stop the DataLoader workers, if any."""
        for loader in self.loaders:
            loader.close()

    def save(self, status: str = "running") -> None:
        """Checkpoint every replica and make its ``status.json`` current (rank 0 only)."""
        if not self.dist.main:
            return
        runstate.save(self.replicas, self.engine, self.opt, self.counters)
        self.saved_step = self.counters.step
        for r in self.live():
            self.report(r, status)

    def report(self, r: runstate.Replica, status: str) -> None:
        """Make ``r``'s ``status.json`` say where the run is: step, time, records, the last record."""
        c = self.counters
        end = self.timeline.end_time
        r.folder.write_status(status, step=c.step, sde_time=self.t, records=r.n_records, end_time=end,
                              wall_time=c.elapsed, last_record=r.last_record)  # fmt: skip

    def load(self, states: list[dict[str, Any]]) -> None:
        self.counters = runstate.load(states, self.replicas, self.engine, self.opt)

    def start_from(self, states: list[dict[str, Any]]) -> None:
        """Start from other runs' checkpoints, on this run's own clock from 0 (:func:`svag.runner.state.start_from`)."""
        runstate.start_from(states, self.replicas, self.engine, self.opt)

    # -- the loop -------------------------------------------------------------------------------
    def step(self) -> list[float]:
        """One optimizer step of every replica (and its G/N pair); returns each replica's batch loss."""
        if self.gaussian:
            return self._gaussian_step()
        engine, c = self.engine, self.counters
        b1, b2 = self._batches()
        noise = self.noise_from <= self.opt.sde_time < self.noise_to
        extra = None
        micro = noise and self.micro_sums is not None and c.step % self.cfg.micro_noise_every == 0
        if micro:
            self.micro_mean_sq = None  # set by the step pre-hook (_micro_mean)
        elif noise and b2 is None and self.noise_period and c.step % self.noise_period == 0:
            extra = self.recorder.extra_grads(self.replicas)
        weights = None  # taken before the update, so independent of the pair it weighs (svag.noise)
        if self.preconditioned and (extra is not None or (noise and b2 is not None)):
            weights = self.opt.preconditioner_weights(engine.params)
        engine.last_losses = None
        if b2 is None and self.single and self.cfg.micro_batches == 1:  # SGD (l = 1): train_step's one-batch
            grads, loss1 = None, self._one_batch_step(b1)  # path, without its per-call set-up
        elif self.cfg.micro_batches > 1:
            grads, loss1 = self._micro_step(b1, b2, return_grads=noise and b2 is not None, measure=micro)
        else:
            out = train_step(self.opt, engine.loss, b1, b2, return_grads=noise and b2 is not None)
            grads, loss1 = out.grads, out.loss1
        c.step += 1
        if micro:
            self._add_micro()
        elif grads is not None:
            self.recorder.add_pair(self.replicas, *grads, weights)
        elif extra is not None:  # SGD: the step's own gradient stays in p.grad (the update does not touch it)
            self.recorder.add_pair(self.replicas, [p.grad for p in engine.params], extra, weights)
        if self.dist.world > 1:
            loss1 = loss1.detach().clone().reshape(1)
            self.dist.mean_([loss1])
            return [loss1.item()]
        return [loss1.item()] if engine.K == 1 else engine.last_losses.tolist()

    def _micro_step(self, b1, b2, return_grads: bool, measure: bool):
        """:func:`svag.train_step` with ``cfg.micro_batches`` micro-batches; stacked replicas are split along
        their batch axis (dim 1), each replica's loss is the mean of its micro-batches' losses. With ``measure``
        the micro-batch sums go to ``self.micro_sums`` (per replica). Returns ``(grads, loss1)``."""
        engine, M = self.engine, self.cfg.micro_batches
        sums = self.micro_sums if measure else False
        if engine.K == 1:
            out = train_step(self.opt, engine.loss, b1, b2, micro_batches=M, return_grads=return_grads,
                             micro_noise=sums)  # fmt: skip
            return out.grads, out.loss1
        parts = []  # the replicas' losses of each micro-batch of batch 1

        def loss(batch):  # batch (B, K, ...) as train_step splits it: back to the engine's (K, b, ...)
            engine.last_losses = None
            value = engine.loss(tuple(t.transpose(0, 1) for t in batch))
            parts.append(engine.last_losses)
            return value

        flip = [None if b is None else tuple(t.transpose(0, 1) for t in b) for b in (b1, b2)]
        out = train_step(self.opt, loss, *flip, micro_batches=M, return_grads=return_grads, micro_noise=sums)
        engine.last_losses = torch.stack(parts[:M]).mean(0)
        return out.grads, out.loss1

    def _micro_mean(self, opt, args, kwargs) -> None:
        """Step pre-hook (after the processes' gradient all-reduce): each replica's ``‖ḡ‖²`` of the step's
        gradient and, over ``W`` processes, ``Σ_j ‖g_j‖²`` of all ``W·M`` micro-batches (one all-reduce of
        ``K`` numbers; no gradient is sent twice)."""
        if self.micro_mean_sq is not None or self.micro_sums.count == 0:
            return
        grads = [g for g in self.engine.stacked_grads([p.grad for p in self.engine.params]) if g is not None]
        self.micro_mean_sq = squared_norm(grads, stacked=True)
        sums, W = self.micro_sums, self.dist.world
        total = torch.as_tensor(sums.sum_sq, dtype=torch.float64, device=grads[0].device).reshape(-1).clone()
        count = sums.count
        if W > 1:
            self.dist.mean_([total])  # the mean over processes; times W: the sum
            total, count = total * W, count * W
        sums.reset()
        sums.add_sq(total, count=count)

    def _add_micro(self) -> None:
        """The step's ``(Ĝ, N̂)`` of every replica from its micro-batches into its accumulator."""
        if self.micro_mean_sq is None:  # no update ran (e.g. a GradScaler-free step that raised): nothing to add
            return
        G, N = self.micro_sums.result_sq(self.micro_mean_sq)
        self.recorder.add_estimates(self.replicas, G, N)
        self.micro_mean_sq = None

    def _batches(self) -> tuple:
        """Both batches of the next step, stacked over replicas (the second ``None`` for SGD)."""
        if self.direct:  # one replica, in-memory tensors on the CPU: the sampler's indices take the batches as is
            i1, i2 = self.replicas[0].sampler.next()
            x, y = self.data.x, self.data.y
            return (x[i1], y[i1]), None if i2 is None else (x[i2], y[i2])
        drawn = [self.draw(k) for k in range(len(self.replicas))]
        b1 = self.engine.stack([d[0] for d in drawn])
        return b1, None if drawn[0][1] is None else self.engine.stack([d[1] for d in drawn])

    def _one_batch_step(self, batch) -> torch.Tensor:
        """What :func:`svag.train_step` does with one batch at ``l = 1``: zero ``p.grad``, backward of the batch's
        mean loss, ``opt.step()``; the same operations, so the same numbers. Left out is what it does for any
        caller on every call, 6–8% of an MLP step on a CPU (``benchmarks/bench_runner.py``): the checks, the 0-d
        ``reshape`` of the loss (one more autograd node) and the amplification declaration, which ``l = 1``
        does not need (:meth:`svag.SVAG.mark_amplified`; weak references to every gradient). A loss that is
        not a 0-d tensor requiring grad goes through :func:`svag.batch_loss.scalar_loss` and train_step's
        own check, as it would there."""
        opt = self.opt
        opt.zero_grad(set_to_none=True)
        loss = self.engine.loss(batch)
        if not (isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.requires_grad):
            loss = checked_loss(scalar_loss(loss, "train_step"), "train_step")
        loss.backward()
        opt.step()
        return loss

    def _gaussian_step(self) -> list[float]:
        """One Gaussian-noise step of every replica on the whole training set; returns each replica's
        full-data mean training loss before the step. Stacked replicas share each chunk's inputs and
        draw their ``z`` from their own streams, so each gets the weights its single run would."""
        cfg, engine = self.cfg, self.engine
        single = engine.K == 1
        gens = [r.gauss_gen for r in self.replicas]
        out = gaussian_step(self.opt, engine.model if single else engine.outputs, engine.task,
                            (self.data.x, self.data.y), batch_size=cfg.batch_size,
                            generator=gens[0] if single else gens, chunk=cfg.gaussian_chunk,
                            finite_population=self._finite_population,
                            replicas=None if single else engine.K)  # fmt: skip
        self.counters.step += 1
        return out.loss.reshape(-1).tolist()

    def train(self) -> None:
        c, tl, opt = self.counters, self.timeline, self.opt
        self.engine.train(True)
        start = time.perf_counter() - c.elapsed
        if c.next_eval == 0 and c.step == 0:
            self.recorder.record(self.replicas, c, self.t, tl.schedule(0.0))
            c.next_eval = 1
        schedule, end = tl.schedule, tl.end_time * (1 - TIME_RTOL)  # a time is reached up to rounding
        next_record, next_ckpt = self._next_record(), c.next_ckpt * (1 - TIME_RTOL)
        last_lr, live = None, bool(self.live())
        with _progress_bar(self, self.progress) as bar, stop_on_signals() as stop_signal:
            while live and opt.sde_time < end:
                lr = schedule(opt.sde_time * (1 + TIME_RTOL))  # a milestone reached up to rounding counts
                if lr != last_lr:
                    for group in opt.param_groups:
                        group["lr"] = lr
                    last_lr = lr
                losses = self.step()
                c.elapsed = time.perf_counter() - start
                if not all(map(math.isfinite, losses)):
                    live = self._check_finite(losses, lr)
                t = opt.sde_time
                if bar is not None:
                    bar.update(min(t, tl.end_time) - bar.n)
                    bar.set_postfix(loss=f"{losses[0]:.4f}", refresh=False)
                if t >= next_record:
                    next_record = self._record(t, lr)
                if t >= next_ckpt:
                    next_ckpt = self._checkpoint(t)
                if stop_signal[0]:  # a consistent point: the step, its records and checkpoint are done
                    self.save("interrupted")
                    raise RunInterrupted(stop_signal[0])
        c.elapsed = time.perf_counter() - start
        if self.saved_step != c.step:  # the end, unless a checkpoint was just taken there
            self.save()

    def _next_record(self) -> float:
        """When the next record is due: its grid time, less the rounding allowed (``inf`` after the last)."""
        c, grid = self.counters, self.timeline.eval_times
        return grid[c.next_eval] * (1 - TIME_RTOL) if c.next_eval < len(grid) else math.inf

    def _record(self, t: float, lr: float) -> float:
        """Take the records due at ``t`` (every grid time reached); when the next one is due."""
        c, grid = self.counters, self.timeline.eval_times
        while c.next_eval < len(grid) and t >= grid[c.next_eval] * (1 - TIME_RTOL):
            self.recorder.record(self.replicas, c, t, lr)
            c.next_eval += 1
        return self._next_record()

    def _checkpoint(self, t: float) -> float:
        """Checkpoint at ``t``, past every checkpoint time reached; when the next one is due."""
        c = self.counters
        while c.next_ckpt <= t * (1 + TIME_RTOL):
            c.next_ckpt = self.timeline.next_checkpoint(c.next_ckpt)
        self.save()
        return c.next_ckpt * (1 - TIME_RTOL)

    def _check_finite(self, losses: list[float], lr: float) -> bool:
        """Mark the replicas whose loss is no longer finite diverged (one replica: raise); whether any is left."""
        for r, loss in zip(self.replicas, losses):
            if r.diverged or math.isfinite(loss):
                continue
            r.diverged = True
            message = (
                f"training loss became {loss} at step {self.counters.step} (sde_time {self.t:.6g}, lr {lr:g}, "
                f"l {self.cfg.l:g}, seed {r.seed}); results so far are kept in {r.out}"
            )
            if self.dist.main:
                r.folder.write_status("diverged", step=self.counters.step, sde_time=self.t, message=message)
            if len(self.replicas) == 1:
                raise RunDiverged(message)
        return bool(self.live())


@contextlib.contextmanager
def _progress_bar(run: Group, enabled: bool):
    """A bar over continuous time on a terminal; plain lines every tenth in a log or a pipe
    (:func:`svag.runner.progress.progress_bar`)."""
    if not enabled:
        yield None
        return
    n = len(run.replicas)
    end = run.timeline.end_time
    bar = progress_bar(end, initial=min(run.t, end), desc=f"l={run.cfg.l:g} {n} seed{'s' if n > 1 else ''}",
                       value="t={n:.3g}/{total:.3g}", leave=False)  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()
