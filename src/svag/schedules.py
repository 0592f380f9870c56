"""Learning-rate schedules on continuous SDE time ``t`` (not on steps).

An SVAG run with amplification ``l`` takes ``l`` times more steps than the SGD run it
simulates, each covering ``lr/l`` of continuous time (P1 §4: "LR = η/l; LR milestones ×2l"
in epochs of the SVAG loader). Defining the schedule on ``t`` gives every ``l`` the same
``lr(t)``, so SGD and SVAG curves decay at the same point of the x-axis.

Because time advances by ``lr(t)/l`` per step, a schedule must stay **strictly positive**:
at ``lr = 0`` time would stop. Cosine, triangle and warm-up therefore take a positive floor
(``final_lr``, ``start_lr``) and refuse 0.

:class:`PerStep` carries a schedule written per step of the simulated run (a GPT script's warm-up +
cosine) to this time axis, for SGD's clock (``t = Σ η_k``) and Adam's (``t = Σ η_k²``) alike;
:class:`OnSteps` does the same for a multistep, cosine or triangle read on the step axis
(``--schedule-unit step``), which keeps each ``l`` at exactly ``l^p`` times the simulated run's steps.
:func:`original_steps` counts the simulated run's steps up to a time, for any schedule.

Each schedule is a small frozen dataclass: call it with ``t`` to get the LR, and
``dataclasses.asdict`` / :func:`schedule_from_dict` round-trip it through ``config.json``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields

from svag.clock import TIME_RTOL, Clock

__all__ = [
    "Constant",
    "Cosine",
    "MultiStep",
    "OnSteps",
    "PerStep",
    "Schedule",
    "Triangle",
    "Warmup",
    "original_steps",
    "schedule_from_dict",
    "schedule_to_dict",
]


MAX_STEPS = 10**7  # OnSteps keeps one LR and one end time per step (but of a multistep): 10^7 steps are ~0.5 GB


def _positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0 (time stops at lr = 0), got {value!r}")


class Schedule:
    """Base: ``schedule(t) -> lr`` for continuous time ``t >= 0``."""

    kind = "schedule"

    def __call__(self, t: float) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr``."""

    lr: float
    kind = "constant"

    def __post_init__(self) -> None:
        _positive(self.lr, "lr")

    def __call__(self, t: float) -> float:
        return self.lr


@dataclass(frozen=True)
class MultiStep(Schedule):
    """``lr(t) = lr · gamma^{#{m in milestones : m <= t}}`` (P1's ×0.1 decays)."""

    lr: float
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    kind = "multistep"

    def __post_init__(self) -> None:
        _positive(self.lr, "lr")
        _positive(self.gamma, "gamma")
        ms = tuple(float(m) for m in self.milestones)
        if any(not math.isfinite(m) or m <= 0 for m in ms) or list(ms) != sorted(ms):
            raise ValueError(f"milestones must be increasing positive times, got {self.milestones!r}")
        object.__setattr__(self, "milestones", ms)

    def __call__(self, t: float) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


@dataclass(frozen=True)
class Cosine(Schedule):
    """``lr(t) = final + (lr − final)(1 + cos(π·min(t, horizon)/horizon))/2``.

    ``final_lr = 0`` (the default) means ``1e-3·lr``: the floor keeps time advancing.
    """

    lr: float
    horizon: float
    final_lr: float = field(default=0.0)
    kind = "cosine"

    def __post_init__(self) -> None:
        _positive(self.lr, "lr")
        _positive(self.horizon, "horizon")
        final = self.final_lr if self.final_lr else 1e-3 * self.lr
        _positive(final, "final_lr")
        object.__setattr__(self, "final_lr", float(final))

    def __call__(self, t: float) -> float:
        frac = min(max(t, 0.0), self.horizon) / self.horizon
        return self.final_lr + (self.lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


@dataclass(frozen=True)
class Triangle(Schedule):
    r"""``cycles`` triangles on ``[0, horizon]``: each a linear ramp ``start_lr → lr`` then ``lr → final_lr``.

    With cycle length ``c = horizon/cycles`` and ``u = t − c·⌊t/c⌋`` the time into the current cycle,

    .. math::  \mathrm{lr}(t) = \begin{cases} s + (\eta - s)\,u/p & u \le p \\
               \eta + (f - \eta)(u - p)/(c - p) & u > p \end{cases}

    (``p = peak_time``, measured within a cycle; ``f`` after ``horizon``). One cycle (the default) is the
    triangle of P1's README; P1's figures also use two cycles (the cyclical "triangular" policy of
    Smith 2017, arXiv 1506.01186). ``start_lr = 0`` / ``final_lr = 0`` (the defaults) mean ``1e-2·lr``:
    time stops at lr = 0.
    """

    lr: float
    peak_time: float
    horizon: float
    start_lr: float = 0.0
    final_lr: float = 0.0
    cycles: int = 1
    kind = "triangle"

    def __post_init__(self) -> None:
        _positive(self.lr, "lr")
        _positive(self.horizon, "horizon")
        if isinstance(self.cycles, bool) or not isinstance(self.cycles, int) or self.cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {self.cycles!r}")
        if not 0 < self.peak_time < self.horizon / self.cycles:
            raise ValueError(
                f"peak_time must be in (0, horizon/cycles={self.horizon / self.cycles:g}) (it is measured within "
                f"a cycle), got {self.peak_time!r}"
            )
        for name in ("start_lr", "final_lr"):
            value = getattr(self, name) or 1e-2 * self.lr
            _positive(value, name)
            object.__setattr__(self, name, float(value))

    def __call__(self, t: float) -> float:
        cycle = self.horizon / self.cycles
        t = min(max(t, 0.0), self.horizon)
        u = t - cycle * min(math.floor(t / cycle), self.cycles - 1)  # the end of the last cycle stays in it
        if u <= self.peak_time:
            return self.start_lr + (self.lr - self.start_lr) * u / self.peak_time
        return self.lr + (self.final_lr - self.lr) * min(u - self.peak_time, cycle - self.peak_time) / (
            cycle - self.peak_time
        )


@dataclass(frozen=True)
class Warmup(Schedule):
    """Linear warm-up from ``start_factor·inner(0)`` to ``inner(t)`` over ``[0, warmup_time]``."""

    inner: Schedule
    warmup_time: float
    start_factor: float = 0.1
    kind = "warmup"

    def __post_init__(self) -> None:
        _positive(self.warmup_time, "warmup_time")
        if not 0 < self.start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1] (time stops at lr = 0), got {self.start_factor!r}")

    def __call__(self, t: float) -> float:
        if t >= self.warmup_time:
            return self.inner(t)
        frac = max(t, 0.0) / self.warmup_time
        return self.inner(t) * (self.start_factor + (1.0 - self.start_factor) * frac)


@dataclass(frozen=True)
class PerStep(Schedule):
    r"""A schedule written per step of the simulated run (warm-up + cosine in steps, say), on continuous time.

    Step ``k`` of the simulated run has LR ``lrs[k]`` and covers ``Δ_k = (c·lrs[k])^p`` of continuous
    time (:meth:`svag.Clock.original_step_time` of its clock, the one owner of the mapping:
    ``p = 1``, ``t = Σ η_k`` for SGD, P1; ``p = 2``, ``t = Σ η_k²`` for Adam/RMSprop, P2; ``c = 1/(1−β)``
    with heavy-ball momentum). So

    .. math::  \mathrm{lr}(t) = \eta_k \quad\text{for}\quad T_k \le t < T_{k+1}, \qquad
               T_k = \sum_{j<k} (c\,\eta_j)^p

    (the last LR after ``horizon = T_n``). An SVAG run at any ``l`` that sets ``group["lr"] =
    schedule(opt.sde_time)`` before each step then takes ``l^p`` steps at ``η_k``, each covering
    ``(c·η_k/l)^p``, i.e. exactly the time of the simulated run's step ``k`` (when ``l^p`` is an
    integer; :meth:`svag_steps`). At ``l = 1`` it is the per-step schedule itself. Boundaries are
    compared with a relative ``1e-9`` slack (:data:`svag.clock.TIME_RTOL`), since ``sde_time`` is a
    float sum. Build it with :meth:`for_optimizer` (or :meth:`for_clock`).

    Attributes:
        lrs: the simulated run's LR at each of its steps, each ``> 0`` (time stops at LR 0).
        power, lr_factor: ``p`` and ``c`` of the simulated run's clock.
    """

    lrs: tuple[float, ...]
    power: int = 1
    lr_factor: float = 1.0
    kind = "per_step"

    def __post_init__(self) -> None:
        lrs = tuple(self.lrs)
        if not lrs:
            raise ValueError("lrs must hold the LR of at least one step, got none")
        for k, lr in enumerate(lrs):
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
                raise ValueError(f"lrs[{k}] must be a finite number > 0 (time stops at lr = 0), got {lr!r}")
        object.__setattr__(self, "lrs", tuple(float(lr) for lr in lrs))
        clock = Clock(self.power, 1.0, self.lr_factor)  # validates power and lr_factor
        ends, total = [], 0.0
        for lr in self.lrs:
            total += clock.original_step_time(lr)
            ends.append(total)
        object.__setattr__(self, "_ends", tuple(ends))

    @classmethod
    def for_clock(cls, lrs, clock) -> PerStep:
        """The schedule ``lrs`` (a sequence, one LR per simulated step) on ``clock``'s time axis (its ``l`` is
        ignored: every ``l`` shares the simulated run's time)."""
        return cls(tuple(lrs), clock.power, clock.lr_factor)

    @classmethod
    def for_optimizer(cls, lrs, optimizer) -> PerStep:
        """:meth:`for_clock` with the clock an SVAG optimizer declares (``optimizer.clock()``)."""
        return cls.for_clock(lrs, optimizer.clock())

    @property
    def horizon(self) -> float:
        """``T_n``: the continuous time of the whole simulated run."""
        return self._ends[-1]

    def svag_steps(self, l: float) -> int:
        """SVAG steps at amplification ``l`` that cover the run: ``l^p·len(lrs)`` (``l^p`` must be an integer)."""
        return _svag_steps(Clock(self.power, l, self.lr_factor), len(self.lrs))

    def time_at(self, step: int) -> float:
        """``T_step``: the continuous time at which the simulated run has taken ``step`` steps (0 … ``len(lrs)``)."""
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= len(self.lrs):
            raise ValueError(f"step must be an integer in [0, {len(self.lrs)}], got {step!r}")
        return self._ends[step - 1] if step else 0.0

    def __call__(self, t: float) -> float:
        k = bisect.bisect_right(self._ends, t + TIME_RTOL * abs(t))  # sde_time is a float sum: relative slack
        return self.lrs[min(k, len(self.lrs) - 1)]

    def _steps_at(self, t: float) -> float:
        """Steps of the simulated run that cover ``[0, t]`` (:func:`original_steps`): ``k + (t − T_k)/Δ_k``."""
        k = min(bisect.bisect_right(self._ends, t), len(self.lrs) - 1)
        start = self._ends[k - 1] if k else 0.0
        return k + (t - start) / (self._ends[k] - start)


def _svag_steps(clock: Clock, steps: int) -> int:
    """``l^p·steps``: SVAG steps at ``clock``'s ``l`` over ``steps`` steps of the simulated run (``l^p`` must be
    an integer, else SVAG steps straddle the schedule's steps)."""
    per = clock.steps_per_original
    if abs(per - round(per)) > TIME_RTOL * per:
        raise ValueError(f"l^p = {per:g} is not an integer: SVAG steps at l={clock.l:g} straddle the schedule's steps")
    return round(per) * steps


class _Phases:
    r""":class:`OnSteps` of a :class:`MultiStep` (or :class:`Constant`) read on the step axis, held as its
    phases rather than one LR per step (so any number of steps, no :data:`MAX_STEPS`).

    Phase ``i`` runs the simulated run's steps ``s_i ≤ k < s_{i+1}`` at ``η_i``, each covering
    ``Δ_i = (c·η_i)^p``, from ``T_{s_i} = T_{s_{i−1}} + (s_i − s_{i−1})·Δ_{i−1}``. A milestone ``m`` (a step
    count) starts a phase at step ``⌈m⌉``, the first step ``k ≥ m``; ``j`` milestones there multiply the LR by
    ``γ^j``, as ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per step does (so ``η_2 = (η·γ)·γ``,
    which can differ from ``η·γ²`` in the last bit). ``T`` is a product, not the run's float sum of
    ``Δ_i``: they agree within :data:`svag.clock.TIME_RTOL`, the slack every reader of time allows.
    """

    def __init__(self, inner: Schedule, steps: int, clock: Clock) -> None:
        milestones = [math.ceil(m) for m in getattr(inner, "milestones", ())]
        starts, lrs = [0], [inner.lr]
        for k in sorted(set(milestones)):
            if k >= steps:  # no step left to run at the decayed LR
                break
            starts.append(k)
            lrs.append(lrs[-1] * inner.gamma ** milestones.count(k))
        self.starts, self.steps, self.clock = tuple(starts), steps, clock
        self.lrs = tuple(lrs)
        self.deltas = tuple(clock.original_step_time(lr) for lr in self.lrs)
        times = [0.0]
        for i in range(1, len(starts)):
            times.append(times[-1] + (starts[i] - starts[i - 1]) * self.deltas[i - 1])
        self.times = tuple(times)
        self.horizon = self.time_at(steps)

    def svag_steps(self, l: float) -> int:
        return _svag_steps(Clock(self.clock.power, l, self.clock.lr_factor), self.steps)

    def time_at(self, step: int) -> float:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= self.steps:
            raise ValueError(f"step must be an integer in [0, {self.steps}], got {step!r}")
        i = bisect.bisect_right(self.starts, step) - 1
        return self.times[i] + (step - self.starts[i]) * self.deltas[i]

    def __call__(self, t: float) -> float:
        i = bisect.bisect_right(self.times, t + TIME_RTOL * abs(t)) - 1  # sde_time is a float sum: relative slack
        return self.lrs[max(i, 0)]

    def _steps_at(self, t: float) -> float:
        i = max(bisect.bisect_right(self.times, t) - 1, 0)
        return self.starts[i] + (t - self.times[i]) / self.deltas[i]


@dataclass(frozen=True)
class OnSteps(Schedule):
    r"""A schedule of the simulated run's **step** ``k`` (multistep, cosine or triangle over its steps, as P1
    and ``torch.optim.lr_scheduler`` do it), carried to continuous time by :class:`PerStep`:

    .. math::  \eta_k = \mathrm{inner}(k), \quad k = 0, \dots, \mathrm{steps} - 1, \qquad
               \mathrm{lr}(t) = \eta_k \ \text{for}\ T_k \le t < T_{k+1}, \quad T_k = \sum_{j<k} (c\,\eta_j)^p

    ``inner`` is any schedule read on the step axis (``Cosine(lr, horizon=steps)``, ``Triangle``,
    ``MultiStep(lr, milestones=steps)``, ``Warmup`` of any). SGD then takes ``steps`` steps and SVAG at ``l``
    takes ``l^p·steps``, each covering ``(c·η_k/l)^p`` of time: the same continuous-time schedule for every
    ``l`` (:meth:`PerStep.svag_steps`). Shaped on time instead (``Cosine(lr, horizon=T)`` called with ``t``), a
    schedule spends as many steps on a stretch ``dt`` as ``dt/lr(t)``: a cosine to ``1e-3·lr`` takes ~32×
    the steps of its constant-LR run, almost all in its tail; a multistep's decay at time ``T_m`` falls
    inside a step, which runs at the old LR for its whole length. Only ``inner``, ``steps`` and the clock
    are stored (``config.json`` stays small); the per-step LRs are rebuilt, at most :data:`MAX_STEPS` of
    them, except for a :class:`MultiStep` or :class:`Constant` ``inner``, kept as its phases
    (:meth:`keeps_per_step`): step ``k`` runs at ``η·γ^{#{m : k ≥ m}}``, each decay multiplying the LR
    before it by ``γ`` as ``torch.optim.lr_scheduler.MultiStepLR(milestones=⌈m⌉)`` stepped once per step
    does, so that ``l = 1`` is that SGD run bit for bit (``(η·γ)·γ`` may differ from ``inner``'s ``η·γ²``
    in the last bit).
    """

    inner: Schedule
    steps: int
    power: int = 1
    lr_factor: float = 1.0
    kind = "on_steps"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        clock = Clock(self.power, 1.0, self.lr_factor)  # validates power and lr_factor
        if not self.keeps_per_step(self.inner):
            object.__setattr__(self, "_per_step", _Phases(self.inner, self.steps, clock))
            return
        if self.steps > MAX_STEPS:
            raise ValueError(
                f"steps must be at most {MAX_STEPS} for a {self.inner.kind} schedule (one LR is kept per step), "
                f"got {self.steps}"
            )
        per_step = PerStep(tuple(self.inner(float(k)) for k in range(self.steps)), self.power, self.lr_factor)
        object.__setattr__(self, "_per_step", per_step)

    @staticmethod
    def keeps_per_step(inner: Schedule) -> bool:
        """Whether ``OnSteps(inner, ...)`` keeps one LR per step (so at most :data:`MAX_STEPS` steps): yes but
        for a :class:`MultiStep` or :class:`Constant` ``inner``, held as its phases of constant LR."""
        return not isinstance(inner, (MultiStep, Constant))

    @classmethod
    def for_clock(cls, inner: Schedule, steps: int, clock) -> OnSteps:
        """``inner`` over ``steps`` steps of the simulated run, on ``clock``'s time axis (its ``l`` is ignored)."""
        return cls(inner, steps, clock.power, clock.lr_factor)

    @property
    def horizon(self) -> float:
        """``T_steps``: the continuous time of the whole simulated run."""
        return self._per_step.horizon

    def svag_steps(self, l: float) -> int:
        """SVAG steps at amplification ``l`` that cover the run: ``l^p·steps`` (:meth:`PerStep.svag_steps`)."""
        return self._per_step.svag_steps(l)

    def time_at(self, step: int) -> float:
        """``T_step``: the continuous time at which the simulated run has taken ``step`` steps
        (:meth:`PerStep.time_at`)."""
        return self._per_step.time_at(step)

    def __call__(self, t: float) -> float:
        return self._per_step(t)

    def _steps_at(self, t: float) -> float:
        return self._per_step._steps_at(t)


INTEGRAL_CELLS = 2**14  # original_steps' midpoint rule, for a schedule without a closed form


def original_steps(schedule: Schedule, times, clock: Clock) -> list[float]:
    r"""The simulated run's steps that cover ``[0, t]``, for each ``t`` of the increasing ``times``:

    .. math::  k(t) = \int_0^t \frac{dt'}{(c\,\mathrm{lr}(t'))^p}

    (``(c·lr)^p`` is ``clock.original_step_time(lr)``; ``clock.l`` is ignored), so ``k(t)·B/n`` is its
    epoch at ``t``. On a step-shaped schedule (:class:`OnSteps`, :class:`PerStep`) ``k(T_j) = j`` at its
    step boundaries; shaped on time, it is the count as steps shrink (the run itself loses up to a step
    per boundary: a step that straddles a decay runs at the old LR). Exact for those and for
    :class:`Constant` and :class:`MultiStep`; for any other schedule the midpoint rule on
    :data:`INTEGRAL_CELLS` cells over ``[0, max(times)]`` (a cosine's count comes out to rounding; a cell
    that straddles a jump of the LR by ``γ`` errs by up to ``1/(γ·INTEGRAL_CELLS)`` of the count).
    """
    times = [float(t) for t in times]
    if isinstance(schedule, (OnSteps, PerStep)):
        return [schedule._steps_at(t) for t in times]
    if isinstance(schedule, (Constant, MultiStep)):
        edges = (0.0, *getattr(schedule, "milestones", ()), math.inf)
        deltas = [clock.original_step_time(schedule(start)) for start in edges[:-1]]  # a step's time in each phase
        return [sum(max(min(t, b) - a, 0.0) / d for a, b, d in zip(edges, edges[1:], deltas)) for t in times]
    out, k, prev, total = [], 0.0, 0.0, max(times, default=0.0)
    for t in times:
        if t > prev:
            cells = math.ceil(INTEGRAL_CELLS * (t - prev) / total)
            h = (t - prev) / cells
            k += sum(h / clock.original_step_time(schedule(prev + (j + 0.5) * h)) for j in range(cells))
        out.append(k)
        prev = max(prev, t)
    return out


_KINDS: dict[str, type[Schedule]] = {
    cls.kind: cls for cls in (Constant, MultiStep, Cosine, Triangle, Warmup, PerStep, OnSteps)
}


def schedule_to_dict(schedule: Schedule) -> dict:
    """JSON-ready dict with a ``kind`` key; inverse of :func:`schedule_from_dict`."""
    out = {"kind": schedule.kind}
    for f in fields(schedule):  # type: ignore[arg-type]
        value = getattr(schedule, f.name)
        out[f.name] = schedule_to_dict(value) if isinstance(value, Schedule) else value
    for key in ("milestones", "lrs"):
        if isinstance(out.get(key), tuple):
            out[key] = list(out[key])
    return out


def schedule_from_dict(data: dict) -> Schedule:
    """Build a schedule from ``{"kind": ..., **fields}`` (as written to ``config.json``)."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown schedule kind {kind!r}; valid: {', '.join(sorted(_KINDS))}")
    if isinstance(data.get("inner"), dict):
        data["inner"] = schedule_from_dict(data["inner"])
    for key in ("milestones", "lrs"):
        if key in data:
            data[key] = tuple(data[key])
    valid = {f.name for f in fields(_KINDS[kind])}  # type: ignore[arg-type]
    unknown = set(data) - valid
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for schedule {kind!r}; valid: {sorted(valid)}")
    return _KINDS[kind](**data)
