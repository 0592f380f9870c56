"""A run's timeline on continuous time: schedule, end, evaluation grid, checkpoints, G/N window.

A :class:`~svag.config.RunConfig` gives every length in **SGD-equivalent epochs** (one epoch =
``n/B`` steps of the simulated run). The optimizer's :class:`~svag.optim.Clock` says how much
continuous time one step of the simulated run covers at LR η (``η`` for SGD, ``η²`` for
Adam/RMSprop, ``η/(1−β)`` for heavy-ball SGD), so an epoch at LR η covers
``τ(η) = (n/B)·clock.original_step_time(η)``. :meth:`Timeline.of` converts every epoch count
to time once; the runner then drives everything on time, so every ``l`` is evaluated, decays
its LR and stops at the same continuous times.
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

    Milestones in SGD-equivalent epochs become times exactly as the simulated run reaches them:
    phase ``i`` (LR ``η·γ^i``) lasts its epochs times ``τ(η·γ^i)``. Cosine and triangle shaped on time
    span ``T = epochs·τ(η)``; warm-up lasts ``warmup·τ(η)``. Shaped on steps (``schedule_unit="step"``)
    they run over the simulated run's ``K = ⌈epochs·n/B⌉`` steps, warm-up over ``warmup·n/B`` of them,
    and ``T`` is the time those steps cover (:class:`svag.schedules.OnSteps`); constant and multistep
    are the same on either unit.
    """
    tau = steps_per_epoch * clock.original_step_time(cfg.lr)
    on_steps = cfg.schedule_unit == "step" and cfg.schedule in ("cosine", "triangle")
    unit = steps_per_epoch if on_steps else tau  # one SGD-equivalent epoch on the schedule's own axis
    if cfg.schedule in ("constant", "multistep"):
        edges = [0.0, *cfg.milestones, cfg.epochs]
        times, t = [], 0.0
        for i in range(len(edges) - 1):
            t += (edges[i + 1] - edges[i]) * steps_per_epoch * clock.original_step_time(cfg.lr * cfg.gamma**i)
            times.append(t)
        end = times[-1]
        sched: S.Schedule = (
            S.MultiStep(cfg.lr, milestones=tuple(times[:-1]), gamma=cfg.gamma) if cfg.milestones else S.Constant(cfg.lr)
        )
    else:
        end = cfg.epochs * unit
        if on_steps:
            end = math.ceil(end * (1 - TIME_RTOL))  # the simulated run's steps (a partial last one counts)
            if end > S.MAX_STEPS:
                raise ValueError(
                    f"schedule_unit step keeps one LR per step: epochs={cfg.epochs:g} × n_train/B = "
                    f"{steps_per_epoch:g} gives {end:.3g} steps, at most {S.MAX_STEPS:.0e} are allowed; use fewer "
                    "epochs or schedule_unit time"
                )
        if cfg.schedule == "cosine":
            sched = S.Cosine(cfg.lr, horizon=end)
        else:
            sched = S.Triangle(cfg.lr, end / cfg.cycles / 2, end, cycles=cfg.cycles)
    if cfg.warmup > 0:
        sched = S.Warmup(sched, warmup_time=cfg.warmup * unit)
    if on_steps:
        sched = S.OnSteps.for_clock(sched, end, clock)
        end = sched.horizon
    return sched, end


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
    eval_epochs: tuple[float, ...]  # SGD-equivalent epochs of the simulated run at each t_j
    checkpoint_interval: float  # 0: only at the end
    checkpoint_times: tuple[float, ...]  # on steps: T_k at k = j·checkpoint_every·n/B (else empty: the interval)
    m_interval: float  # P1's m-batch G/N measurement (0: off)
    noise_from: float  # G/N only from steps starting in [noise_from, noise_to)
    noise_to: float

    @classmethod
    def of(cls, cfg, n_train: int, clock) -> Timeline:
        steps_per_epoch = n_train / cfg.batch_size
        tau = steps_per_epoch * clock.original_step_time(cfg.lr)
        schedule, end = make_schedule(cfg, steps_per_epoch, clock)
        checkpoints: list[float] = []
        if isinstance(schedule, S.OnSteps):  # at the simulated run's step boundaries: every l lands on them
            steps = _step_grid(cfg.eval_every * steps_per_epoch, schedule.steps)
            grid, epochs = [schedule.time_at(k) for k in steps], [k / steps_per_epoch for k in steps]
            if cfg.checkpoint_every > 0:
                checkpoints = [schedule.time_at(k) for k in _step_grid(cfg.checkpoint_every * steps_per_epoch,
                                                                       schedule.steps)[1:]]  # fmt: skip
        else:
            interval = cfg.eval_every * tau
            n_pts = math.floor(end / interval * (1 + TIME_RTOL))
            grid = [j * interval for j in range(n_pts + 1)]
            if end - grid[-1] > TIME_RTOL * end:
                grid.append(end)
            epochs = [t / tau for t in grid]
        start, stop = cfg.noise_window or (0.0, math.inf)
        return cls(
            time_per_epoch=tau,
            end_time=end,
            schedule=schedule,
            eval_times=tuple(grid),
            eval_epochs=tuple(epochs),
            checkpoint_interval=cfg.checkpoint_every * tau,
            checkpoint_times=tuple(checkpoints),
            m_interval=cfg.noise_every * tau,
            noise_from=start * tau,
            noise_to=stop * tau,
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
