"""Shared test set-up: float64 by default, a non-interactive matplotlib backend, fixed seeds, and the
helpers many test files use (a repository file as a module, a tiny classifier and its loss)."""

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Numerical tests run in float64 with a fixed seed; the default dtype is restored after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True, scope="session")
def _svag_cache(tmp_path_factory):
    """Data-set caches go to a temporary folder, never the user's ~/.cache/svag."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SVAG_CACHE", str(tmp_path_factory.mktemp("svag-cache")))
    yield
    mp.undo()


# -- helpers shared by many test files (fixtures, so every test folder sees them) -------------------------
ROOT = Path(__file__).resolve().parents[1]


def _load_repo_module(relpath: str, name: str) -> ModuleType:
    """A file of the repository (``run.py``, a script, an example) as a module named ``name``, kept in
    ``sys.modules`` (dataclasses and pickle look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo_module():
    """``repo_module("scripts/x.py", "x")``: a repository file as a module (not a package module)."""
    return _load_repo_module


def _tiny_mlp(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    """A 5-7-3 tanh MLP initialised from ``torch.manual_seed(seed)``, in ``dtype``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _tiny_loss(model: nn.Module, seed: int) -> torch.Tensor:
    """The mean cross-entropy of ``model`` on 16 samples (5 inputs, 3 classes) drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=next(model.parameters()).dtype)
    y = torch.randint(0, 3, (16,), generator=g)
    return nn.functional.cross_entropy(model(x), y)


@pytest.fixture(scope="session")
def tiny_mlp():
    """``tiny_mlp(seed=0, dtype=float64)``: the optimizer tests' small classifier."""
    return _tiny_mlp


@pytest.fixture(scope="session")
def tiny_loss():
    """``tiny_loss(model, seed)``: a seeded batch's mean cross-entropy for :func:`tiny_mlp`'s model."""
    return _tiny_loss
