"""The run configuration: one dataclass, every field with a default, a unit and a help line.

The CLI builds its flags from these fields (:func:`add_config_arguments`), the runner saves
the resolved config as ``config.json``, and :func:`RunConfig.from_dict` reads it back.

Units: ``epochs``, ``eval_every``, ``checkpoint_every``, ``milestones`` and ``warmup`` are in
**SGD-equivalent epochs** (one epoch = n/B steps of the SGD run being simulated = continuous
time ``(n/B)·lr`` at constant LR); the runner converts them to continuous SDE time once and
drives everything (schedule, evaluation grid, stopping) on that time, so every ``l`` is
evaluated at the same times.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_NOISE_BATCHES",
    "MAX_RECORDS",
    "NOISE_MODES",
    "NOISE_SOURCES",
    "OPTIMIZERS",
    "PRESETS",
    "SCHEDULES",
    "RunConfig",
    "add_config_arguments",
    "config_from_args",
]

SCHEDULES = ("constant", "multistep", "cosine", "triangle")
SCHEDULE_UNITS = ("time", "step")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
NOISE_MODES = ("pairs", "off")
NOISE_SOURCES = ("pairs", "microbatch")
GRADIENT_NOISE = ("minibatch", "gaussian")
# Limits on what a config implies, checked before anything runs (a run past them would never end or
# fill the disk): records written per run (evaluations, m-batch measurements), checkpoints, and m.
MAX_RECORDS = 100_000
MAX_CHECKPOINTS = 10_000
MAX_NOISE_BATCHES = 100_000
# Fields that say only where a run's output is mirrored, not what it computes: --resume may change them.
OUTPUT_ONLY = ("tensorboard",)


def _default(name: str) -> Any:
    """The default of :class:`RunConfig`'s field ``name``."""
    f = next(f for f in fields(RunConfig) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    """One SGD (``l = 1``) or SVAG run."""

    # data and model
    data: str = _f(
        "mnist1d",
        "data set: mnist1d, fashion-mnist, cifar10, cifar100, teacher-student, or your own: package.module:callable or "
        "path/to/file.py:callable returning (train, test) (svag.plugins)",
    )
    data_root: str | None = _f(None, "folder holding the data set files (default: the packaged location)")
    n_train: int | None = _f(None, "training samples to use (default: all / the data set's default)")
    n_test: int | None = _f(None, "test samples to use (default: all / the data set's default)")
    data_seed: int = _f(0, "seed of the data set itself (subsets, synthetic data); the same for every run")
    model: str = _f(
        "mlp",
        "model: mlp, cnn, preresnet32, vgg16, vgg19, resnet32, or your own: package.module:callable or "
        "path/to/file.py:callable taking input_shape, num_classes (svag.plugins)",
    )
    norm: str = _f("none", "normalization: bn, gn (8 groups) or none")
    scale_invariant: bool = _f(False, "P1's scale-invariant form (no affine norm, frozen last layer)")
    width: float = _f(1.0, "width multiplier of the model")
    loss: str = _f(
        "cross_entropy",
        "task loss: cross_entropy (metric: accuracy), mse (squared error to one-hot labels), or your own: "
        "package.module:callable or path/to/file.py:callable, a svag.task.Task or a mean loss(outputs, targets)",
    )
    # the run being simulated
    optimizer: str = _f("sgd", "optimizer being simulated: sgd, adam, adamw (decoupled decay) or rmsprop")
    lr: float = _f(0.1, "learning rate η of the simulated run (SVAG steps with η/l)")
    momentum: float = _f(0.0, "sgd: heavy-ball β; l = 1 runs SGDM, l > 1 simulates SGD at η/(1-β)")
    betas: tuple[float, ...] = _f((0.9, 0.999), "adam: (β1, β2); rmsprop: β2 alone")
    eps: float = _f(1e-8, "adam/rmsprop: ε of the simulated run")
    batch_size: int = _f(32, "batch size B (SVAG draws two batches of B per step)")
    micro_batches: int = _f(
        1,
        "gradient accumulation: each batch as M equal micro-batches, one forward/backward each (M divides B, and "
        "B/W with W processes); the same update up to rounding, BatchNorm then sees micro-batch statistics",
    )
    weight_decay: float = _f(0.0, "L2 weight decay λ (not amplified)")
    l: float = _f(1.0, "SVAG amplification l >= 1 (l = 1 is plain SGD)")
    schedule: str = _f("constant", "LR schedule on continuous time: constant, multistep, cosine, triangle")
    schedule_unit: str = _f(
        "step",
        "multistep/cosine/triangle: shaped over the simulated run's steps (step, as P1 and torch's schedulers "
        "stepped per step: a milestone m decays from step ceil(m*n/B), as MultiStepLR; every l takes exactly l^p "
        "times its steps; svag.schedules.OnSteps) or on continuous time (time: covering dt takes dt/lr(t) steps, "
        "~32x the steps for a cosine to 1e-3 lr; a step straddling a milestone runs at the old LR)",
    )
    cycles: int = _f(1, "triangle: number of cycles (P1's two-cycle triangle: 2)")
    milestones: tuple[float, ...] = _f((), "multistep: decay points in SGD-equivalent epochs")
    gamma: float = _f(0.1, "multistep: LR factor at each milestone")
    warmup: float = _f(0.0, "linear warm-up length in SGD-equivalent epochs (0: none)")
    epochs: float = _f(10.0, "run length in SGD-equivalent epochs")
    sampling: str = _f("disjoint", "two batches per step: disjoint (one shuffled pass) or replacement")
    loader_workers: int = _f(
        0,
        "load training batches with a PyTorch DataLoader and N worker processes (0: index in-memory tensors; at "
        "most 2 per core); the same batches either way (svag.data.loader)",
    )
    gradient_noise: str = _f(
        "minibatch",
        "minibatch (SGD/SVAG: the noise of real batches) or gaussian (full-batch gradient + Gaussian noise with the "
        "batch-B covariance: P1's NGD at l = 1, Euler–Maruyama of the SDE with step η/l; svag.gaussian)",
    )
    gaussian_chunk: int = _f(1024, "gaussian: samples per forward/backward chunk of the full-batch gradient (memory)")
    # gradient signal G and noise N (P1 §4)
    noise: str = _f("pairs", "G/N logging: pairs (SVAG's two batches; SGD: extra batch) or off")
    noise_fraction: float = _f(0.02, "SGD runs: fraction of steps that draw an extra batch for G/N (≤ 5%% cost)")
    noise_every: float = _f(0.0, "interval of P1's m-batch G/N measurement, SGD-equivalent epochs (0: off)")
    noise_batches: int = _f(0, "m of the m-batch measurement (0: P1's max(200, 12800 // B))")
    noise_window: tuple[float, ...] = _f((), "measure G/N only from START to END SGD-equivalent epochs (default: all)")
    noise_source: str = _f(
        "pairs",
        "where --noise pairs gets each step's G/N: pairs (SVAG's two batches; SGD: an extra batch on "
        "--noise-fraction of the steps) or microbatch (l = 1: the --micro-batches gradients of every step, no extra "
        "compute; with W processes the W·M micro-batches; svag.noise.from_microbatch_sums)",
    )
    micro_noise_every: int = _f(
        1,
        "--noise-source microbatch: measure on every k-th step (1: every step; the measurement reads each "
        "micro-batch's gradient once, 3-16%% of a small CPU step, BENCHMARKS.md; k divides that by k)",
    )
    # bookkeeping
    seed: int = _f(0, "root of the run's seed tree: init, data order, augmentation, G/N batches (svag.seeds)")
    eval_every: float = _f(1.0, "evaluation interval in SGD-equivalent epochs of continuous time")
    eval_train_samples: int = _f(4096, "training samples used for train_loss/acc at each evaluation")
    checkpoint_every: float = _f(5.0, "checkpoint interval in SGD-equivalent epochs (0: only at the end)")
    device: str = _f("auto", "device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    dtype: str = _f("float32", "parameter dtype: float32 or float64")
    sync_bn: bool = _f(False, "multi-process runs: SyncBatchNorm for single-process equivalence (GPU only)")
    tensorboard: str = _f(
        "",
        "also write every record's scalars as TensorBoard events into DIR/<run folder name> as the run goes "
        "(svag[tensorboard]; view with tensorboard --logdir DIR; empty: off); --resume may change or drop it",
    )

    def validate(self) -> RunConfig:
        """Raise ``ValueError`` naming the first bad field and what is valid; return self."""
        from svag.clock import check_l

        def positive(name: str, integer: bool = False, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v >= 0 if allow_zero else v > 0) and (not integer or float(v).is_integer())
            if not ok:
                kind = "an integer" if integer else "a finite number"
                raise ValueError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}, got {v!r}")

        self._check_types()
        check_l(self.l)
        from svag.plugins import is_spec
        from svag.seeds import check_seed
        from svag.task import LOSSES

        check_seed(self.seed)
        if self.loss not in LOSSES and not is_spec(self.loss):  # a plug-in is checked when it is loaded (svag.plugins)
            raise ValueError(
                f"loss must be one of {', '.join(LOSSES)} or a plug-in package.module:callable or file.py:callable, "
                f"got {self.loss!r}"
            )
        for name in ("lr", "epochs", "eval_every", "width"):
            positive(name)
        positive("batch_size", integer=True)
        positive("eval_train_samples", integer=True)
        for name in ("weight_decay", "checkpoint_every", "warmup"):
            positive(name, allow_zero=True)
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                positive(name, integer=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule multistep needs --milestones (SGD-equivalent epochs), got none")
        ms = list(self.milestones)
        if any(not (0 < m < self.epochs) for m in ms) or ms != sorted(set(ms)):  # strictly: no milestone twice
            raise ValueError(f"milestones must increase within (0, epochs={self.epochs}), got {self.milestones}")
        if self.milestones and self.schedule != "multistep":  # a constant LR would drop at them, a cosine ignore them
            shown = ",".join(f"{m:g}" for m in self.milestones)
            raise ValueError(
                f"milestones apply to --schedule multistep only, got milestones {shown} with schedule "
                f"{self.schedule!r}: use --schedule multistep or drop --milestones"
            )
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not (math.isfinite(g) and 0 < g <= 1):
            raise ValueError(
                f"gamma must be a decay factor in (0, 1], got {g!r} (a factor > 1 would make each later phase "
                "longer in continuous time and its LR larger)"
            )
        if self.schedule_unit not in SCHEDULE_UNITS:
            raise ValueError(f"schedule_unit must be one of {', '.join(SCHEDULE_UNITS)}, got {self.schedule_unit!r}")
        positive("cycles", integer=True)
        if self.cycles != 1 and self.schedule != "triangle":
            raise ValueError(
                f"cycles applies to --schedule triangle only, got cycles={self.cycles} with {self.schedule}"
            )
        if self.warmup >= self.epochs:
            raise ValueError(f"warmup must be shorter than the run (epochs={self.epochs:g}), got {self.warmup:g}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to --optimizer sgd only, got optimizer {self.optimizer!r}")
        want = 2 if self.optimizer in ("adam", "adamw") else 1
        if self.optimizer != "sgd" and (len(self.betas) not in (want, 2) or not all(0 <= b < 1 for b in self.betas)):
            raise ValueError(f"betas must be {want} number(s) in [0, 1) for {self.optimizer}, got {self.betas}")
        positive("eps", allow_zero=True)
        if self.optimizer == "sgd":  # as momentum with adam: a value that would change nothing is refused, not ignored
            for name in ("betas", "eps"):
                value, default = getattr(self, name), _default(name)
                if (tuple(value) if name == "betas" else value) != default:
                    raise ValueError(
                        f"{name} applies to --optimizer adam, adamw or rmsprop only, got {name}={value!r} with sgd"
                    )
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {', '.join(NOISE_MODES)}, got {self.noise!r}")
        positive("micro_batches", integer=True)
        if self.batch_size % self.micro_batches:
            raise ValueError(
                f"micro_batches must divide batch_size={self.batch_size} (equal micro-batches), "
                f"got {self.micro_batches}"
            )
        if self.micro_batches > 1 and self.gradient_noise == "gaussian":
            raise ValueError(
                f"micro_batches applies to minibatch runs, got {self.micro_batches} with gradient_noise gaussian "
                "(its full-batch pass is chunked by --gaussian-chunk)"
            )
        if self.noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source must be one of {', '.join(NOISE_SOURCES)}, got {self.noise_source!r}")
        if self.noise_source == "microbatch" and self.micro_batches < 2:
            raise ValueError(
                f"noise_source microbatch needs --micro-batches >= 2 (the estimate compares micro-batches), "
                f"got {self.micro_batches}"
            )
        positive("micro_noise_every", integer=True)
        if self.noise_source == "microbatch" and self.l != 1:
            raise ValueError(
                f"noise_source microbatch applies to l = 1, got l={self.l:g}: SVAG's two batches give the pairs "
                "at no extra compute (--noise-source pairs)"
            )
        if not (0 <= self.noise_fraction <= 1):
            raise ValueError(f"noise_fraction must be in [0, 1], got {self.noise_fraction!r}")
        positive("noise_every", allow_zero=True)
        positive("noise_batches", integer=True, allow_zero=True)
        if self.noise_batches == 1 or self.noise_batches > MAX_NOISE_BATCHES:
            raise ValueError(
                f"noise_batches must be 0 (P1's max(200, 12800 // B)) or an integer in [2, {MAX_NOISE_BATCHES}], "
                f"got {self.noise_batches}"
            )
        from svag.data.sampling import SAMPLING_MODES

        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}")
        if self.gradient_noise not in GRADIENT_NOISE:
            raise ValueError(f"gradient_noise must be one of {', '.join(GRADIENT_NOISE)}, got {self.gradient_noise!r}")
        positive("gaussian_chunk", integer=True)
        positive("loader_workers", integer=True, allow_zero=True)
        from svag.data.loader import check_workers

        check_workers(int(self.loader_workers), "loader_workers")  # at most a few per core of this machine
        if self.loader_workers and self.gradient_noise == "gaussian":
            raise ValueError(
                f"loader_workers applies to minibatch runs, got {self.loader_workers} with gradient_noise gaussian "
                "(each gaussian step is one pass over the whole training set in memory): use --loader-workers 0"
            )
        if self.gradient_noise == "gaussian" and self.norm == "bn":
            raise ValueError(
                "gradient_noise gaussian needs per-sample gradients, which BatchNorm does not have (its batch "
                "statistics couple the samples): use --norm gn or none"
            )
        self._check_counts()
        w = self.noise_window
        if w and (len(w) != 2 or not all(math.isfinite(v) for v in w) or not 0 <= w[0] < w[1]):
            raise ValueError(f"noise_window must be START,END epochs with 0 <= START < END, got {w}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        return self

    def _check_types(self) -> None:
        """Refuse a value of the wrong kind before the range checks compare it: the Python API and
        ``config.json`` hand values over as they are (the command line has parsed them already)."""

        def real(x: object) -> bool:
            return isinstance(x, numbers.Real) and not isinstance(x, bool)

        for name, example in (("milestones", "(80, 120)"), ("betas", "(0.9, 0.999)"), ("noise_window", "(8, 10)")):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not isinstance(v, (tuple, list)) or not all(real(x) for x in v):
                raise ValueError(f"{name} must be a sequence of numbers, e.g. {example}, got {v!r}")
        for name in ("scale_invariant", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, interval in (("momentum", "[0, 1)"), ("noise_fraction", "[0, 1]")):
            if not real(getattr(self, name)):
                raise ValueError(f"{name} must be a number in {interval}, got {getattr(self, name)!r}")
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, numbers.Integral) or self.data_seed < 0:
            raise ValueError(f"data_seed must be an integer >= 0, got {self.data_seed!r}")
        if not isinstance(self.tensorboard, str):
            raise ValueError(f"tensorboard must be a folder path (text; empty: off), got {self.tensorboard!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root must be a folder path (text) or None, got {self.data_root!r}")

    def _check_counts(self) -> None:
        """Refuse intervals that imply more records or checkpoints than a run can write. With
        ``gamma <= 1`` a run lasts at most ``epochs`` epochs of time at the base LR, so it takes at
        most ``epochs / interval`` of each (:class:`svag.runner.timeline.Timeline`)."""
        for name, limit, what in (
            ("eval_every", MAX_RECORDS, "evaluation records"),
            ("noise_every", MAX_RECORDS, "m-batch G/N measurements"),
            ("checkpoint_every", MAX_CHECKPOINTS, "checkpoints"),
        ):
            interval = getattr(self, name)
            if interval > 0 and self.epochs / interval > limit:
                raise ValueError(
                    f"{name}={interval:g} gives {self.epochs / interval:.3g} {what} over epochs={self.epochs:g} "
                    f"(epochs/{name}); at most {limit} are allowed: use {name} >= {self.epochs / limit:.3g}"
                )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["betas"] = list(self.betas)
        d["noise_window"] = list(self.noise_window)
        return d

    @classmethod
    def of(cls, value: RunConfig | dict[str, Any]) -> RunConfig:
        """``value`` itself if it is a ``RunConfig``, :meth:`from_dict` of a dict of its fields;
        ``TypeError`` for anything else."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"expected a RunConfig or a dict of its fields, got {type(value).__name__}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; valid: {sorted(names)}")
        data = dict(data)
        for key in ("milestones", "betas", "noise_window"):  # anything but a list of numbers: validate() names it
            if isinstance(data.get(key), (list, tuple)) and all(isinstance(m, numbers.Real) for m in data[key]):
                data[key] = tuple(m if isinstance(m, bool) else float(m) for m in data[key])
        for key in ("data_root", "tensorboard"):
            if isinstance(data.get(key), os.PathLike):
                data[key] = os.fspath(data[key])
        return cls(**data)


_CIFAR_RECIPE = dict(
    data="cifar10", lr=0.8, batch_size=128, weight_decay=5e-4, epochs=160.0, schedule="multistep",
    milestones=(80.0, 120.0), gamma=0.1, scale_invariant=True, eval_every=2.0, checkpoint_every=2.0,
    eval_train_samples=10000,
)  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    # P1's CIFAR-10 recipes (PAPER.md §3): plain SGD, η = 0.8 at B = 128, wd 5e-4, 160 epochs, ×0.1 at 80/120;
    # scale-invariant nets. Need the CIFAR-10 python files (--data-root) and, in practice, a GPU.
    "cifar10-preresnet32-bn": dict(_CIFAR_RECIPE, model="preresnet32", norm="bn"),
    "cifar10-preresnet32-gn": dict(_CIFAR_RECIPE, model="preresnet32", norm="gn"),
    "cifar10-vgg16": dict(_CIFAR_RECIPE, model="vgg16", norm="bn"),
    "cifar10-vgg19": dict(_CIFAR_RECIPE, model="vgg19", norm="gn"),
    "cifar10-resnet32": dict(_CIFAR_RECIPE, model="resnet32", norm="bn", scale_invariant=False),
}


# torchrun's own option parser takes `--l` for an abbreviation of its options: under torchrun
# write `--amplification`.
ALIASES = {"l": ("--amplification",)}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _float_tuple(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per :class:`RunConfig` field, with its default and help text."""
    group = parser.add_argument_group("run configuration")
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="start from one of P1's CIFAR-10 recipes; flags given explicitly override it",
    )
    for f in fields(RunConfig):
        if f.name in skip:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flags = ["--" + f.name.replace("_", "-"), *ALIASES.get(f.name, ())]
        kind = str(f.type)
        if "bool" in kind:
            group.add_argument(*flags, type=_parse_bool, default=default, metavar="BOOL", help=f.metadata["help"])
        elif "tuple" in kind:
            group.add_argument(*flags, type=_float_tuple, default=default, metavar="E1,E2", help=f.metadata["help"],
                               action=_Given)  # fmt: skip
        else:
            conv = {"int": int, "float": float}.get(kind.split(" |")[0].strip(), str)
            group.add_argument(*flags, type=conv, default=default, help=f.metadata["help"])


class _Given(argparse.Action):
    """Store the value and note that the flag was given (``args._given``), not a default."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace._given = getattr(namespace, "_given", frozenset()) | {self.dest}


def config_from_args(args: argparse.Namespace, **override: Any) -> RunConfig:
    """Build a validated :class:`RunConfig` from parsed CLI arguments. Milestones that come from a default
    (a preset's, a command's such as ``svag lsr``'s) are dropped when the schedule is not multistep:
    ``--preset ... --schedule cosine`` runs a cosine; milestones given with ``--milestones`` are kept and
    checked (:meth:`RunConfig.validate`)."""
    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if hasattr(args, f.name)}
    values.update(override)
    given = {*getattr(args, "_given", ()), *override}
    if values.get("schedule") != "multistep" and "milestones" not in given:
        values.pop("milestones", None)
    return RunConfig(**values).validate()
