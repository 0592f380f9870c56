#!/usr/bin/env python3
"""One-file set-up and entry point: needs only Python 3.10+.

    python3 run.py demo [ARGS...]   # the main job: SGD vs SVAG on MNIST-1D, figure + table
    python3 run.py test [ARGS...]   # the test suite (what CI runs)
    python3 run.py svag ARGS...     # any `svag` command inside the project's environment

On first use it creates `.venv/` next to this file and installs, printing each command first:

1. PyTorch as ``torch==2.13.0`` from the index pip is configured with. Which build that is
   depends on the index: pip's default index serves, on Linux x86-64, the CUDA build (torch and
   about 18 NVIDIA CUDA packages, several GB); on macOS and Windows, a CPU build. To choose,
   set ``SVAG_TORCH_INDEX_URL`` to the index to take torch from (e.g. PyTorch's CPU-only wheel
   index, listed on PyTorch's "get started" page); it is passed to pip as ``--index-url`` for the
   torch install only. ``SVAG_TORCH`` replaces the requirement ``torch==2.13.0``.
2. The project, editable, with the extras the command needs: ``demo`` and ``svag`` install
   ``.[dev]``; ``test`` installs ``.[dev,lightning,ray,tensorboard]`` so the tests of the optional
   integrations run (Lightning, Ray and TensorBoard: about 40 packages more).
3. Optional, only as root on a Debian-like system without it: the system package
   ``dataset-fashion-mnist`` (the Fashion-MNIST data set, ~30 MB, for ``--data fashion-mnist``)
   with ``apt-get update`` and ``apt-get install``. ``SVAG_NO_SYSTEM_PACKAGES=1`` skips it.

Later calls reuse the environment and reinstall only when ``pyproject.toml`` or one of the
variables above changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".svag-installed"
TORCH = "torch==2.13.0"  # the version the project is tested with
APT_PACKAGE = "dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # where that package puts the data set
COMMANDS = ("demo", "test", "svag")
EXTRAS = {
    "demo": ("dev",),
    "svag": ("dev",),
    "test": ("dev", "docs", "lightning", "ray", "tensorboard", "transformers"),
}


def _say(msg: str) -> None:
    print(f"[run.py] {msg}", flush=True)


def _flag(env, name: str) -> bool:
    """An on/off environment variable: set and not empty, 0, false, no or off."""
    return env.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def torch_requirement(env) -> str:
    """What pip is asked for: ``SVAG_TORCH`` if set, else :data:`TORCH`."""
    return env.get("SVAG_TORCH", "").strip() or TORCH


def torch_index(env) -> str | None:
    """``SVAG_TORCH_INDEX_URL`` if set: the only index the torch install reads."""
    return env.get("SVAG_TORCH_INDEX_URL", "").strip() or None


def _shown(url: str) -> str:
    """``url`` without a password, for the screen."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # not a URL
        return url
    return urlunsplit(parts._replace(netloc=netloc))


def pip_torch_argv(py: str, env) -> list[str]:
    """The torch install; ``--index-url`` only when ``SVAG_TORCH_INDEX_URL`` is set."""
    index = torch_index(env)
    return [py, "-m", "pip", "install", "--disable-pip-version-check",
            *(["--index-url", index] if index else []), torch_requirement(env)]  # fmt: skip


def pip_project_argv(py: str, root: Path, extras=("dev",)) -> list[str]:
    """The project and ``extras``, editable; torch is already there."""
    return [py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f"{root}[{','.join(extras)}]"]


def apt_argvs() -> list[list[str]]:
    """The two commands that install Fashion-MNIST's system package; ``-q`` drops progress bars only."""
    return [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", APT_PACKAGE]]


def torch_message(env) -> str:
    """What the torch install will bring, said before it starts."""
    req, index = torch_requirement(env), torch_index(env)
    if index:
        return f"installing {req} with pip --index-url SVAG_TORCH_INDEX_URL={_shown(index)} (for torch only)"
    return (
        f"installing {req} from pip's configured index; from pip's default index that is, on Linux "
        "x86-64, the CUDA build (torch and about 18 NVIDIA CUDA packages, several GB) and elsewhere "
        "a CPU build. For another build set SVAG_TORCH_INDEX_URL (see README, Quick start)"
    )


def fashion_mnist_plan(env, *, is_root: bool, have_apt: bool, have_data: bool) -> tuple[bool, str | None]:
    """Whether to install :data:`APT_PACKAGE`, and what to say about it (``None``: nothing)."""
    if have_data:
        return False, None
    why = f"Fashion-MNIST (optional: only `--data fashion-mnist` uses it) is not in {FASHION_DIR}"
    if _flag(env, "SVAG_NO_SYSTEM_PACKAGES"):
        return False, f"{why}; not installing {APT_PACKAGE} because SVAG_NO_SYSTEM_PACKAGES is set"
    if not have_apt:
        return False, f"{why}; pass --data-root DIR with its four IDX files to use it"
    if not is_root:
        return False, f"{why}; to add it: sudo apt-get install {APT_PACKAGE}, or pass --data-root DIR"
    return True, (
        f"{why}; installing the system package {APT_PACKAGE} (~30 MB) with apt-get update and "
        f"apt-get install, as root. Set SVAG_NO_SYSTEM_PACKAGES=1 to skip this"
    )


def install_fashion_mnist(env, run=subprocess.run) -> None:
    """Best effort: a failure only affects ``--data fashion-mnist``; apt's own output is shown."""
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    install, message = fashion_mnist_plan(
        env, is_root=is_root, have_apt=shutil.which("apt-get") is not None, have_data=FASHION_DIR.is_dir()
    )
    if message:
        _say(message)
    if not install:
        return
    apt_env = dict(env, DEBIAN_FRONTEND="noninteractive")
    for argv in apt_argvs():
        _say("$ " + " ".join(argv))
        code = run(argv, env=apt_env).returncode
        if code:
            _say(f"{argv[0]} {argv[1]} exited with {code}; {APT_PACKAGE} not installed (only fashion-mnist needs it)")
            return
    _say(f"installed {APT_PACKAGE}: Fashion-MNIST is in {FASHION_DIR}")


def _fingerprint(env) -> str:
    """Changes with ``pyproject.toml`` and the torch choice (the same as before the choice existed)."""
    index = torch_index(env)
    key = (ROOT / "pyproject.toml").read_bytes() + torch_requirement(env).encode()
    return hashlib.sha256(key + (b"\0" + index.encode() if index else b"")).hexdigest()


def _run_shown(argv: list[str]) -> None:
    _say("$ " + " ".join(_shown(a) for a in argv))
    subprocess.run(argv, check=True)


def installed_extras(stamp_text: str, fingerprint: str) -> set[str]:
    """The extras a stamp says are installed; empty when the stamp is for another set-up.

    A stamp is the fingerprint, then a line of comma-separated extras (a stamp of an earlier
    release has no such line: it installed ``dev``).
    """
    head, _, extras = stamp_text.partition("\n")
    if head != fingerprint:
        return set()
    return set(extras.split(",")) if extras else {"dev"}


def ensure_env(env=os.environ, extras=("dev",)) -> None:
    if not PY.exists():
        _say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    have = installed_extras(STAMP.read_text(), _fingerprint(env)) if STAMP.exists() else set()
    if set(extras) <= have:
        return
    if have:  # the same set-up, fewer extras: add the missing ones, keep the ones installed
        extras = tuple(sorted(have | set(extras)))
        _say(f"installing the extras {', '.join(extras)}")
        _run_shown(pip_project_argv(str(PY), ROOT, extras))
        STAMP.write_text(_fingerprint(env) + "\n" + ",".join(extras))
        return
    _say("setting up the environment; first time only (1-2 minutes for the CPU build, longer for CUDA's downloads)")
    _say(torch_message(env))
    _run_shown(pip_torch_argv(str(PY), env))
    _say(f"installing the project and the extras {', '.join(extras)} (numpy, matplotlib, mnist1d, pytest, ruff, ...)")
    _run_shown(pip_project_argv(str(PY), ROOT, extras))
    build = "import torch; c = torch.version.cuda; print(torch.__version__, f'(CUDA {c})' if c else '(CPU only)')"
    got = subprocess.run([str(PY), "-c", build], capture_output=True, text=True).stdout.strip()
    _say(f"installed torch {got}")
    install_fashion_mnist(env)
    STAMP.write_text(_fingerprint(env) + "\n" + ",".join(extras))


def command_argv(cmd: str, rest: list[str]) -> list[str]:
    """What ``python3 run.py CMD REST...`` runs inside the environment."""
    if cmd == "test":
        return [str(PY), "-m", "pytest", *rest]
    if cmd == "demo":
        return [str(PY), "-m", "svag", "demo", *rest]
    return [str(PY), "-m", "svag", *rest]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"run.py: unknown command {cmd!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    ensure_env(extras=EXTRAS[cmd])
    os.chdir(ROOT)
    return subprocess.run(command_argv(cmd, rest)).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
