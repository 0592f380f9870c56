"""What a run measures: the records of ``metrics.jsonl`` (evaluation and gradient signal/noise).

At each time ``t_j`` of the evaluation grid the :class:`Recorder` writes one record per replica:
``sde_time``, ``step``, ``effective_step`` (= step / the clock's steps per original step),
``epoch`` (SGD-equivalent), ``lr``, ``l``, ``seed``, ``train_loss`` and ``test_loss`` with the
task's metrics (``train_acc``, ``test_acc`` for classification), ``weight_norm_sq`` (‖x‖²),
``grad_norm_sq`` (‖∇L‖² of the mean loss over the ``eval_train_samples`` subset, in eval mode),
``wall_time``, and the interval's G/N fields (P1 §4, :mod:`svag.noise`):

- ``G``, ``N``, ``G_se``, ``N_se``, ``GN_cov``, ``gn_ratio``, ``gn_ratio_se``, ``noise_count``: the
  means over the steps since the previous record of the unbiased per-step estimates
  ``⟨g1, g2⟩`` and ``‖g1 − g2‖²/2`` from two independent batch gradients (SVAG's own two batches;
  for SGD an extra batch drawn at a fraction of the steps), their SEs and covariance;
- ``G_pre``, ``N_pre``, ``G_pre_se``, ``N_pre_se``, ``GN_pre_cov``, ``gn_ratio_pre``, ``gn_ratio_pre_se``,
  ``noise_count_pre`` (adaptive runs: Adam, AdamW, RMSprop; ``None`` otherwise): the same for the
  **preconditioned** ratio ``R(B) = Σ_i w_i Ĝ_i² / Σ_i w_i σ_i²/B`` of :mod:`svag.noise`, from the same
  pairs weighted by the optimizer's ``w = 1/(√v̂ + ε)`` taken before the step's update
  (:meth:`svag.adaptive.SVAGAdam.preconditioner_weights`; no estimate before the first step);
- ``G_m``, ``N_m``, ... : P1's m-batch measurement, at records where it is due.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from svag.noise import default_num_batches, measure_noise, pair_estimates
from svag.noise_window import PRECONDITIONED, record_keys
from svag.runner.engine import evaluate, evaluate_batches, grad_norm_sq
from svag.runner.timeline import TIME_RTOL

__all__ = ["M_KEYS", "NOISE_KEYS", "NOISE_PRE_KEYS", "RecordSink", "Recorder", "SinkFactory", "Tensors"]

NOISE_KEYS = record_keys()  # ("G", "N", "G_se", "N_se", "GN_cov", "gn_ratio", "gn_ratio_se", "noise_count")
NOISE_PRE_KEYS = record_keys(PRECONDITIONED)  # ("G_pre", ..., "noise_count_pre"): adaptive runs
LAST_RECORD_KEYS = ("sde_time", "step", "epoch", "train_loss", "test_loss", "test_acc")  # status.json's summary
M_KEYS = ("G_m", "N_m", "G_m_se", "N_m_se", "gn_ratio_m", "gn_ratio_m_se")


@dataclass
class Tensors:
    """A run's data on its device: training set, its evaluation subset, test set, augmentation.

    A Dataset-backed run (:mod:`svag.data.streamed`) gives ``train_set``: then ``x, y`` hold only the
    evaluation subset (the first ``n_eval`` training samples), batches are read from ``train_set``
    by index (:meth:`take`), and ``test_set`` (a :class:`svag.data.streamed.Chunks`) replaces ``tx, ty``.
    """

    x: torch.Tensor
    y: torch.Tensor
    tx: torch.Tensor | None
    ty: torch.Tensor | None
    n_eval: int
    augment: Any = None
    train_set: Any = None  # the training Dataset of (float32 input, int64 label), when not in memory
    test_set: Any = None  # the test set's evaluation chunks, when not in memory

    @property
    def n(self) -> int:
        """The training set's size."""
        return len(self.x) if self.train_set is None else len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.tx) if self.test_set is None else len(self.test_set)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch at indices ``idx`` (on ``x``'s device), un-augmented."""
        if self.train_set is None:
            return self.x[idx], self.y[idx]
        from svag.data.streamed import fetch

        x, y = fetch(self.train_set, idx.tolist())
        return x.to(self.x.device, self.x.dtype), y.to(self.y.device)

    def noise_data(self) -> Any:
        """The training set as :func:`svag.noise.measure_noise` takes it (the same numbers either way)."""
        if self.train_set is None:
            return self.x, self.y
        from svag.data.streamed import Cast

        return Cast(self.train_set, self.x.dtype)

    @property
    def ex(self) -> torch.Tensor:
        return self.x[: self.n_eval]

    @property
    def ey(self) -> torch.Tensor:
        return self.y[: self.n_eval]


class RecordSink(Protocol):
    """Where a run's records go besides ``metrics.jsonl`` (TensorBoard: :mod:`svag.integrations.tensorboard`)."""

    def add(self, row: dict, index: int) -> None:
        """Take record number ``index`` of the run (its fields as in ``metrics.jsonl``)."""

    def close(self) -> None:
        """The run ended or stopped: flush and let go."""


# (name of the run folder, records it keeps) -> the run's sink; picklable, to reach worker processes
SinkFactory = Callable[[str, int], RecordSink]


class Recorder:
    """Evaluation and G/N of a group of replicas (rank 0 writes; every rank joins the all-reduce)."""

    def __init__(self, cfg, engine, data: Tensors, timeline, clock, dist, batch_fn, plain_model=None) -> None:
        self.cfg, self.engine, self.data, self.timeline, self.clock, self.dist = (
            cfg,
            engine,
            data,
            timeline,
            clock,
            dist,
        )
        self.batch = batch_fn  # (replica, index tensor) -> (x, y) batch, augmented
        # m-batch measurements of an ensemble's replicas run on a copy of one plain model
        self.scratch = copy.deepcopy(plain_model) if engine.K > 1 and cfg.noise_every > 0 else None
        self.sinks: list[list[RecordSink]] = []  # per replica, the sinks its records are handed to

    # -- sinks ------------------------------------------------------------------------------------
    def open_sinks(self, factories: Sequence[SinkFactory], replicas) -> None:
        """Hand each replica's records from now on to a sink of every factory, opened with the name of
        its run folder and the number of records it keeps (a resumed run writes the later ones again)."""
        self.sinks = [[make(r.folder.path.name, r.n_records) for make in factories] for r in replicas]

    def close_sinks(self) -> None:
        for sinks in self.sinks:
            for sink in sinks:
                sink.close()
        self.sinks = []

    # -- G/N from pairs of batch gradients --------------------------------------------------------
    def extra_grads(self, replicas) -> list[torch.Tensor | None]:
        """SGD noise logging: the gradient of one extra independent batch per replica, at the
        current point, leaving BatchNorm running statistics untouched."""
        engine = self.engine
        saved = engine.buffers()
        batches = []
        for r in replicas:
            idx = torch.randint(self.data.n, (self.cfg.batch_size,), generator=r.noise_gen)
            batches.append(self.batch(r, idx))
        loss = engine.loss(engine.stack(batches))
        grads = list(torch.autograd.grad(loss, engine.params, allow_unused=True))
        engine.restore_buffers(saved)
        return grads

    def add_pair(self, replicas, g1: list, g2: list, weights: list | None = None) -> None:
        """Add each replica's per-step estimates ``(⟨g1, g2⟩, ‖g1 − g2‖²/2)`` of global batch gradients and,
        given an adaptive optimizer's ``weights`` (taken before the step's update: independent of ``g1, g2``),
        the preconditioned ``(Σ w·g1·g2, Σ w·(g1 − g2)²/2)``."""
        self.dist.mean_(g1)  # shard gradients -> global batch gradients
        self.dist.mean_(g2)
        g1, g2 = self.engine.stacked_grads(g1), self.engine.stacked_grads(g2)
        self._add(replicas, "acc", *pair_estimates(g1, g2))
        if weights is not None:  # equal on every rank, as the optimizer's state is
            self._add(replicas, "acc_pre", *pair_estimates(g1, g2, self.engine.stacked_grads(weights)))

    def add_estimates(self, replicas, G: torch.Tensor, N: torch.Tensor) -> None:
        """Add each replica's per-step estimates ``(Ĝ_k, N̂_k)`` made elsewhere (the micro-batches of a step,
        :func:`svag.noise.from_microbatch_sums`): ``(K,)`` tensors, the same on every process."""
        self._add(replicas, "acc", G, N)

    @staticmethod
    def _add(replicas, acc: str, G: torch.Tensor, N: torch.Tensor) -> None:
        for r, G_k, N_k in zip(replicas, G.tolist(), N.tolist()):
            if not r.diverged and math.isfinite(G_k) and math.isfinite(N_k):
                getattr(r, acc).add(G_k, N_k)  # a non-finite pair: the loss check marks the divergence

    # -- records ----------------------------------------------------------------------------------
    def record(self, replicas, counters, t: float, lr: float) -> None:
        """One record per live replica at time ``t`` (rank 0 writes them)."""
        if not self.dist.main:
            return
        cfg, engine, data = self.cfg, self.engine, self.data
        was_training = engine.training
        engine.train(False)
        train_loss, train_metrics = evaluate(engine, data.ex, data.ey)
        if data.test_set is None:
            test_loss, test_metrics = evaluate(engine, data.tx, data.ty)
        else:  # read from its Dataset in evaluate's chunks
            test_loss, test_metrics = evaluate_batches(engine, data.test_set, data.x.device)
        grad_sq = grad_norm_sq(engine, data.ex, data.ey)
        engine.train(was_training)
        weights = engine.weight_norm_sq()
        m_results = None
        if counters.next_m * (1 - TIME_RTOL) <= t <= self.timeline.noise_to * (1 + TIME_RTOL):
            while counters.next_m <= t * (1 + TIME_RTOL):
                counters.next_m += self.timeline.m_interval
            m_results = self._measure_m(replicas)
        effective = counters.step / self.clock.steps_per_original
        for k, r in enumerate(replicas):
            if r.diverged:
                continue
            row = {
                "sde_time": t,
                "step": counters.step,
                "effective_step": effective,
                "epoch": effective * cfg.batch_size / data.n,
                "lr": lr,
                "l": cfg.l,
                "seed": r.seed,
                "train_loss": train_loss[k],
                **{f"train_{m}": v[k] for m, v in train_metrics.items()},
                "test_loss": test_loss[k],
                **{f"test_{m}": v[k] for m, v in test_metrics.items()},
                "weight_norm_sq": weights[k],
                "grad_norm_sq": grad_sq[k],
                "wall_time": counters.elapsed,
                **self._noise_fields(r.acc, NOISE_KEYS),
                **self._noise_fields(r.acc_pre, NOISE_PRE_KEYS),
            }
            if row["G"] is not None:  # which estimator made them (records before this field: pairs)
                row["noise_source"] = cfg.noise_source
            if m_results is not None:
                res = m_results[k]
                row.update(zip(M_KEYS, (res.G, res.N, res.G_se, res.N_se, res.ratio, res.ratio_se)))
            r.folder.append_record(row)
            for sink in self.sinks[k] if self.sinks else ():
                sink.add(row, r.n_records)
            r.n_records += 1
            r.last_record = {k: row[k] for k in LAST_RECORD_KEYS if k in row}

    @staticmethod
    def _noise_fields(acc, keys: tuple[str, ...]) -> dict[str, Any]:
        """The interval's fields from ``acc`` (``None`` without estimates), which then starts the next interval."""
        if acc.count == 0:
            return dict.fromkeys(keys)
        res = acc.result()
        acc.reset()
        return dict(zip(keys, (res.G, res.N, res.G_se, res.N_se, res.GN_cov, res.ratio, res.ratio_se, res.m)))

    def _measure_m(self, replicas):
        """P1's m-batch measurement at the current point, per replica, each with its own
        generator (an ensemble's replica is copied into a plain model first)."""
        cfg, engine = self.cfg, self.engine
        m = cfg.noise_batches or default_num_batches(cfg.batch_size)
        model = engine.model if engine.K == 1 else self.scratch
        results = []
        for k, r in enumerate(replicas):
            if r.diverged:
                results.append(None)
                continue
            if model is self.scratch:
                model.load_state_dict(engine.replica_state(k))
            data = self.data.noise_data()
            results.append(measure_noise(model, engine.task.loss, data, cfg.batch_size, m=m, generator=r.m_gen))
        return results
