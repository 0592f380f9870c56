"""The public API did not move with the folders: every name and module path the documents show
resolves, the modules of the math core import from where they always did, and each module path
that moved in 0.3.0 still imports (with a FutureWarning that names its new home) and hands out the
new module's very objects."""

import importlib
import importlib.util
import re
import subprocess
import sys
import warnings
from types import ModuleType

import pytest

import svag
from documents import documents
from helpers import ROOT
from svag._moved import MOVED

DOCUMENTS = [*documents(), "mkdocs.yml"]  # the README, EXPERIMENTS.md, BENCHMARKS.md, the site's pages and its nav
CORE = ["optim", "adaptive", "step", "amplify", "clock", "noise", "lsr", "scaling", "schedules", "seeds", "task",
        "gaussian", "per_sample", "batch_loss"]  # fmt: skip


def _documented() -> list[str]:
    """Every ``svag.x.y`` the documents name, but the old paths they list as moved (tested below)."""
    names = set()
    for doc in DOCUMENTS:
        names |= set(re.findall(r"\bsvag(?:\.[A-Za-z_]\w*)+", (ROOT / doc).read_text()))
    return sorted(n for n in names if not any(n == old or n.startswith(old + ".") for old in MOVED))


def _resolve(dotted: str) -> object:
    """The object a dotted name stands for: the longest module prefix, then attributes."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=2):
        module = ".".join(parts[:i])
        if isinstance(obj, ModuleType) and hasattr(obj, "__path__") and importlib.util.find_spec(module):
            obj = importlib.import_module(module)
        else:
            obj = getattr(obj, attr)
    return obj


def test_the_documents_name_many_paths():
    assert len(_documented()) >= 40


@pytest.mark.parametrize("dotted", _documented())
def test_every_documented_name_resolves_without_a_warning(dotted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a documented path is a current one, not an alias
        assert _resolve(dotted) is not None


@pytest.mark.parametrize("name", CORE)
def test_the_math_core_imports_from_where_it_always_did(name):
    module = importlib.import_module(f"svag.{name}")
    assert getattr(svag, name) is module


PUBLIC_NAMES = ["SVAG", "SVAGAdam", "SVAGAdamW", "SVAGRMSprop", "amplified_loss", "coefficients", "NoiseAccumulator",
                "NoiseResult", "measure_noise", "StepOutput", "train_step", "amplified_backward", "Clock",
                "HeavyBallSGD", "RunConfig", "run", "run_replicas", "load_runs", "RunFolder", "gaussian_step",
                "train", "compare", "lsr_test", "scale"]  # fmt: skip


ADDED = ("cbs",)  # public names added since release 0.2.0


def test_the_public_namespace_keeps_its_24_names():
    """The 24 names of release 0.2.0 (besides ``__version__`` and the submodules) are all there, and only
    :data:`ADDED` joined them."""
    assert len(PUBLIC_NAMES) == 24 and set(PUBLIC_NAMES) <= set(svag.__all__)
    assert all(callable(getattr(svag, name)) for name in (*PUBLIC_NAMES, *ADDED))
    modules = [n for n in svag.__all__ if isinstance(getattr(svag, n), ModuleType)]
    assert sorted(set(svag.__all__) - set(modules)) == sorted(["__version__", *PUBLIC_NAMES, *ADDED])


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_path_still_imports_and_warns(old):
    """Imported in a fresh interpreter (this one may hold the alias already): one FutureWarning that
    names the new home, and each name of the new module's ``__all__`` is the same object."""
    new = MOVED[old] if isinstance(MOVED[old], tuple) else (MOVED[old],)
    code = f"""
import importlib, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = importlib.import_module({old!r})
moved = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
assert len(moved) == 1 and all(n in moved[0] for n in {new!r}), moved
for target in {new!r}:
    module = importlib.import_module(target)
    names = getattr(module, "__all__", [])
    assert names, target
    assert all(getattr(old, n) is getattr(module, n) for n in names), target
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_a_moved_module_says_what_it_lacks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        old = importlib.import_module("svag.verdict")
    with pytest.raises(AttributeError, match=r"svag.verdict.*moved to svag.analysis.richardson.*no 'bogus'"):
        _ = old.bogus
