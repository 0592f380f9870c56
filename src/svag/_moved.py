"""Module paths that moved when the package took its layered folders (release 0.3.0).

Each old path stays importable for this release as an alias that forwards to its new home and
says so once, with a ``FutureWarning`` (shown by default, as PyTorch does for what it will
remove); the aliases go in 0.4.0. Installed by ``svag/__init__.py`` as a finder on
``sys.meta_path`` that answers for these names only, so the package holds no stub modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

# old path -> new path(s); a tuple: the old module's names now live in several modules
MOVED: dict[str, str | tuple[str, ...]] = {
    "svag.budget": "svag.runner.budget",
    "svag.distributed": "svag.runner.distributed",
    "svag.engine": "svag.runner.engine",
    "svag.ensemble": "svag.runner.ensemble",
    "svag.progress": "svag.runner.progress",
    "svag.recorder": "svag.runner.recorder",
    "svag.runstate": "svag.runner.state",
    "svag.timeline": "svag.runner.timeline",
    "svag.equilibrium": "svag.analysis.equilibrium",
    "svag.plotting": "svag.analysis.plotting",
    "svag.stats": "svag.analysis.stats",
    "svag.summary": "svag.analysis.summary",
    "svag.verdict": ("svag.analysis.richardson", "svag.analysis.equivalence"),
    "svag.experiments.verdicts": "svag.analysis.report",
    "svag.experiments.verdict_text": "svag.analysis.report_text",
    "svag.studies": "svag.problems.studies",
    "svag.verify": "svag.problems.verify",
    "svag.verify_report": "svag.problems.report",
    "svag.experiments.parallel": "svag.experiments.executors",
    "svag.experiments.ray_executor": "svag.experiments.executors.ray",
    "svag.lightning": "svag.integrations.lightning",
    "svag.tensorboard_log": "svag.integrations.tensorboard",
}


def _targets(old: str) -> tuple[str, ...]:
    new = MOVED[old]
    return (new,) if isinstance(new, str) else new


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        targets = [importlib.import_module(t) for t in _targets(spec.name)]
        module = types.ModuleType(spec.name, f"Moved to {', '.join(_targets(spec.name))} in svag 0.3.0 (an alias).")
        names = [n for t in targets for n in getattr(t, "__all__", ())]
        module.__all__ = names

        def __getattr__(name: str) -> object:  # forwards every read to the new home
            for target in targets:
                if hasattr(target, name):
                    return getattr(target, name)
            raise AttributeError(f"module {spec.name!r} (moved to {', '.join(_targets(spec.name))}) has no {name!r}")

        module.__getattr__ = __getattr__
        module.__dir__ = lambda: sorted({n for t in targets for n in dir(t)})
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        new = " and ".join(_targets(module.__name__))
        warnings.warn(f"{module.__name__} moved to {new} in svag 0.3.0; the old path goes in 0.4.0",
                      FutureWarning, stacklevel=2)  # fmt: skip


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
