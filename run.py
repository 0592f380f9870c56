#!/usr/bin/env python3
"""One-file set-up and entry point: needs only Python 3.10+.

    python3 run.py demo    # the main job: SGD vs SVAG on MNIST-1D, figure + table
    python3 run.py test    # the test suite (what CI runs)
    python3 run.py svag ARGS...   # any `svag` command inside the project's environment

On first use it creates `.venv/` next to this file, installs PyTorch as
``torch==2.13.0`` (the CPU build) and the project with its dev extras. Later calls reuse
the environment and reinstall only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".svag-installed"
TORCH = "torch==2.13.0"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _say(msg: str) -> None:
    print(f"[run.py] {msg}", flush=True)


def _fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()


def _install_fashion_mnist() -> None:
    """Best effort: Debian's dataset-fashion-mnist package, where apt-get and root exist."""
    if FASHION_DIR.is_dir() or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    _say("installing Fashion-MNIST from Debian's dataset-fashion-mnist package (optional)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]):
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            _say("could not install dataset-fashion-mnist; only the fashion-mnist data set is affected")
            return


def ensure_env() -> None:
    if not PY.exists():
        _say(f"creating virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _say(f"installing {TORCH} (CPU build) and the project; first time only, about 1-2 minutes")
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    if hasattr(os, "geteuid"):
        _install_fashion_mnist()
    STAMP.write_text(_fingerprint())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in {"demo", "test", "svag"}:
        print(f"run.py: unknown command {cmd!r}; valid: demo, test, svag", file=sys.stderr)
        return 2
    ensure_env()
    os.chdir(ROOT)
    if cmd == "test":
        args = [str(PY), "-m", "pytest", *rest]
    elif cmd == "demo":
        args = [str(PY), "-m", "svag", "demo", *rest]
    else:
        args = [str(PY), "-m", "svag", *rest]
    return subprocess.run(args).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
