"""svag: simulate the SDE of SGD (and Adam/RMSprop) with SVAG, and test the linear scaling rule.

Li, Malladi & Arora, "On the Validity of Modeling SGD with SDEs", NeurIPS 2021 (P1);
Malladi, Lyu, Panigrahi & Arora, "On the SDEs and Scaling Rules for Adaptive Gradient
Algorithms", NeurIPS 2022 (P2).
"""

from . import data, lsr, models, noise, per_sample, problems, scaling, schedules, studies, verify
from .adaptive import SVAGAdam, SVAGRMSprop
from .amplify import amplified_loss, coefficients
from .noise import NoiseAccumulator, NoiseResult, measure_noise
from .optim import SVAG
from .step import StepOutput, train_step

__version__ = "0.1.0"

__all__ = [
    "SVAG",
    "NoiseAccumulator",
    "NoiseResult",
    "SVAGAdam",
    "SVAGRMSprop",
    "StepOutput",
    "__version__",
    "amplified_loss",
    "coefficients",
    "data",
    "lsr",
    "measure_noise",
    "models",
    "noise",
    "per_sample",
    "problems",
    "scaling",
    "schedules",
    "studies",
    "train_step",
    "verify",
]
