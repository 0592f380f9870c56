"""The code base stays ruff clean (lint rules and format, as configured in pyproject.toml)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT


def _ruff() -> list[str]:
    """ruff from the environment running the tests. Missing, the test fails under CI (the test command
    installs the dev extra, so a missing ruff there is a broken set-up) and skips elsewhere."""
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        why = "ruff is not installed (it comes with the dev extra: pip install -e .[dev])"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    return [exe]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_clean(args):
    proc = subprocess.run([*_ruff(), *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
