"""Shared test set-up: float64 by default, a non-interactive matplotlib backend, fixed seeds."""

import os

import matplotlib
import pytest
import torch

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
