"""Set-up and entry points as a user meets them: what `run.py` would install and run (without
running pip or apt), the README's commands, and the CPU thread count of the main job."""

import re
import shlex
import subprocess
import sys

import pytest

from helpers import ROOT, repo_module
from svag import cli

README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def run_py():
    """`run.py` as a module: its functions, not its `main` (which would install)."""
    return repo_module("run.py", "svag_run_py")


# ---- what run.py installs ------------------------------------------------------------------


def test_torch_install_uses_pips_index_and_the_pinned_version_by_default(run_py):
    argv = run_py.pip_torch_argv("py", {})
    assert argv == ["py", "-m", "pip", "install", "--disable-pip-version-check", "torch==2.13.0"]
    assert "torch==2.13.0" in README  # the README names what is installed
    message = run_py.torch_message({})
    assert "torch==2.13.0" in message and "CUDA build" in message and "SVAG_TORCH_INDEX_URL" in message


def test_torch_index_and_requirement_come_from_the_environment(run_py):
    env = {"SVAG_TORCH_INDEX_URL": "https://user:secret@example.org/simple", "SVAG_TORCH": "torch>=2.3"}
    argv = run_py.pip_torch_argv("py", env)
    assert argv[-3:] == ["--index-url", env["SVAG_TORCH_INDEX_URL"], "torch>=2.3"]  # for torch only
    assert "--index-url" not in run_py.pip_project_argv("py", ROOT)
    message = run_py.torch_message(env)
    assert "torch>=2.3" in message and "SVAG_TORCH_INDEX_URL=https://user:***@example.org/simple" in message
    assert "secret" not in message
    assert run_py.torch_requirement({"SVAG_TORCH": "  "}) == "torch==2.13.0"  # empty: the default
    for name in ("SVAG_TORCH_INDEX_URL", "SVAG_TORCH", "SVAG_NO_SYSTEM_PACKAGES"):
        assert f"`{name}" in README, name  # documented


def test_changing_the_torch_choice_reinstalls(run_py):
    base = run_py._fingerprint({})
    assert run_py._fingerprint({"SVAG_TORCH_INDEX_URL": "file:///wheels"}) != base
    assert run_py._fingerprint({"SVAG_TORCH": "torch==2.12.0"}) != base
    assert run_py._fingerprint({"UNRELATED": "1"}) == base


def test_the_test_command_installs_the_optional_extras(run_py):
    """CI runs the integrations' tests: `test` asks for every extra, the demo only for `dev`."""
    argv = run_py.pip_project_argv("py", ROOT, run_py.EXTRAS["test"])
    assert argv[-1].endswith("[dev,docs,lightning,ray,tensorboard,transformers]")
    assert run_py.EXTRAS["demo"] == ("dev",)
    fp = run_py._fingerprint({})
    assert run_py.installed_extras(fp, fp) == {"dev"}  # a stamp of an earlier release
    assert run_py.installed_extras(fp + "\ndev,ray", fp) == {"dev", "ray"}
    assert run_py.installed_extras(fp + "\ndev,ray", "other") == set()  # another set-up: reinstall


@pytest.mark.parametrize(
    ("env", "root", "apt", "data", "install", "says"),
    [
        ({}, True, True, True, False, None),  # already there: nothing to do or say
        ({}, True, True, False, True, "SVAG_NO_SYSTEM_PACKAGES=1 to skip"),
        ({"SVAG_NO_SYSTEM_PACKAGES": "1"}, True, True, False, False, "because SVAG_NO_SYSTEM_PACKAGES is set"),
        ({"SVAG_NO_SYSTEM_PACKAGES": "0"}, True, True, False, True, "apt-get install, as root"),
        ({}, False, True, False, False, "sudo apt-get install dataset-fashion-mnist"),
        ({}, True, False, False, False, "--data-root DIR"),
    ],
)
def test_fashion_mnist_system_package_plan(run_py, env, root, apt, data, install, says):
    got, message = run_py.fashion_mnist_plan(env, is_root=root, have_apt=apt, have_data=data)
    assert got == install
    assert message is None if says is None else (says in message and "optional" in message)


def test_apt_is_announced_shown_and_never_hidden(run_py, monkeypatch, capsys):
    monkeypatch.setattr(run_py, "fashion_mnist_plan", lambda env, **kw: (True, "installing dataset-fashion-mnist"))
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0)

    run_py.install_fashion_mnist({"PATH": "/usr/bin"}, run=fake_run)
    assert [argv for argv, _ in calls] == run_py.apt_argvs()
    assert calls[0][0] == ["apt-get", "update", "-q"] and "dataset-fashion-mnist" in calls[1][0]
    for argv, kwargs in calls:
        assert "-qq" not in argv and "stdout" not in kwargs and "stderr" not in kwargs  # apt's output is shown
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[run.py] installing dataset-fashion-mnist"  # said before anything runs
    assert out[1] == "[run.py] $ apt-get update -q" and out[-1].startswith("[run.py] installed dataset-fashion-mnist")


def test_apt_failure_is_reported_and_not_fatal(run_py, monkeypatch, capsys):
    monkeypatch.setattr(run_py, "fashion_mnist_plan", lambda env, **kw: (True, "installing"))
    run_py.install_fashion_mnist({}, run=lambda argv, **kw: subprocess.CompletedProcess(argv, 100))
    assert "apt-get update exited with 100; dataset-fashion-mnist not installed" in capsys.readouterr().out


def test_opt_out_runs_nothing(run_py, monkeypatch, capsys):
    monkeypatch.setattr(run_py, "FASHION_DIR", ROOT / "no-such-folder")
    run_py.install_fashion_mnist({"SVAG_NO_SYSTEM_PACKAGES": "1"}, run=lambda *a, **k: pytest.fail("ran " + str(a)))
    assert "not installing dataset-fashion-mnist" in capsys.readouterr().out


# ---- what run.py runs ------------------------------------------------------------------------


def test_run_py_commands(run_py, capsys):
    py = str(run_py.PY)
    assert run_py.command_argv("test", ["-q"]) == [py, "-m", "pytest", "-q"]
    assert run_py.command_argv("demo", ["--threads", "2"]) == [py, "-m", "svag", "demo", "--threads", "2"]
    assert run_py.command_argv("svag", ["verify"]) == [py, "-m", "svag", "verify"]
    assert run_py.main(["nope"]) == 2 and "valid: demo, test, svag" in capsys.readouterr().err


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    (last,) = [line for line in script.splitlines() if line.startswith("exec ")]
    assert last == "exec python3 run.py test"
    assert re.search(r"^python3 run\.py test\b", README, re.M)


# ---- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "threads"),
    [
        (["demo"], None),
        (["demo", "--threads", "2"], 2),
        (["--threads", "3", "demo"], 3),
        (["--threads", "3", "demo", "--threads", "2"], 2),  # the later one wins
        (["train", "--out", "x", "--threads", "1"], 1),
    ],
)
def test_threads_is_accepted_before_and_after_the_command(argv, threads):
    command = next(a for a in argv if a in cli.COMMANDS)
    assert cli.build_parser(command).parse_args(argv).threads == threads


def test_thread_defaults():
    from svag.commands import demo

    assert demo.THREADS == 1
    assert cli.resolve_threads(None, demo.THREADS, {}) == 1
    assert cli.resolve_threads(None, demo.THREADS, {"OMP_NUM_THREADS": "4"}) == 0  # torch already follows it
    assert cli.resolve_threads(2, demo.THREADS, {"OMP_NUM_THREADS": "4"}) == 2
    assert cli.resolve_threads(None, 0, {}) == 0  # commands without their own: PyTorch's default


def test_demo_runs_on_one_thread_unless_told(monkeypatch):
    import torch

    import svag.commands.demo

    seen = []
    monkeypatch.setattr(svag.commands.demo, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert cli.main(["demo"]) == 0
        assert cli.main(["demo", "--threads", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]


# ---- torchrun ----------------------------------------------------------------------------------


def _readme_torchrun_line() -> list[str]:
    """The one-node line of the clusters guide (it moved there from the README)."""
    guide = (ROOT / "docs" / "guides" / "clusters.md").read_text()
    (line,) = [line for line in guide.splitlines() if line.startswith("torchrun --standalone ")]  # one node
    return shlex.split(line)


def test_every_svag_option_but_l_passes_torchruns_parser():
    """torchrun's parser reads options after `-m svag` too and rejects an ambiguous abbreviation of
    its own (`--l`: `--log-dir`, `--local-addr`, ...); the README's line must avoid them."""
    from torch.distributed.run import get_args_parser

    words = _readme_torchrun_line()
    assert "--l" not in words and "--amplification" in words
    parser = cli.build_parser("train")
    train = parser.parse_args(["train", "--out", "x"])._command_parser
    rejected = []
    for option in [o for action in train._actions for o in action.option_strings]:
        try:
            get_args_parser().parse_args(["--standalone", "-m", "svag", "train", option, "1"])
        except SystemExit:
            rejected.append(option)
    assert rejected == ["--l"]


def test_readme_torchrun_line_runs(tmp_path):
    """The README's line as written, with a small size appended (later flags win): 2 processes."""
    words = _readme_torchrun_line()
    assert words[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    small = ["--out", str(tmp_path / "ddp"), "--epochs", "0.5", "--n-train", "256", "--n-test", "128",
             "--batch-size", "16", "--device", "cpu", "--no-progress"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", *words[1:], *small]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "completed" in proc.stdout and (tmp_path / "ddp" / "metrics.jsonl").exists()
