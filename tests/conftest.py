"""Shared test set-up: float64 by default, a non-interactive matplotlib backend, fixed seeds, data-set
caches in a temporary folder. The helpers many test files use are plain functions in ``helpers.py``."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Numerical tests run in float64 with a fixed seed, on one intra-op thread (what ``svag train
    --threads 1`` uses, so an in-process run equals a command's bit for bit; two threads on a loaded 2-core
    machine crawl); the default dtype and thread count (``svag.cli.main`` sets it, as the command line
    does) are restored after, so no test depends on the order of the others."""
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _svag_cache(tmp_path_factory):
    """Data-set caches go to a temporary folder, never the user's ~/.cache/svag."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SVAG_CACHE", str(tmp_path_factory.mktemp("svag-cache")))
    yield
    mp.undo()
