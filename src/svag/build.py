"""The parts of a run, built from its config: the optimizer (which owns the clock), the models, and
the check that a user's model, data and loss fit together.

The runner, the budget check and the run-folder upgrade ask here, so a config means one optimizer
and one model everywhere. Plug-ins are resolved by their owners (:mod:`svag.models.plugin`,
:mod:`svag.data.plugin`, :func:`svag.task.make_task`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from svag.adaptive import SVAGAdam, SVAGAdamW, SVAGRMSprop
from svag.config import RunConfig
from svag.models import build_model
from svag.optim import SVAG, HeavyBallSGD
from svag.plugins import PluginError, first_line
from svag.seeds import stream_seed

__all__ = ["build_models", "build_optimizer", "check_fit"]


def build_optimizer(cfg: RunConfig, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """The optimizer that simulates ``cfg``'s run at amplification ``cfg.l``; it owns the clock."""
    if cfg.optimizer == "sgd":
        if cfg.momentum and cfg.l == 1:
            return HeavyBallSGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return SVAG(params, lr=cfg.lr, l=cfg.l, weight_decay=cfg.weight_decay, heavy_ball=cfg.momentum)
    if cfg.optimizer in ("adam", "adamw"):  # adamw: weight_decay is AdamW's decoupled λ_W
        cls, betas = SVAGAdamW if cfg.optimizer == "adamw" else SVAGAdam, tuple(cfg.betas[:2])
        return cls(params, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, l=cfg.l)
    return SVAGRMSprop(params, lr=cfg.lr, beta=cfg.betas[-1], eps=cfg.eps, weight_decay=cfg.weight_decay, l=cfg.l)


def build_models(cfg: RunConfig, seeds: list[int], ds, device: torch.device, dtype: torch.dtype) -> list:
    """One model per seed, each initialised from its seed's ``init`` stream (:mod:`svag.seeds`) in the
    run's dtype, on ``device``."""
    models = []
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # init drawn in the run's dtype, whatever the caller's default
    try:
        for seed in seeds:
            torch.manual_seed(stream_seed(seed, "init"))  # a replica's init depends on its seed alone
            model = build_model(cfg.model, input_shape=ds.input_shape, num_classes=ds.num_classes, norm=cfg.norm,
                                scale_invariant=cfg.scale_invariant, width=cfg.width)  # fmt: skip
            models.append(model.to(device, dtype))
    finally:
        torch.set_default_dtype(default_dtype)
    return models


def _scalar(value: Any, text: str, n: int) -> float:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise PluginError(f"loss {text!r} returned {shape} for a batch of {n}; expected a scalar tensor, the mean "
                          "loss over the batch")  # fmt: skip
    return float(value.detach().reshape(()))


def check_fit(model: torch.nn.Module, task, input_shape: tuple[int, ...], num_classes: int, names: dict,
              label_shape: tuple[int, ...] = ()) -> None:  # fmt: skip
    """Check the model, the data and the loss fit together before a run starts (one line each):
    the model maps a batch of 2 samples (on the ``meta`` device when ``model`` lives there: no
    memory, no arithmetic) to ``(2, *label_shape, num_classes)`` (one logit per class, per position when
    a sample has labels of shape ``label_shape``, e.g. a sequence's next tokens); the loss returns a scalar
    that depends on the logits (backward can run through it) and is the **mean** of its values on the
    one-sample batches (checked on random float64 logits, seed 0)."""
    model_name, data_name, loss_name = names["model"], names["data"], names["loss"]
    if not any(p.requires_grad for p in model.parameters()):
        raise PluginError(f"model {model_name!r} has no parameter that requires grad (none, or all frozen); svag "
                          "trains the model's parameters")  # fmt: skip
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    probe = torch.zeros((2, *input_shape), device=device)
    try:
        out = model(probe)
    except Exception as err:
        if device.type == "meta" and ("meta" in str(err).lower() or isinstance(err, NotImplementedError)):
            out = None  # an operation the meta device cannot run: the shape is checked at the first step
        else:
            raise PluginError(
                f"model {model_name!r} fails on a batch of shape {tuple(probe.shape)} from data {data_name!r} "
                f"({first_line(err)}); it must map (batch, *input_shape) to (batch, num_classes={num_classes})"
            ) from None
    expected = (2, *label_shape, num_classes)
    if out is not None and (not isinstance(out, torch.Tensor) or tuple(out.shape) != expected):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        per = f" per label position {tuple(label_shape)}" if label_shape else ""
        raise PluginError(
            f"model {model_name!r} maps a batch of shape {tuple(probe.shape)} from data {data_name!r} to {got}; "
            f"expected {expected}: one logit per class{per}"
        )
    if out is not None and not out.requires_grad:
        raise PluginError(
            f"model {model_name!r} returns outputs that do not depend on its parameters (detached from them: "
            ".detach(), numpy or torch.no_grad() in forward); svag differentiates the loss through the outputs"
        )
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, *label_shape, num_classes, dtype=torch.float64, generator=gen).requires_grad_()
    target = torch.arange(4 * math.prod(label_shape)).reshape(4, *label_shape) % num_classes
    try:
        value = task.loss(logits, target)
        whole = _scalar(value, loss_name, 4)
        if not value.requires_grad:  # computed on outputs.detach(), under no_grad, through numpy, ...
            raise PluginError(
                f"loss {loss_name!r} returns a value that does not depend on the model's outputs (it is detached from "
                "them: .detach(), .item(), numpy or torch.no_grad()); svag differentiates the loss through the outputs"
            )
        parts = [_scalar(task.loss(logits[i : i + 1], target[i : i + 1]), loss_name, 1) for i in range(4)]
    except PluginError:
        raise
    except Exception as err:
        raise PluginError(f"loss {loss_name!r} fails on logits of shape {tuple(logits.shape)} and int64 class "
                          f"labels of shape {tuple(target.shape)} ({first_line(err)})") from None  # fmt: skip
    mean, total = sum(parts) / 4, sum(parts)
    if not math.isclose(whole, mean, rel_tol=1e-6, abs_tol=1e-9):
        how = "the sum over the batch" if math.isclose(whole, total, rel_tol=1e-6) else "not the mean of the samples'"
        raise PluginError(
            f"loss {loss_name!r} gives {whole:.6g} on a batch of 4 whose one-sample losses average {mean:.6g}: it is "
            f"{how}; svag needs the mean over the batch (reduction='mean'): P1's noise is that of the mean's gradient"
        )
