"""Shared test set-up: float64 by default, a non-interactive matplotlib backend, fixed seeds, data-set
caches in a temporary folder. The helpers many test files use are plain functions in ``helpers.py``."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


THREADS = (1, 2)  # the thread counts a determinism test runs at (CI runs both)


def pytest_generate_tests(metafunc):
    """A test marked ``determinism`` runs once per thread count in :data:`THREADS`: its bit-for-bit claims
    (two computations made in the same test) must hold at one thread and at two, where PyTorch's kernels
    split their sums otherwise."""
    if metafunc.definition.get_closest_marker("determinism") and "torch_threads" not in metafunc.fixturenames:
        metafunc.fixturenames.append("torch_threads")
        metafunc.parametrize("torch_threads", THREADS, ids=[f"threads{n}" for n in THREADS])


@pytest.fixture(autouse=True)
def _float64_and_seed(request, monkeypatch):
    """Numerical tests run in float64 with a fixed seed, on one intra-op thread (what ``svag train
    --threads 1`` uses, so an in-process run equals a command's bit for bit; two threads on a loaded 2-core
    machine crawl), or on the ``torch_threads`` a ``determinism`` test is given (``OMP_NUM_THREADS`` too, for the
    commands it starts); the default dtype and thread count (``svag.cli.main`` sets it, as the command line
    does) are restored after, so no test depends on the order of the others."""
    callspec = getattr(request.node, "callspec", None)
    n = callspec.params.get("torch_threads", 1) if callspec is not None else 1
    if n != 1:
        monkeypatch.setenv("OMP_NUM_THREADS", str(n))
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(n)
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
