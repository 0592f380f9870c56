"""svag: simulate the SDE of SGD (and Adam/RMSprop) with SVAG, and test the linear scaling rule.

Li, Malladi & Arora, "On the Validity of Modeling SGD with SDEs", NeurIPS 2021 (P1);
Malladi, Lyu, Panigrahi & Arora, "On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms", NeurIPS 2022 (P2).

Every public name is imported on first use (PEP 562), so ``import svag`` and ``svag --help`` do not
load PyTorch: ``svag.SVAG`` imports :mod:`svag.optim` (and torch) the first time it is read.
"""

from __future__ import annotations

import importlib

from svag import _moved
from svag.version import __version__ as __version__

_moved.install()  # old module paths of 0.2.0 stay importable as aliases this release (svag._moved)

# public name -> the module that defines it
_NAMES = {
    "SVAG": "optim",
    "SVAGAdam": "adaptive",
    "SVAGAdamW": "adaptive",
    "SVAGRMSprop": "adaptive",
    "amplified_loss": "amplify",
    "coefficients": "amplify",
    "NoiseAccumulator": "noise",
    "NoiseResult": "noise",
    "measure_noise": "noise",
    "StepOutput": "step",
    "train_step": "step",
    "amplified_backward": "step",
    "Clock": "clock",
    "HeavyBallSGD": "optim",
    "RunConfig": "config",
    "run": "api",  # the runner's, with the record sinks the config asks for (TensorBoard)
    "run_replicas": "api",
    "load_runs": "runfolder",
    "RunFolder": "runfolder",
    "gaussian_step": "gaussian",
    # whole experiments on your own model, data and loss (svag.api)
    "train": "api",
    "compare": "api",
    "lsr_test": "api",
    "scale": "api",
    "cbs": "api",
}
# public submodules, read as ``svag.<name>``
_MODULES = (
    "analysis",
    "api",
    "clock",
    "data",
    "experiments",
    "gaussian",
    "integrations",
    "lsr",
    "models",
    "noise",
    "per_sample",
    "plugins",
    "problems",
    "runfolder",
    "runner",
    "scaling",
    "schedules",
    "seeds",
    "task",
)
# submodules of 0.2.0 that moved (svag._moved): ``svag.<name>`` still reads them, with a FutureWarning
_MOVED_MODULES = ("equilibrium", "stats", "studies", "verdict", "verify")

__all__ = sorted(["__version__", *_NAMES, *_MODULES])


def __getattr__(name: str) -> object:
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _MODULES or name in _MOVED_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later reads skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
