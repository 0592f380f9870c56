"""A run's timeline on continuous time: schedule, end, evaluation grid, checkpoints, G/N window.

A :class:`~svag.config.RunConfig` gives every length in **SGD-equivalent epochs** (one epoch =
``n/B`` steps of the simulated run). The optimizer's :class:`~svag.optim.Clock` says how much
continuous time one step of the simulated run covers at LR η (``η`` for SGD, ``η²`` for
Adam/RMSprop, ``η/(1−β)`` for heavy-ball SGD), so an epoch at LR η covers
``τ(η) = (n/B)·clock.original_step_time(η)``. :meth:`Timeline.of` converts every epoch count
to time once; the runner then drives everything on time, so every ``l`` is evaluated, decays
its LR and stops at the same continuous times.

A schedule shaped on the simulated run's steps (``schedule_unit="step"``, the default for multistep,
cosine and triangle: :class:`svag.schedules.OnSteps`) puts evaluations, checkpoints and the G/N
window at its step boundaries ``T_k`` (``k`` rounded from epochs·n/B), which every ``l`` reaches
exactly. The epochs the timeline reports (``eval_epochs``) are the simulated run's own, ``k·B/n``
as its records count them, never time over the base LR's ``τ``: on a time-shaped schedule the
steps that cover ``[0, t]`` (:func:`svag.schedules.original_steps`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from svag import schedules as S
from svag.clock import TIME_RTOL  # a time t_j is reached when sde_time >= t_j·(1 − TIME_RTOL)

__all__ = ["TIME_RTOL", "Timeline", "make_schedule"]


def make_schedule(cfg, steps_per_epoch: float, clock) -> tuple[S.Schedule, float]:
    """The LR schedule on continuous time and the run's end time ``T``.

    Shaped on steps (``schedule_unit="step"``, the default) a multistep, cosine or triangle runs over the
    simulated run's ``K = ⌈epochs·n/B⌉`` steps (:class:`svag.schedules.OnSteps`), as
    ``torch.optim.lr_scheduler`` stepped once per step does: a multistep's milestone ``m`` decays the LR
    from step ``⌈m·n/B⌉`` on (``MultiStepLR``'s milestone), a warm-up lasts ``warmup·n/B`` steps, and ``T``
    is the time those steps cover. Shaped on time (``schedule_unit="time"``), milestones become the times
    at which the SDE reaches them (phase ``i`` at LR ``η·γ^i`` lasts its epochs times ``τ(η·γ^i)``), cosine
    and triangle span ``T = epochs·τ(η)`` and a warm-up ``warmup·τ(η)``. Constant is the same on either
    unit (its warm-up is on time).
    """
    tau = steps_per_epoch * clock.original_step_time(cfg.lr)
    on_steps = cfg.schedule_unit == "step" and cfg.schedule in ("multistep", "cosine", "triangle")
    unit = steps_per_epoch if on_steps else tau  # one SGD-equivalent epoch on the schedule's own axis
    if on_steps:
        end = _steps(cfg.epochs * steps_per_epoch)  # the simulated run's steps (a partial last one counts)
    if cfg.schedule in ("constant", "multistep") and not on_steps:
        edges = [0.0, *cfg.milestones, cfg.epochs]
        times, t = [], 0.0
        for i in range(len(edges) - 1):
            t += (edges[i + 1] - edges[i]) * steps_per_epoch * clock.original_step_time(cfg.lr * cfg.gamma**i)
            times.append(t)
        end = times[-1]
        sched: S.Schedule = (
            S.MultiStep(cfg.lr, milestones=tuple(times[:-1]), gamma=cfg.gamma) if cfg.milestones else S.Constant(cfg.lr)
        )
    elif cfg.schedule == "multistep":  # on steps: MultiStepLR's milestones, the first step at or past m·n/B
        sched = S.MultiStep(cfg.lr, milestones=tuple(float(_steps(m * steps_per_epoch)) for m in cfg.milestones),
                            gamma=cfg.gamma)  # fmt: skip
    else:
        if not on_steps:
            end = cfg.epochs * unit
        if cfg.schedule == "cosine":
            sched = S.Cosine(cfg.lr, horizon=end)
        else:
            _check_cycles(cfg, end if on_steps else cfg.epochs * steps_per_epoch)
            sched = S.Triangle(cfg.lr, end / cfg.cycles / 2, end, cycles=cfg.cycles)
    if cfg.warmup > 0:
        sched = S.Warmup(sched, warmup_time=cfg.warmup * unit)
    if on_steps:
        if end > S.MAX_STEPS and S.OnSteps.keeps_per_step(sched):
            what = "a multistep with a warm-up (without one: no limit)" if cfg.schedule == "multistep" else cfg.schedule
            raise ValueError(
                f"schedule_unit step keeps one LR per step: epochs={cfg.epochs:g} × n_train/B = {steps_per_epoch:g} "
                f"gives {end:.3g} steps, at most {S.MAX_STEPS:.0e} are allowed for {what}; use fewer epochs or "
                "schedule_unit time"
            )
        sched = S.OnSteps.for_clock(sched, end, clock)
        end = sched.horizon
    return sched, end


def _check_cycles(cfg, steps: float) -> None:
    """Refuse a triangle whose half-cycle spans less than one of the simulated run's ``steps`` (at the peak LR on
    time): its steps would sample the LR once per several cycles, a flat or aliased curve instead of a triangle."""
    if steps / (2 * cfg.cycles) >= 1:
        return
    most = math.floor(steps / 2)
    fix = f"use cycles <= {most}" if most >= 1 else "use more epochs"
    raise ValueError(
        f"cycles={cfg.cycles} makes each half-cycle of the triangle {steps / (2 * cfg.cycles):.3g} steps of the "
        f"simulated run long (epochs={cfg.epochs:g} × n_train/B gives {steps:.4g} steps); a half-cycle must span at "
        f"least one step: {fix}"
    )


def _steps(x: float) -> int:
    """``⌈x⌉`` of a step count computed in floats: ``x`` within :data:`TIME_RTOL` above an integer is that integer."""
    return math.ceil(x * (1 - TIME_RTOL))


def _time_at_epoch(schedule: S.OnSteps, epoch: float, steps_per_epoch: float) -> float:
    """When the simulated run starts its first step at or past ``epoch·n/B`` (``inf`` for ``inf``; its end past it)."""
    return math.inf if epoch == math.inf else schedule.time_at(min(_steps(epoch * steps_per_epoch), schedule.steps))


def _step_grid(per: float, steps: int) -> list[int]:
    """Steps ``round(j·per)`` for j = 0, 1, … up to ``steps`` (the last one included)."""
    return sorted({min(round(j * per), steps) for j in range(math.ceil(steps / per) + 1)})


@dataclass(frozen=True)
class Timeline:
    """Every time of a run, in continuous time (see the module docstring)."""

    time_per_epoch: float  # τ(η) at the base LR
    end_time: float  # T
    schedule: S.Schedule
    eval_times: tuple[float, ...]  # t_j = j·eval_every·τ, and T (on steps: T_k at k = j·eval_every·n/B, and T)
    eval_epochs: tuple[float, ...]  # epochs of the simulated run at each t_j: k·B/n (on time: S.original_steps)
    checkpoint_interval: float  # 0: only at the end
    checkpoint_times: tuple[float, ...]  # on steps: T_k at k = j·checkpoint_every·n/B (else empty: the interval)
    m_interval: float  # P1's m-batch G/N measurement (0: off)
    noise_from: float  # G/N only from steps starting in [noise_from, noise_to) (on steps: T_k at k = ⌈epochs·n/B⌉)
    noise_to: float

    @classmethod
    def of(cls, cfg, n_train: int, clock) -> Timeline:
        steps_per_epoch = n_train / cfg.batch_size
        tau = steps_per_epoch * clock.original_step_time(cfg.lr)
        schedule, end = make_schedule(cfg, steps_per_epoch, clock)
        checkpoints: list[float] = []
        start, stop = cfg.noise_window or (0.0, math.inf)
        noise_from, noise_to = start * tau, stop * tau
        if isinstance(schedule, S.OnSteps):  # at the simulated run's step boundaries: every l lands on them
            steps = _step_grid(cfg.eval_every * steps_per_epoch, schedule.steps)
            grid = [schedule.time_at(k) for k in steps]
            epochs = [k * cfg.batch_size / n_train for k in steps]  # as the records count them (runner.recorder)
            if cfg.checkpoint_every > 0:
                checkpoints = [schedule.time_at(k) for k in _step_grid(cfg.checkpoint_every * steps_per_epoch,
                                                                       schedule.steps)[1:]]  # fmt: skip
            noise_from, noise_to = (_time_at_epoch(schedule, e, steps_per_epoch) for e in (start, stop))
        else:
            interval = cfg.eval_every * tau
            n_pts = math.floor(end / interval * (1 + TIME_RTOL))
            grid = [j * interval for j in range(n_pts + 1)]
            if end - grid[-1] > TIME_RTOL * end:
                grid.append(end)
            epochs = [k * cfg.batch_size / n_train for k in S.original_steps(schedule, grid, clock)]
        return cls(
            time_per_epoch=tau,
            end_time=end,
            schedule=schedule,
            eval_times=tuple(grid),
            eval_epochs=tuple(epochs),
            checkpoint_interval=cfg.checkpoint_every * tau,
            checkpoint_times=tuple(checkpoints),
            m_interval=cfg.noise_every * tau,
            noise_from=noise_from,
            noise_to=noise_to,
        )

    def next_checkpoint(self, after: float) -> float:
        """The checkpoint time after ``after`` (a checkpoint time or 0): ``after + checkpoint_interval``, or on
        a step-shaped schedule the next of ``checkpoint_times`` (late in a cosine, time advances slowly:
        an interval of time would leave its last steps without a checkpoint); ``inf`` when none is left."""
        if self.checkpoint_interval <= 0:
            return math.inf
        if not self.checkpoint_times:
            return after + self.checkpoint_interval
        k = bisect.bisect_right(self.checkpoint_times, after * (1 + TIME_RTOL))
        return self.checkpoint_times[k] if k < len(self.checkpoint_times) else math.inf

    def to_dict(self) -> dict:
        """The part of ``config.json``'s ``derived`` that this timeline owns."""
        return {
            "time_per_epoch": self.time_per_epoch,
            "end_time": self.end_time,
            "eval_times": list(self.eval_times),
            "eval_epochs": list(self.eval_epochs),
            "schedule": S.schedule_to_dict(self.schedule),
        }
