"""The runner: one loop for SGD (``l = 1``) and SVAG, driven by continuous SDE time.

``run(config, out_dir)`` trains one model; ``run_replicas(config, seeds, out_dirs)`` trains
several seeds of the same config at once (stacked parameters, :mod:`svag.ensemble`) and
writes exactly what the single runs would. Each run folder holds:

- ``config.json``: the resolved :class:`~svag.config.RunConfig` plus the derived times;
- ``env.json``: versions, device, threads, seed;
- ``metrics.jsonl``: one record per evaluation, at the **same continuous times for every l**
  (``t_j = j·eval_every·τ_epoch`` and the end ``T``), each with ``sde_time``, ``step``,
  ``effective_step`` (= step / l; / l² for Adam/RMSprop), ``epoch`` (SGD-equivalent), ``lr``,
  ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``weight_norm_sq``,
  ``grad_norm_sq``, ``wall_time``, and the interval's gradient signal/noise ``G``, ``N``,
  ``G_se``, ``N_se``, ``gn_ratio``, ``gn_ratio_se``, ``noise_count`` (P1 §4, see :mod:`svag.noise`);
- ``checkpoint.pt`` (atomic) and ``status.json`` (running / completed / diverged).

A record at grid time ``t_j`` is taken after the first step whose ``sde_time >= t_j``.
``grad_norm_sq`` is ‖∇L‖² of the mean loss over the ``eval_train_samples`` subset, in eval
mode (exact full-batch gradient of that subset for models without BatchNorm). ``G`` and ``N``
are the means, over the steps since the previous record, of the unbiased per-step estimates
``⟨g1, g2⟩`` and ``‖g1 − g2‖²/2`` from two independent batch gradients: SVAG's own two
batches, or for SGD an extra batch drawn at a fraction ``noise_fraction`` of the steps.
With ``noise_every`` > 0, records also carry P1's m-batch measurement (``G_m``, ``N_m``, ...)
every ``noise_every`` epochs. ``noise_window = (start, end)`` restricts both to steps that start
in ``[start, end)`` epochs (m-batch: records in ``[start, end]``), so a run can spend its G/N
budget where it is used, e.g. the LSR test's equilibrium window.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import schedules as S
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import RunConfig
from .distributed import Dist, setup
from .engine import EnsembleEngine, SingleEngine, evaluate, grad_norm_sq
from .noise import NoiseAccumulator, default_num_batches, measure_noise, pair_estimates
from .optim import SVAG
from .records import append_jsonl, read_json, read_jsonl, write_json, write_jsonl
from .step import train_step

__all__ = ["RunDiverged", "RunResult", "make_schedule", "resolve_device", "run", "run_replicas"]

TIME_RTOL = 1e-9  # grid times are reached when sde_time >= t·(1 − TIME_RTOL): float sums of lr/l
NOISE_KEYS = ("G", "N", "G_se", "N_se", "gn_ratio", "gn_ratio_se", "noise_count")
M_KEYS = ("G_m", "N_m", "G_m_se", "N_m_se", "gn_ratio_m", "gn_ratio_m_se")


class RunDiverged(ValueError):
    """The training loss became NaN or infinite; everything written so far is kept."""


@dataclass
class RunResult:
    out_dir: Path
    status: str
    records: list[dict]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if name == "auto":
        from .models import default_device

        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return device


@dataclass(frozen=True)
class Clock:
    """How the simulated run's steps map to continuous time (P1 §1, P2 §5).

    SGD: one step at LR η covers ``η`` (``η/(1−β)`` with heavy-ball momentum β, which at small
    LR follows the SDE of SGD at ``η/(1−β)``); SVAG takes ``l`` steps per original step.
    Adam/RMSprop: one step covers ``η²``; SVAG takes ``l²`` steps per original step.
    """

    power: int  # time of an original step = (lr·lr_factor)**power
    lr_factor: float  # 1/(1−β) for heavy-ball SGD, else 1
    per_original: float  # SVAG steps per original step

    @classmethod
    def of(cls, cfg: RunConfig) -> Clock:
        if cfg.optimizer == "sgd":
            return cls(1, 1.0 / (1.0 - cfg.momentum), cfg.l)
        return cls(2, 1.0, cfg.l**2)

    def original_step_time(self, lr: float) -> float:
        return (lr * self.lr_factor) ** self.power


def build_optimizer(cfg: RunConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The optimizer that simulates ``cfg``'s run at amplification ``cfg.l``."""
    if cfg.optimizer == "sgd":
        if cfg.momentum and cfg.l == 1:
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return SVAG(params, lr=cfg.lr / (1.0 - cfg.momentum), l=cfg.l, weight_decay=cfg.weight_decay)
    from .adaptive import SVAGAdam, SVAGRMSprop

    if cfg.optimizer == "adam":
        betas = tuple(cfg.betas[:2])
        return SVAGAdam(params, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, l=cfg.l)
    return SVAGRMSprop(params, lr=cfg.lr, beta=cfg.betas[-1], eps=cfg.eps, weight_decay=cfg.weight_decay, l=cfg.l)


def make_schedule(cfg: RunConfig, time_per_epoch: float, power: int = 1) -> tuple[S.Schedule, float]:
    """The LR schedule on continuous time and the run's end time ``T``.

    Milestones given in SGD-equivalent epochs become times exactly as the original run reaches
    them (an epoch's time shrinks by ``gamma**power`` after each decay). Cosine and triangle span
    ``T = epochs·τ_epoch`` of continuous time (τ_epoch at the base LR).
    """
    if cfg.schedule in ("constant", "multistep"):
        edges = [0.0, *cfg.milestones, cfg.epochs]
        times, t = [], 0.0
        for i in range(len(edges) - 1):
            t += (edges[i + 1] - edges[i]) * time_per_epoch * cfg.gamma ** (power * i)
            times.append(t)
        end = times[-1]
        sched: S.Schedule = (
            S.MultiStep(cfg.lr, milestones=tuple(times[:-1]), gamma=cfg.gamma) if cfg.milestones else S.Constant(cfg.lr)
        )
    else:
        end = cfg.epochs * time_per_epoch
        if cfg.schedule == "cosine":
            sched = S.Cosine(cfg.lr, horizon=end)
        else:
            sched = S.Triangle(cfg.lr, peak_time=end / 2, horizon=end)
    if cfg.warmup > 0:
        sched = S.Warmup(sched, warmup_time=cfg.warmup * time_per_epoch)
    return sched, end


def _environment(cfg: RunConfig, device: torch.device, seed: int, replicas: int, processes: int) -> dict[str, Any]:
    from . import __version__

    return {
        "svag": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "trained_with_replicas": replicas,
        "processes": processes,
    }


class _Replica:
    """Per-seed state: output folder, samplers, generators, noise accumulator, counters."""

    def __init__(self, cfg: RunConfig, seed: int, out: Path, n: int) -> None:
        from .data import PairSampler

        self.seed, self.out = seed, out
        self.sampler = PairSampler(n, cfg.batch_size, pairs=cfg.l > 1, mode=cfg.sampling, seed=seed)
        self.aug_gen = torch.Generator().manual_seed(seed + 1)
        self.noise_gen = torch.Generator().manual_seed(seed + 2)  # SGD's extra batches for G/N
        self.m_gen = torch.Generator().manual_seed(seed + 3)  # draws of the m-batch measurement
        self.acc = NoiseAccumulator(cfg.batch_size)
        self.n_records = 0
        self.diverged = False

    def state(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler.state_dict(),
            "aug_gen": self.aug_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "m_gen": self.m_gen.get_state(),
            "acc": dict(self.acc.__dict__),
            "n_records": self.n_records,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.aug_gen.set_state(state["aug_gen"])
        self.noise_gen.set_state(state["noise_gen"])
        self.m_gen.set_state(state["m_gen"])
        self.acc.__dict__.update(state["acc"])
        self.n_records = state["n_records"]


class _Loop:
    """State of one group of replicas; :meth:`save` / :meth:`load` make it resumable."""

    def __init__(
        self,
        cfg: RunConfig,
        seeds: list[int],
        outs: list[Path],
        progress: bool,
        backend: str,
        dist: Dist,
        device: torch.device,
    ) -> None:
        from .data import load_dataset
        from .models import build_model

        self.cfg, self.dist, self.device = cfg, dist, device
        self.progress = progress and dist.main
        dtype = getattr(torch, cfg.dtype)
        ds = load_dataset(cfg.data, root=cfg.data_root, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.data_seed)
        self.ds = ds
        self.x, self.y = ds.train_x.to(self.device, dtype), ds.train_y.to(self.device)
        self.tx, self.ty = ds.test_x.to(self.device, dtype), ds.test_y.to(self.device)
        n_eval = min(cfg.eval_train_samples, len(self.x))
        self.ex, self.ey = self.x[:n_eval], self.y[:n_eval]
        models = []
        default_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # init drawn in the run's dtype, whatever the caller's default
        for seed in seeds:
            torch.manual_seed(seed)  # a replica's init depends on its seed alone
            models.append(
                build_model(
                    cfg.model,
                    input_shape=ds.input_shape,
                    num_classes=ds.num_classes,
                    norm=cfg.norm,
                    scale_invariant=cfg.scale_invariant,
                    width=cfg.width,
                ).to(self.device, dtype)
            )
        torch.set_default_dtype(default_dtype)
        if cfg.sync_bn and dist.world > 1:
            if self.device.type != "cuda":
                raise ValueError(
                    "--sync-bn needs GPUs (PyTorch's SyncBatchNorm runs on cuda only); on CPU use --norm gn"
                )
            models = [torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in models]
        # m-batch measurements of an ensemble's replicas run on a copy of one plain model
        self.scratch = copy.deepcopy(models[0]) if len(models) > 1 and cfg.noise_every > 0 else None
        if len(models) == 1:
            self.engine: SingleEngine = SingleEngine(models[0])
        else:
            from .ensemble import Ensemble

            self.engine = EnsembleEngine(Ensemble(models, input_shape=ds.input_shape, backend=backend))
        self.replicas = [_Replica(cfg, s, o, len(self.x)) for s, o in zip(seeds, outs)]
        self.opt = build_optimizer(cfg, self.engine.params)
        dist.attach(self.opt)  # multi-process: average gradients over processes before each update
        self.clock = Clock.of(cfg)
        self.time_per_epoch = len(self.x) / cfg.batch_size * self.clock.original_step_time(cfg.lr)
        self.schedule, self.end_time = make_schedule(cfg, self.time_per_epoch, self.clock.power)
        interval = cfg.eval_every * self.time_per_epoch
        n_pts = math.floor(self.end_time / interval * (1 + TIME_RTOL))
        grid = [j * interval for j in range(n_pts + 1)]
        if self.end_time - grid[-1] > TIME_RTOL * self.end_time:
            grid.append(self.end_time)
        self.grid = grid
        self.ckpt_interval = cfg.checkpoint_every * self.time_per_epoch
        self.m_interval = cfg.noise_every * self.time_per_epoch
        self.noise_period = round(1 / cfg.noise_fraction) if cfg.noise_fraction > 0 else 0
        start, end = cfg.noise_window or (0.0, math.inf)
        self.noise_from, self.noise_to = start * self.time_per_epoch, end * self.time_per_epoch
        self.step = 0
        self.own_time = 0.0  # continuous time of optimizers without sde_time (heavy-ball SGD)
        self.next_eval = 0
        self.next_ckpt = self.ckpt_interval if self.ckpt_interval > 0 else math.inf
        self.next_m = self.noise_from if self.m_interval > 0 else math.inf
        self.elapsed = 0.0

    @property
    def t(self) -> float:
        return getattr(self.opt, "sde_time", self.own_time)

    def live(self) -> list[_Replica]:
        return [r for r in self.replicas if not r.diverged]

    # -- bookkeeping ----------------------------------------------------------------------------
    def derived(self) -> dict[str, Any]:
        return {
            "time_per_epoch": self.time_per_epoch,
            "end_time": self.end_time,
            "eval_times": self.grid,
            "schedule": S.schedule_to_dict(self.schedule),
            "n_train": len(self.x),
            "n_test": len(self.tx),
            "input_shape": list(self.ds.input_shape),
            "num_classes": self.ds.num_classes,
            "n_params": sum(p[0].numel() if self.engine.K > 1 else p.numel() for p in self.engine.params),
        }

    def _opt_state(self, k: int) -> dict[str, Any]:
        sd = self.opt.state_dict()
        if self.engine.K == 1:
            return sd
        state = {
            i: {key: (v[k] if torch.is_tensor(v) and v.dim() > 0 else v) for key, v in s.items()}
            for i, s in sd["state"].items()
        }
        return {**sd, "state": state}

    def _load_opt_states(self, states: list[dict[str, Any]]) -> None:
        if self.engine.K == 1:
            self.opt.load_state_dict(states[0])
            return
        merged = dict(states[0])
        merged["state"] = {
            i: {
                key: (torch.stack([st["state"][i][key] for st in states]) if torch.is_tensor(v) and v.dim() > 0 else v)
                for key, v in s.items()
            }
            for i, s in states[0]["state"].items()
        }
        self.opt.load_state_dict(merged)

    def save(self) -> None:
        """One checkpoint per replica folder, in the single-run format (rank 0 only)."""
        if not self.dist.main:
            return
        common = {
            "rng": rng_state(),
            "step": self.step,
            "own_time": self.own_time,
            "next_eval": self.next_eval,
            "next_ckpt": self.next_ckpt,
            "next_m": self.next_m,
            "elapsed": self.elapsed,
        }
        for k, r in enumerate(self.replicas):
            state = {
                **common,
                **r.state(),
                "model": self.engine.replica_state(k),
                "optimizer": self._opt_state(k),
            }
            save_checkpoint(r.out / "checkpoint.pt", state)

    def load(self, states: list[dict[str, Any]]) -> None:
        self.engine.load_replica_states([s["model"] for s in states])
        self._load_opt_states([s["optimizer"] for s in states])
        for r, s in zip(self.replicas, states):
            r.load(s)
        first = states[0]
        set_rng_state(first["rng"])
        for key in ("step", "own_time", "next_eval", "next_ckpt", "next_m", "elapsed"):
            setattr(self, key, first[key])

    def record(self, lr: float) -> None:
        cfg, engine = self.cfg, self.engine
        if not self.dist.main:
            return
        was_training = engine.training
        engine.train(False)
        train_loss, train_acc = evaluate(engine, self.ex, self.ey)
        test_loss, test_acc = evaluate(engine, self.tx, self.ty)
        grad_sq = grad_norm_sq(engine, self.ex, self.ey)
        engine.train(was_training)
        weights = engine.weight_norm_sq()
        measure = self.next_m * (1 - TIME_RTOL) <= self.t <= self.noise_to * (1 + TIME_RTOL)
        m_results = self._measure_m() if measure else None
        effective = self.step / self.clock.per_original
        for k, r in enumerate(self.replicas):
            if r.diverged:
                continue
            row = {
                "sde_time": self.t,
                "step": self.step,
                "effective_step": effective,
                "epoch": effective * cfg.batch_size / len(self.x),
                "lr": lr,
                "l": cfg.l,
                "seed": r.seed,
                "train_loss": train_loss[k],
                "train_acc": train_acc[k],
                "test_loss": test_loss[k],
                "test_acc": test_acc[k],
                "weight_norm_sq": weights[k],
                "grad_norm_sq": grad_sq[k],
                "wall_time": self.elapsed,
            }
            row.update(self._noise_fields(r))
            if m_results is not None:
                res = m_results[k]
                row.update(zip(M_KEYS, (res.G, res.N, res.G_se, res.N_se, res.ratio, res.ratio_se)))
            append_jsonl(r.out / "metrics.jsonl", row)
            r.n_records += 1

    @staticmethod
    def _noise_fields(r: _Replica) -> dict[str, Any]:
        if r.acc.count == 0:
            return dict.fromkeys(NOISE_KEYS)
        res = r.acc.result()
        r.acc.reset()
        return dict(zip(NOISE_KEYS, (res.G, res.N, res.G_se, res.N_se, res.ratio, res.ratio_se, res.m)))

    def _measure_m(self):
        """P1's m-batch measurement at the current point, per replica, each with its own
        generator (an ensemble's replica is copied into a plain model first)."""
        while self.next_m <= self.t * (1 + TIME_RTOL):
            self.next_m += self.m_interval
        cfg = self.cfg
        m = cfg.noise_batches or default_num_batches(cfg.batch_size)

        def loss_fn(out, y):
            return F.cross_entropy(out, y)

        model = self.engine.model if self.engine.K == 1 else self.scratch
        results = []
        for k, r in enumerate(self.replicas):
            if r.diverged:
                results.append(None)
                continue
            if model is self.scratch:
                model.load_state_dict(self.engine.replica_state(k))
            results.append(measure_noise(model, loss_fn, (self.x, self.y), cfg.batch_size, m=m, generator=r.m_gen))
        return results

    def batch(self, r: _Replica, idx: torch.Tensor | None):
        if idx is None:
            return None
        if self.dist.world > 1:
            idx = self.dist.shard(idx)
        if idx.device != self.x.device:
            idx = idx.to(self.x.device)
        xb = self.x[idx]
        if self.ds.augment is not None:
            xb = self.ds.augment(xb, r.aug_gen)
        return xb, self.y[idx]

    def _extra_grads(self) -> list[list[torch.Tensor | None]]:
        """SGD noise logging: the gradient of one extra independent batch per replica, at the
        current point, leaving BatchNorm running statistics untouched."""
        saved = self.engine.buffers()
        batches = []
        for r in self.replicas:
            idx = torch.randint(len(self.x), (self.cfg.batch_size,), generator=r.noise_gen)
            batches.append(self.batch(r, idx))
        loss = self.engine.loss(self.engine.stack(batches))
        grads = list(torch.autograd.grad(loss, self.engine.params, allow_unused=True))
        self.engine.restore_buffers(saved)
        return grads

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> None:
        cfg, engine, opt = self.cfg, self.engine, self.opt
        engine.train(True)
        bar = _progress_bar(self.end_time, self.t, cfg, len(self.replicas), self.progress)
        stop = self.end_time * (1 - TIME_RTOL)
        start = time.perf_counter() - self.elapsed
        log_noise = cfg.noise == "pairs"
        noise_from, noise_to = self.noise_from * (1 - TIME_RTOL), self.noise_to * (1 - TIME_RTOL)
        if self.next_eval == 0 and self.step == 0:
            self.record(self.schedule(0.0))
            self.next_eval = 1
        factor = self.clock.lr_factor if isinstance(opt, SVAG) else 1.0
        own_clock = not hasattr(opt, "sde_time")
        last_lr = None
        try:
            while self.t < stop and self.live():
                lr = self.schedule(self.t * (1 + TIME_RTOL))  # a milestone reached up to rounding counts
                if lr != last_lr:
                    for group in opt.param_groups:
                        group["lr"] = lr * factor
                    last_lr = lr
                pairs = [r.sampler.next() for r in self.replicas]
                b1 = engine.stack([self.batch(r, p[0]) for r, p in zip(self.replicas, pairs)])
                b2 = (
                    None
                    if pairs[0][1] is None
                    else engine.stack([self.batch(r, p[1]) for r, p in zip(self.replicas, pairs)])
                )
                noise = log_noise and noise_from <= self.t < noise_to
                extra = None
                if noise and b2 is None and self.noise_period and self.step % self.noise_period == 0:
                    extra = self._extra_grads()
                engine.last_losses = None
                out = train_step(opt, engine.loss, b1, b2, return_grads=noise and b2 is not None)
                if own_clock:
                    self.own_time += self.clock.original_step_time(lr)
                self.step += 1
                if noise and (out.grads is not None or extra is not None):
                    # SGD: the step's own gradient stays in p.grad (the update does not touch it)
                    g1, g2 = out.grads if out.grads is not None else ([p.grad for p in engine.params], extra)
                    self.dist.mean_(g1)  # shard gradients -> global batch gradients
                    self.dist.mean_(g2)
                    G, N = pair_estimates(engine.stacked_grads(g1), engine.stacked_grads(g2))
                    for r, G_k, N_k in zip(self.replicas, G.tolist(), N.tolist()):
                        if not r.diverged and math.isfinite(G_k) and math.isfinite(N_k):
                            r.acc.add(G_k, N_k)  # a non-finite pair: the loss check marks the divergence
                if self.dist.world > 1:
                    loss1 = out.loss1.detach().clone().reshape(1)
                    self.dist.mean_([loss1])
                    losses = [loss1.item()]
                else:
                    losses = [out.loss1.item()] if engine.K == 1 else engine.last_losses.tolist()
                self._check_finite(losses, lr, start)
                t = self.t
                if bar is not None:
                    bar.update(min(t, self.end_time) - bar.n)
                    bar.set_postfix(loss=f"{losses[0]:.4f}", refresh=False)
                while self.next_eval < len(self.grid) and t >= self.grid[self.next_eval] * (1 - TIME_RTOL):
                    self.elapsed = time.perf_counter() - start
                    self.record(lr)
                    self.next_eval += 1
                if t >= self.next_ckpt * (1 - TIME_RTOL):
                    while self.next_ckpt <= t * (1 + TIME_RTOL):
                        self.next_ckpt += self.ckpt_interval
                    self.elapsed = time.perf_counter() - start
                    self.save()
        finally:
            if bar is not None:
                bar.close()
        self.elapsed = time.perf_counter() - start
        self.save()

    def _check_finite(self, losses: list[float], lr: float, start: float) -> None:
        for k, loss in enumerate(losses):
            r = self.replicas[k]
            if r.diverged or math.isfinite(loss):
                continue
            r.diverged = True
            self.elapsed = time.perf_counter() - start
            message = (
                f"training loss became {loss} at step {self.step} (sde_time {self.t:.6g}, lr {lr:g}, "
                f"l {self.cfg.l:g}, seed {r.seed}); results so far are kept in {r.out}"
            )
            if self.dist.main:
                _write_status(r.out, "diverged", step=self.step, sde_time=self.t, message=message)
            if len(self.replicas) == 1:
                raise RunDiverged(message)


def _progress_bar(total: float, initial: float, cfg: RunConfig, replicas: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    seeds = f"{replicas} seeds" if replicas > 1 else "1 seed"
    return tqdm(
        total=total,
        initial=min(initial, total),
        desc=f"l={cfg.l:g} {seeds}",
        unit="t",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| t={n:.3g}/{total:.3g} [{elapsed}<{remaining}{postfix}]",
        leave=False,
    )


def _write_status(out: Path, status: str, **extra: Any) -> None:
    write_json(out / "status.json", {"status": status, **extra})


def _prepare(cfg: RunConfig, out: Path, resume: bool, create: bool = True) -> bool:
    """Check ``out`` can hold the run (and create it if ``create``); return whether there is a
    checkpoint to resume from. Read-only without ``create``, so every process of a
    multi-process run can check, and fail with the same message."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    if resume and (out / "config.json").is_file():
        saved = read_json(out / "config.json").get("config", {})
        mine = cfg.to_dict()
        defaults = RunConfig().to_dict()
        # a field added after the run was written means that run used the field's default
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        if saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise ValueError(f"cannot resume {out}: config differs in {diff}; resume with the saved config")
    elif resume and out.exists() and any(out.iterdir()):
        raise ValueError(f"cannot resume {out}: it holds no config.json of a run")
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; pass --resume to continue the run in it or choose another --out")
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return resume and (out / "checkpoint.pt").is_file()  # killed before its first checkpoint: start afresh


def run_replicas(
    cfg: RunConfig,
    seeds: list[int],
    out_dirs: list[str | os.PathLike],
    *,
    resume: bool = False,
    progress: bool = True,
    backend: str = "auto",
) -> list[RunResult]:
    """Train ``cfg`` for every seed at once (one process, stacked parameters when > 1 seed).

    Each seed writes into its own folder exactly what :func:`run` would write (metrics equal to
    float rounding: batched kernels may round differently). A seed that diverges is marked
    ``diverged`` in its ``status.json`` and the others go on. ``cfg.seed`` is ignored.
    """
    from dataclasses import replace

    cfg.validate()
    outs = [Path(o) for o in out_dirs]
    if len(outs) != len(seeds) or not seeds:
        raise ValueError(f"need one out_dir per seed, got {len(seeds)} seeds and {len(outs)} folders")
    cfgs = [replace(cfg, seed=int(s)) for s in seeds]
    dist, device = setup(resolve_device(cfg.device), cfg.batch_size)
    if dist.world > 1 and len(seeds) > 1:
        raise ValueError(f"multi-process runs train one seed at a time, got {len(seeds)} seeds")
    # every process checks (a bad folder fails on all of them alike); rank 0 alone creates it
    resumable = [_prepare(c, o, resume, create=dist.main) for c, o in zip(cfgs, outs)]
    statuses = [read_json(o / "status.json").get("status") if (o / "status.json").is_file() else None for o in outs]
    if dist.world > 1:
        import torch.distributed

        torch.distributed.barrier()  # every rank has decided before rank 0 writes anything
    if all(resumable) and all(s == "completed" for s in statuses):
        return [RunResult(o, "completed", read_jsonl(o / "metrics.jsonl")) for o in outs]
    loop = _Loop(cfg, [int(s) for s in seeds], outs, progress, backend, dist, device)
    if all(resumable):
        loop.load([load_checkpoint(o / "checkpoint.pt", map_location=loop.device) for o in outs])
        for r, status in zip(loop.replicas, statuses):
            r.diverged = status == "diverged"
            if not dist.main:
                continue
            rows = read_jsonl(r.out / "metrics.jsonl")[: r.n_records] if (r.out / "metrics.jsonl").exists() else []
            if len(rows) != r.n_records:
                raise ValueError(
                    f"cannot resume {r.out}: metrics.jsonl has {len(rows)} records, "
                    f"the checkpoint expects {r.n_records}"
                )
            write_jsonl(r.out / "metrics.jsonl", rows)
    elif dist.main:
        for c, r in zip(cfgs, loop.replicas):
            (r.out / "metrics.jsonl").unlink(missing_ok=True)
            (r.out / "checkpoint.pt").unlink(missing_ok=True)
            write_json(r.out / "config.json", {"config": c.to_dict(), "derived": loop.derived()})
            write_json(r.out / "env.json", _environment(c, loop.device, r.seed, len(seeds), dist.world))
    status_writer = _write_status if dist.main else (lambda *a, **k: None)
    for r in loop.live():
        status_writer(r.out, "running", step=loop.step)
    try:
        loop.train()
    except KeyboardInterrupt:
        loop.save()
        for r in loop.live():
            status_writer(r.out, "interrupted", step=loop.step, sde_time=loop.t)
        raise
    results = []
    for r in loop.replicas:
        if not r.diverged:
            status_writer(r.out, "completed", step=loop.step, sde_time=loop.t, wall_time=loop.elapsed)
        rows = read_jsonl(r.out / "metrics.jsonl") if dist.main else []
        results.append(RunResult(r.out, "diverged" if r.diverged else "completed", rows))
    if dist.world > 1:
        import torch.distributed

        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return results


def run(cfg: RunConfig, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train one run into ``out_dir`` (see the module docstring for what it writes).

    Args:
        cfg: the run configuration (validated here).
        out_dir: output folder; it must be empty or absent unless ``resume``.
        resume: continue from ``out_dir/checkpoint.pt`` (same config required); the
            metrics are bit-identical to an uninterrupted run except ``wall_time``.
        progress: show a progress bar over continuous time.

    Raises:
        RunDiverged: the loss became NaN/inf (``status.json`` says so; files are kept).
        ValueError: bad config, a non-empty folder without ``resume``, or a config mismatch.
    """
    return run_replicas(cfg, [cfg.seed], [out_dir], resume=resume, progress=progress)[0]
