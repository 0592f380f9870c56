"""Hugging Face ``Trainer``: the gradient noise scale and P1's ``B*`` in a user's own ``trainer.train()``.

Needs the optional extra (``pip install 'svag[transformers]'``); ``import svag`` never imports this
module or transformers: ``from svag.integrations.transformers import NoiseCallback``.

:class:`NoiseCallback` measures P1's signal ``G = ‖∇L‖²`` and noise ``N = tr Σ_B`` at the run's batch
``B = per_device_train_batch_size × gradient_accumulation_steps`` with the project's estimators
(:mod:`svag.noise`), and logs ``G``, ``N``, ``G/N``, McCandlish et al.'s ``B_simple = B·N/G`` and P1's
``B* = τ·B·N/G`` through ``Trainer.log``: what ``state.log_history`` keeps and every reporter of
``report_to`` (W&B, TensorBoard, MLflow, ...) receives.

**Which gradients.** Each backward of the Trainer adds one micro-batch's gradient into ``p.grad``; a
tensor hook on every trainable parameter (``Tensor.register_hook``) sees exactly that gradient, before it
is added, before ``max_grad_norm`` clips the sum and before the optimizer steps. (The callback events
alone do not suffice: ``on_substep_end`` fires after micro-batches 1 … M−1 only and
``on_pre_optimizer_step`` already sees the clipped sum.) The Trainer scales micro-batch ``j``'s loss to
its share of the step's mean loss (``1/M`` of its mean, or its token sum over the step's tokens), so
``g_j = M × (what the hook saw)`` is the gradient of micro-batch ``j``'s **mean** loss when the
micro-batches hold equal numbers of samples and of target tokens (fixed-length blocks, no ``-100``
padding: the usual packed LM data; with unequal token counts ``g_j`` weights them by their share).

* ``gradient_accumulation_steps = M > 1``: the micro-batch estimator, no extra compute
  (:func:`svag.noise.from_microbatches` of ``g_1 … g_M``: ``Ĝ = (‖Σg_j‖² − Σ‖g_j‖²)/(M(M−1))``,
  ``N̂ = (Σ‖g_j‖²/M − Ĝ)/M``, unbiased for ``‖G‖²`` and ``tr Σ/B``), streamed: no gradient is copied. Each
  hook adds ``‖h‖²`` of its parameter to micro-batch ``j``'s sum and ``2⟨A, h⟩ + ‖h‖²`` to ``‖Σ h‖²``, where
  ``A`` is what ``.grad`` holds before ``h`` joins it (:func:`svag.noise.from_microbatch_sums`; a parameter
  whose hook fires twice in one micro-batch is refused, its ``‖g_j‖²`` would need a copy).
* ``gradient_accumulation_steps = 1``: the extra-batch estimator of ``svag train``: at a measured step it
  computes, before the step's forward, the gradient of one extra batch of ``B`` indices drawn i.i.d. from
  the training set (the ``noise_batches`` stream of :mod:`svag.seeds`), collated by the training
  ``DataLoader``'s ``collate_fn``, its loss by ``trainer.compute_loss`` (the Trainer's own loss), and pairs
  it with the step's batch gradient: ``Ĝ = ⟨g1, g2⟩``, ``N̂ = ‖g1 − g2‖²/2`` (:func:`svag.noise.from_pair`).
  The extra batch leaves the training as it was: module modes and buffers restored, ``.grad`` untouched,
  the global RNG (dropout) forked around it. Cost: one forward and backward per measured step.

The last step of an epoch is skipped when it is short (fewer micro-batches, or a last batch with fewer
samples): its ``N`` would belong to another batch size.

**Windows and the interval.** Per-step estimates are averaged, numerator and denominator apart, over each
logging interval (``logging_steps``; :class:`svag.noise.NoiseAccumulator`); the intervals of the ``window``
pool as one accumulator (:func:`svag.noise.pool_window`), whose ``G/N`` and SEs give ``B*``
(:func:`svag.lsr.predict_from_window`) and its 95% Fieller interval (:func:`svag.lsr.max_batch_interval`),
positive by construction and open above (``inf``) when ``G`` is not distinguishable from 0. P1 reads ``G/N``
at the equilibrium of the constant-LR phase: put ``window`` there.

What it assumes: one process on one device (no DDP, DeepSpeed or ``DataParallel``), gradients not
loss-scaled (fp32 or bf16, not fp16), and for the extra batch a map-style training data set.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import torch
from accelerate.utils import send_to_device
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from svag.lsr import check_tau, check_window, prediction_line, window_prediction
from svag.noise import NoiseAccumulator, _Preserved, from_microbatch_sums, from_pair, squared_norm
from svag.runner.recorder import NOISE_KEYS
from svag.seeds import check_seed, generator

__all__ = ["NoiseCallback"]

EXTRA_FRACTION = 0.02  # default share of steps measured with the extra batch (its cost: that share of the compute)


class NoiseCallback(TrainerCallback):
    """Log ``G``, ``N``, ``G/N``, ``B_simple`` and P1's ``B*`` during ``trainer.train()``.

    Args:
        trainer: the ``transformers.Trainer`` to measure; the callback adds itself to it
            (``trainer.add_callback``) and logs through ``trainer.log``.
        fraction: share of optimizer steps measured, the steps ``0, k, 2k, …`` with ``k = round(1/fraction)``
            (default: every step with the micro-batch estimator, which costs no forward or backward;
            ``0.02`` with the extra batch, which costs one forward and backward per measured step).
        window: ``(start, end)`` in epochs (``state.epoch``): measure only there, and pool ``B*`` over it
            (default: the whole run).
        tau: P1's threshold ``τ`` on ``G/N`` (``B* = τ·B·N/G``).
        seed: root of the seed tree whose ``noise_batches`` stream draws the extra batches.
        verbose: print the prediction at the end of training (main process).

    After ``train()``: :attr:`records` (one dict per logged interval: ``step``, ``epoch``, the fields
    ``G``, ``N``, ``G_se``, ``N_se``, ``GN_cov``, ``gn_ratio``, ``gn_ratio_se``, ``noise_count`` of
    ``metrics.jsonl`` and ``B_simple``), :attr:`prediction` (``B_star``, ``B_star_se``, the Fieller
    interval ``low``/``high``, ``tau``, the pooled ``G``, ``N``, ``ratio``, ``ratio_se``, ``count``,
    ``batch_size``, ``estimator``, ``window``) and :meth:`summary`. Logged keys: ``svag/<field>`` for each
    record field, and ``svag/B_star``, ``svag/B_star_low``, ``svag/B_star_high`` pooled over the window so
    far (finite values only: reporters reject ``inf``).
    """

    def __init__(
        self,
        trainer: Trainer,
        *,
        fraction: float | None = None,
        window: tuple[float, float] | None = None,
        tau: float = 2.0,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        if not isinstance(trainer, Trainer):
            raise ValueError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1
        ):
            raise ValueError(f"fraction must be in (0, 1] or None, got {fraction!r}")
        window, tau = check_window(window), check_tau(tau)
        self.trainer, self.fraction, self.tau, self.verbose = trainer, fraction, float(tau), verbose
        self.window = window
        self.seed = check_seed(seed)
        self._gen = generator(self.seed, "noise_batches")
        self.records: list[dict[str, Any]] = []
        self.prediction: dict[str, Any] | None = None
        self.batch_size = self.micro_batches = self.period = 0
        self.acc = NoiseAccumulator()
        self._params: list[torch.nn.Parameter] = []
        self._handles: list[Any] = []
        self._slot: dict[int, torch.Tensor] | None = None  # the micro-batch being captured (None: not capturing)
        self._micro: list[Any] = []  # micro-batch estimator: Σ‖h‖² of each complete micro-batch (0-d tensors)
        self._total_sq: Any = 0.0  # ‖Σ_j h_j‖² so far (h_j: what micro-batch j's backward adds to .grad)
        self._extra: list[torch.Tensor | None] | None = None
        self._dataset: Any = None
        self._collate: Any = None
        self._irregular_last = False
        self._steps_per_epoch = 0
        trainer.add_callback(self)

    @property
    def estimator(self) -> str:
        """``"microbatch"`` (``gradient_accumulation_steps > 1``) or ``"pairs"`` (one extra batch per measured step)."""
        return "microbatch" if self.micro_batches > 1 else "pairs"

    # -- set-up ---------------------------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if args.world_size != 1 or args.n_gpu > 1 or args.deepspeed:
            raise ValueError(
                f"NoiseCallback measures in one process on one device, got world_size {args.world_size}, "
                f"n_gpu {args.n_gpu}{', DeepSpeed' if args.deepspeed else ''}"
            )
        if args.fp16:
            raise ValueError("NoiseCallback needs unscaled gradients: fp32 or bf16, got fp16 (its loss scaling)")
        self.micro_batches = args.gradient_accumulation_steps
        self.batch_size = args.per_device_train_batch_size * self.micro_batches
        self.acc = NoiseAccumulator(self.batch_size)
        fraction = self.fraction if self.fraction is not None else 1.0 if self.micro_batches > 1 else EXTRA_FRACTION
        self.period = max(1, round(1 / fraction))
        loader = kwargs.get("train_dataloader")
        self._short_steps(args, loader)
        if self.micro_batches == 1:
            self._dataset = getattr(loader, "dataset", None)
            self._collate = getattr(loader, "collate_fn", None) or torch.utils.data.default_collate
            if not (hasattr(self._dataset, "__getitem__") and hasattr(self._dataset, "__len__")):
                raise ValueError(
                    "NoiseCallback draws its extra batches from a map-style data set, got "
                    f"{type(self._dataset).__name__}: use gradient_accumulation_steps > 1 for the micro-batch estimator"
                )
        self._params = [p for p in self.trainer.model.parameters() if p.requires_grad]
        self._handles = [p.register_hook(functools.partial(self._capture, i)) for i, p in enumerate(self._params)]

    def _short_steps(self, args: TrainingArguments, loader: Any) -> None:
        """Whether the last optimizer step of an epoch holds fewer micro-batches or a shorter last batch."""
        try:
            batches, n = len(loader), len(loader.dataset)
        except TypeError:  # an iterable data set: no length, no epoch end to skip
            return
        M, b = self.micro_batches, args.per_device_train_batch_size
        self._steps_per_epoch = max(1, math.ceil(batches / M))
        self._irregular_last = batches % M != 0 or (not args.dataloader_drop_last and n % b != 0)

    def _capture(self, i: int, grad: torch.Tensor) -> None:
        """Tensor hook of parameter ``i``: this backward's gradient ``h``, before it is added to ``.grad``.

        Extra-batch estimator: kept (one copy: the step's gradient). Micro-batch estimator: only
        ``‖h‖²`` and ``2⟨A, h⟩ + ‖h‖²`` (``A = .grad`` before ``h`` joins it) are kept, in float64."""
        if self._slot is None:
            return
        h = grad.detach()
        if self.micro_batches == 1:  # a copy: autograd may adopt h as .grad, which clipping then scales in place
            self._slot[i] = h.clone() if i not in self._slot else self._slot[i] + h
            return
        if i in self._slot:
            raise RuntimeError(
                f"NoiseCallback: parameter {i} received two gradients in one micro-batch (a second backward "
                "through it before the micro-batch ended); the micro-batch estimator needs one per micro-batch"
            )
        sq = squared_norm(h, as_tensor=True)  # tensors: no synchronization per parameter (read once per step)
        self._slot[i] = sq
        acc = self._params[i].grad
        cross = 0.0 if acc is None else 2.0 * torch.dot(acc.flatten().float(), h.flatten().float()).double()
        self._total_sq = self._total_sq + cross + sq

    # -- one step -------------------------------------------------------------------------------------
    def _measured(self, state: TrainerState) -> bool:
        step = state.global_step
        if step % self.period:
            return False
        if self._irregular_last and step % self._steps_per_epoch == self._steps_per_epoch - 1:
            return False
        epoch = state.epoch or 0.0
        return self.window is None or self.window[0] <= epoch < self.window[1]

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._micro, self._slot, self._extra, self._total_sq = [], None, None, 0.0
        if not self._measured(state):
            return
        if self.micro_batches == 1:
            self._extra = self.extra_grads()  # before the slot opens: the hooks must not see it
        self._slot = {}

    def extra_grads(self) -> list[torch.Tensor | None]:
        """The gradient of the Trainer's loss on one extra batch of ``B`` i.i.d. indices, at the current
        parameters; module modes, buffers, ``.grad`` and the global RNG are left as they were.

        The loss is normalised as the step's: ``Trainer.get_batch_samples`` (the base class's, so that a subclass's
        override that skips or logs batches is not run) counts the batch's items (target tokens) as for a step of
        one batch, and ``trainer.compute_loss`` divides by that count, so both gradients of a pair carry the same
        factor (transformers 5.25 counts a GPT-2 without ``loss_type`` by ``labels``, not by the shifted targets the
        model averages over: a factor 15/16 at 16 tokens, which must hit both or neither)."""
        model, trainer = self.trainer.model, self.trainer
        device = trainer.args.device
        idx = torch.randint(len(self._dataset), (self.batch_size,), generator=self._gen)
        batch = send_to_device(self._collate([self._dataset[i] for i in idx.tolist()]), device)
        _, count = Trainer.get_batch_samples(trainer, iter([batch]), 1, device)
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), _Preserved(model), trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, batch, num_items_in_batch=count)
            return list(torch.autograd.grad(loss, self._params, allow_unused=True))

    def on_substep_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self._slot is not None:  # micro-batch j < M is complete
            self._micro.append(sum(self._slot.values()))
            self._slot = {}

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        if self._slot is None:
            return
        slot, self._slot = self._slot, None  # the last micro-batch, captured before clipping
        if self.micro_batches > 1:
            self._micro.append(sum(slot.values()))
            M, sums = len(self._micro), self._micro
            self._micro = []
            if M < 2:
                return
            # g_j = M·h_j: Σ‖g_j‖² = M²·Σ‖h_j‖², and ḡ = Σ_j g_j/M = Σ_j h_j
            G, N = from_microbatch_sums(M, M * M * float(sum(sums)), float(self._total_sq))
        elif self._extra is not None:
            G, N = from_pair([slot.get(i) for i in range(len(self._params))], self._extra)
        else:
            return
        self._extra = None
        if math.isfinite(G) and math.isfinite(N):
            self.acc.add(G, N)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if control.should_log or control.should_training_stop:  # DefaultFlowCallback, earlier in the list, set them
            self._record(state, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if control.should_log:  # logging_strategy="epoch"
            self._record(state, control)

    # -- logging --------------------------------------------------------------------------------------
    def _record(self, state: TrainerState, control: TrainerControl) -> None:
        """Log the interval's G/N (if it has estimates) with the window's B* so far, and start the next interval.

        ``Trainer.log`` clears ``control.should_log`` (the callback handler's ``on_log``); the Trainer's own log of
        this step (loss, learning rate) comes after ours and needs it, so it is set back."""
        if self.acc.count == 0:
            return
        res = self.acc.result()
        self.acc.reset()
        values = (res.G, res.N, res.G_se, res.N_se, res.GN_cov, res.ratio, res.ratio_se, res.m)
        row = {"step": state.global_step, "epoch": state.epoch, **dict(zip(NOISE_KEYS, values))}
        row["B_simple"] = self.batch_size / res.ratio if res.ratio > 0 else math.inf
        self.records.append(row)
        self.prediction = self._predict()
        metrics = {f"svag/{k}": float(v) for k, v in row.items() if k not in ("step", "epoch")}
        p = self.prediction
        metrics.update({"svag/B_star": p["B_star"], "svag/B_star_low": p["low"], "svag/B_star_high": p["high"]})
        should_log = control.should_log
        self.trainer.log({k: v for k, v in metrics.items() if math.isfinite(v)})
        control.should_log = self.trainer.control.should_log = should_log

    def _predict(self) -> dict[str, Any]:
        return window_prediction(self.batch_size, self.records, self.tau, window=self.window, estimator=self.estimator)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        for handle in self._handles:
            handle.remove()
        self._handles, self._slot = [], None
        if self.verbose and state.is_world_process_zero:
            print(self.summary(), flush=True)

    def summary(self) -> str:
        """The prediction in one line, in words where the numbers do not hold (:func:`svag.lsr.prediction_line`)."""
        return prediction_line(self.prediction)
