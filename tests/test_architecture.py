"""The layers of ``src/svag`` and the direction of their imports (ARCHITECTURE.md).

Every ``import`` of ``src/svag`` is read with ``ast`` (those inside functions too: an import hidden in
a function still ties the two modules), resolved to the module it loads, and checked against the
layer order below. A failure names the import (file:line) that broke the rule.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "src" / "svag"

# The layers, from the bottom up; a module may import its own layer and the layers it lists.
CORE = "core"
PARTS = "parts"  # data/, models/: the built-in zoo and data sets, and their plug-in adapters
USER = "user"  # the config and the factories that build a run's parts from it
DISK = "disk"  # the run folder's format
RUNNER = "runner"
ANALYSIS = "analysis"
PROBLEMS = "problems"
EXPERIMENTS = "experiments"
INTEGRATIONS = "integrations"
FRONT = "front"

MAY_IMPORT = {
    CORE: {CORE},
    PARTS: {CORE, PARTS},
    USER: {CORE, PARTS, USER},
    DISK: {CORE, PARTS, USER, DISK},
    RUNNER: {CORE, PARTS, USER, DISK, RUNNER},
    ANALYSIS: {CORE, DISK, ANALYSIS},  # reads run folders, never trains
    PROBLEMS: {CORE, ANALYSIS, DISK, PROBLEMS},
    EXPERIMENTS: {CORE, PARTS, USER, DISK, RUNNER, ANALYSIS, EXPERIMENTS},
    INTEGRATIONS: {CORE, PARTS, USER, DISK, RUNNER, ANALYSIS, INTEGRATIONS},
    FRONT: {CORE, PARTS, USER, DISK, RUNNER, ANALYSIS, PROBLEMS, EXPERIMENTS, INTEGRATIONS, FRONT},
}
CORE_MODULES = (
    *("amplify", "clock", "optim", "adaptive", "step", "batch_loss", "task", "seeds", "schedules", "scaling"),
    *("noise", "noise_window", "per_sample", "gaussian", "lsr", "plugins", "memory", "version"),
    "interrupts",  # SIGINT/SIGTERM outside the loop: a leaf the front, the runner and the executors share
)
ROOT_LAYERS = {
    **dict.fromkeys(CORE_MODULES, CORE),
    **dict.fromkeys(["config", "build"], USER),
    **dict.fromkeys(["runfolder", "records", "checkpoint", "sweepfolder"], DISK),
    **dict.fromkeys(["cli", "api", "__main__", "__init__", "_moved"], FRONT),
}
FOLDER_LAYERS = {
    "data": PARTS,
    "models": PARTS,
    "runner": RUNNER,
    "analysis": ANALYSIS,
    "problems": PROBLEMS,
    "experiments": EXPERIMENTS,
    "integrations": INTEGRATIONS,
    "commands": FRONT,
}
# Analysis modules that load without torch (the verdict and its statistics run where torch is absent)
TORCH_FREE = {
    *("analysis.stats", "analysis.richardson", "analysis.equivalence", "analysis.report_text"),
    "analysis.equilibrium",
    *("plugins", "config", "records", "runfolder", "sweepfolder", "analysis.summary"),  # what `--help` loads
    "schedules",  # runfolder reads the epochs of older folders from their schedule
}
TORCH_FREE_CORE = {"clock", "scaling", "lsr", "version"}  # core modules those may import at module level
# Optional integrations: only their own modules, or the lazy paths that chose them, may import them
OPTIONAL = {
    "lightning": {"integrations.lightning"},
    "ray": {"experiments.executors.ray"},
    "transformers": {"integrations.transformers"},
    "accelerate": {"integrations.transformers"},  # the Trainer's device layer, beside transformers
}


@dataclass(frozen=True)
class Import:
    source: str  # module doing the import, relative to svag ("runner.loop")
    target: str  # module imported, relative to svag ("build"); "" for svag itself
    line: int
    top_level: bool

    def where(self) -> str:
        return f"src/svag/{self.source.replace('.', '/')}.py:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` (``svag.a.b.c``) starts with, relative to svag."""
    parts = name.split(".")[1:]
    while parts:
        for candidate in (".".join(parts), ".".join([*parts, "__init__"])):
            if candidate in known:
                return candidate
        parts = parts[:-1]
    return "__init__"


def _top_level_nodes(tree: ast.Module) -> set[int]:
    """ids of import nodes that run when the module is imported (not inside a def)."""
    out: set[int] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.add(id(child))
            visit(child)

    visit(tree)
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> tuple[list[Import], list[tuple[str, int, bool]]]:
    """(svag imports, external top-level module names with line and top-levelness) of one module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = _top_level_nodes(tree)
    package = name.split(".")[:-1]
    found, external = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["svag", *package][: len(package) + 2 - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" for a in node.names] if module.startswith("svag") else [module]
        else:
            continue
        for target in targets:
            if target == "svag" or target.startswith("svag."):
                resolved = _resolve(target, known)
                if resolved != name:
                    found.append(Import(name, resolved, node.lineno, id(node) in top))
            else:
                external.append((target.split(".")[0], node.lineno, id(node) in top))
    return found, external


def layer_of(name: str) -> str:
    head = name.split(".")[0]
    if head in FOLDER_LAYERS:
        return FOLDER_LAYERS[head]
    if head in ROOT_LAYERS:
        return ROOT_LAYERS[head]
    raise AssertionError(f"src/svag/{name.replace('.', '/')}.py has no layer: add it to tests/test_architecture.py")


def graph() -> list[Import]:
    known = modules()
    return [imp for name, path in known.items() for imp in imports_of(name, path, known)[0]]


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        succ.setdefault(e.source, set()).add(e.target)
        succ.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return out


def upward(edges: list[Import]) -> list[str]:
    """Every import against the layer order, as ``file:line: a (layer) imports b (layer)``."""
    bad = []
    for e in edges:
        src, dst = layer_of(e.source), layer_of(e.target)
        if e.target == "__init__" and src != FRONT:
            bad.append(f"{e.where()}: {e.source} imports the package root svag (the front): import the module")
        elif dst not in MAY_IMPORT[src]:
            bad.append(f"{e.where()}: {e.source} ({src}) imports {e.target} ({dst}), against the layer order")
    return bad


def cycle_report(edges: list[Import], comp: list[str]) -> str:
    inside = [e for e in edges if e.source in comp and e.target in comp]
    return "import cycle " + " ↔ ".join(comp) + ": " + "; ".join(f"{e.where()} → {e.target}" for e in inside)


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_cycles():
    edges = graph()
    assert not (found := cycles(edges)), "\n".join(cycle_report(edges, c) for c in found)


def test_imports_point_down_the_layers():
    assert not (bad := upward(graph())), "\n".join(bad)


def test_nothing_below_the_front_imports_it():
    bad = [e for e in graph() if layer_of(e.target) == FRONT and layer_of(e.source) != FRONT]
    assert not bad, "\n".join(f"{e.where()}: {e.source} imports {e.target} (the front)" for e in bad)


def test_analysis_modules_load_without_torch_at_module_level():
    known = modules()
    bad = []
    for name in sorted(TORCH_FREE):
        svag_imports, external = imports_of(name, known[name], known)
        bad += [f"src/svag/{name.replace('.', '/')}.py:{line}: torch at module level" for mod, line, top in external
                if mod == "torch" and top]  # fmt: skip
        heavy = [e for e in svag_imports if e.top_level and e.target not in TORCH_FREE
                 and (layer_of(e.target) != CORE or e.target not in TORCH_FREE_CORE)]  # fmt: skip
        bad += [f"{e.where()}: {name} imports {e.target} at module level, which is not torch-free" for e in heavy]
    assert not bad, "\n".join(bad)


def test_optional_integrations_stay_at_the_edge():
    known = modules()
    bad = []
    for name, path in known.items():
        for mod, line, _ in imports_of(name, path, known)[1]:
            if mod in OPTIONAL and name not in OPTIONAL[mod]:
                bad.append(f"src/svag/{name.replace('.', '/')}.py:{line}: {name} imports {mod}")
    assert not bad, "\n".join(bad)


# -- the checker itself, on planted imports ----------------------------------------------------------
def _planted(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    root = tmp_path / "svag"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    known = {".".join(p.relative_to(root).with_suffix("").parts): p for p in root.rglob("*.py")}
    return [imp for name, p in known.items() for imp in imports_of(name, p, known)[0]]


def test_a_planted_cycle_inside_a_function_is_found_and_named(tmp_path):
    edges = _planted(tmp_path, {
        "__init__.py": "",
        "memory.py": "def f():\n    from svag.plugins import resolve\n",
        "plugins.py": "from svag import memory\n",
    })  # fmt: skip
    found = cycles(edges)
    assert found == [["memory", "plugins"]]
    assert "src/svag/memory.py:2 → plugins" in cycle_report(edges, found[0])


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"data/__init__.py": "", "data/x.py": "def f():\n    from svag.runner import budget\n",
          "runner/__init__.py": "", "runner/budget.py": ""},
         "src/svag/data/x.py:2: data.x (parts) imports runner.budget"),
        ({"optim.py": "from .analysis import stats\n", "analysis/__init__.py": "", "analysis/stats.py": ""},
         "src/svag/optim.py:1: optim (core) imports analysis.stats (analysis)"),
        ({"runner/__init__.py": "", "runner/loop.py": "import svag.commands.lsr\n", "commands/__init__.py": "",
          "commands/lsr.py": ""}, "src/svag/runner/loop.py:1: runner.loop (runner) imports commands.lsr (front)"),
        ({"runner/__init__.py": "", "runner/loop.py": "from svag import __version__\n", "__init__.py": ""},
         "src/svag/runner/loop.py:1: runner.loop imports the package root svag"),
    ],
)  # fmt: skip
def test_a_planted_upward_import_is_named(tmp_path, files, named):
    bad = upward(_planted(tmp_path, files))
    assert len(bad) == 1 and bad[0].startswith(named), bad
