"""Issue 23 §4: bad command-line input that hung, ran out of memory, ended in a traceback, was silently
ignored, ended with another exit status or said something misleading. Each is now refused before any work
with one line naming the value and exit status 2 (or, for a cost that is allowed, announced in one line).

Every command runs in this process (``svag.cli.main``) on tiny problems; a folder that cannot be written is
made with ``chattr +i`` (root can write a read-only folder), and those tests are skipped where it is refused.
"""

import contextlib
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from svag.cli import main
from svag.config import RunConfig
from svag.records import read_json, read_jsonl, write_json
from svag.runner.budget import MAX_SAMPLE_GRADIENTS, check_budget, cost_notice

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16", "--device", "cpu",
        "--no-progress", "--epochs", "0.5"]  # fmt: skip
SWEEP = ["--seeds", "1", "--ensemble", "off", *TINY]
RUN = dict(data="teacher-student", n_train=256, n_test=128, batch_size=16, device="cpu", epochs=1.0)


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def _refused(capsys, argv: list[str], message: str) -> str:
    """``argv`` ends with status 2 and one line on stderr holding ``message`` (no traceback); the line."""
    code = _code(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], (code, err)
    assert "Traceback" not in err[0]
    return err[0]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@contextlib.contextmanager
def _immutable(path: Path):
    """``path`` made immutable (``chattr +i``) for the block; the test is skipped where that is refused."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is refused here (needs root and a file system with attributes)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _plugin(tmp_path: Path, name: str, source: str) -> str:
    path = tmp_path / "plugins" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    return str(path)


# -- hang or out of memory ----------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_where_nothing_listens_fails_within_seconds(tmp_path, capsys):
    """(a) ``ray.init`` retried such an address for more than a minute; the address is tried first (a TCP
    connection, :data:`CONNECT_TIMEOUT` s at most), without starting Ray."""
    ray = pytest.importorskip("ray")
    from svag.experiments.executors.ray import CONNECT_TIMEOUT, check_address

    if ray.is_initialized():
        pytest.skip("this process is connected to Ray already (its sweeps use that connection)")
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"nothing accepts connections at 127.0.0.1:{port}"):
        check_address(f"127.0.0.1:{port}")
    with pytest.raises(ValueError, match=r"port 70000 is not in 1\.\.65535"):
        check_address("ray://127.0.0.1:70000")
    check_address("auto")  # no port: left to ray.init
    assert time.monotonic() - start < CONNECT_TIMEOUT
    out = tmp_path / "c"
    start = time.monotonic()
    line = _refused(capsys, ["compare", "--out", str(out), "--ls", "1,2", *SWEEP, "--cluster", "ray", "--address",
                             f"127.0.0.1:{port}"], f"cannot join the Ray cluster at 127.0.0.1:{port}")  # fmt: skip
    assert "is the cluster started there" in line and time.monotonic() - start < 30
    assert not ray.is_initialized() and not (out / "l1_seed0").exists()


def test_a_gaussian_run_counts_its_per_sample_buffers_in_the_memory_budget(monkeypatch):
    """(b) The Gaussian step's weights, losses and their copies (``STEP_BYTES_PER_SAMPLE`` per sample and seed)
    are counted beside the data and the model: refused where those alone would have passed."""
    import svag.runner.budget as budget
    from svag.gaussian import STEP_BYTES_PER_SAMPLE

    cfg = RunConfig(**{**RUN, "n_train": 100_000, "epochs": 0.01, "eval_every": 0.01, "checkpoint_every": 0.0})
    held = check_budget(cfg)
    assert held.step_bytes == 0 and held.sample_gradients == 0
    gauss = replace(cfg, gradient_noise="gaussian")
    step_bytes = 100_000 * STEP_BYTES_PER_SAMPLE
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * (held.data_bytes + held.model_bytes + step_bytes // 2))
    check_budget(cfg)  # the minibatch run fits
    with pytest.raises(ValueError, match=r"n_train=100000 × 1 seed\(s\): each step holds 0.00373 GiB of per-sample"):
        check_budget(gauss)
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * (held.data_bytes + held.model_bytes + step_bytes))
    got = check_budget(gauss, replicas=2)
    assert got.step_bytes == 2 * step_bytes and got.sample_gradients == pytest.approx(got.steps * 100_000 * 2)


def test_teacher_student_is_generated_in_chunks_with_the_same_numbers(monkeypatch):
    """(b) At n_train = 10^8 the set was drawn as one float64 array (14.9 GiB) besides the teacher's hidden
    layer; drawn a chunk at a time, the samples are the same numbers (numpy's stream does not depend on the
    pieces)."""
    from svag.data import teacher_student

    whole = teacher_student.load_teacher_student(n_train=50, n_test=20, seed=3)
    monkeypatch.setattr(teacher_student, "_CHUNK", 7)
    pieces = teacher_student.load_teacher_student(n_train=50, n_test=20, seed=3)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(whole, name), getattr(pieces, name)), name
    assert pieces.train_x.dtype == torch.float32 and pieces.train_y.dtype == torch.int64


def test_a_gaussian_run_past_the_cost_limit_is_refused_and_a_costly_one_announced(tmp_path, capsys, monkeypatch):
    """(c) ``--n-train 2000000`` ran for minutes without a word: each step is a pass over every sample, 1.25e12
    per-sample gradients over the default 10 epochs. Past MAX_SAMPLE_GRADIENTS it is refused; past the notice
    threshold one line says what it computes before it starts."""
    import svag.runner.budget as budget

    out = tmp_path / "g"
    argv = ["train", "--out", str(out), *TINY, "--epochs", "10", "--gradient-noise", "gaussian"]
    _refused(capsys, [*argv, "--n-train", "2000000"], "2.5e+12 per-sample gradients; at most 1e+12 are allowed")
    assert not out.exists() and MAX_SAMPLE_GRADIENTS == 10**12
    cfg = RunConfig(**{**RUN, "gradient_noise": "gaussian", "n_train": 200_000, "eval_every": 1.0})
    line = cost_notice(cfg, check_budget(cfg))
    assert line.startswith("this gaussian run computes 2.5e+09 per-sample gradients (1.25e+04 full-batch steps")
    assert "n_train/B = 1.25e+04× those of the minibatch run it simulates" in line
    assert cost_notice(RunConfig(**RUN), check_budget(RunConfig(**RUN))) is None
    monkeypatch.setattr(budget, "NOTICE_SAMPLE_GRADIENTS", 0)
    assert main([*argv, "--epochs", "0.25"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("svag: this gaussian run computes 1.02e+03 per-sample gradients")


def test_a_large_mnist1d_set_not_in_the_cache_is_announced(tmp_path):
    """MNIST-1D is generated a sample at a time (~0.5 ms each): 10^6 samples ran for minutes without a word."""
    from svag.data.mnist1d import NOTICE_SAMPLES, generation_notice

    line = generation_notice(1_000_000, 1000, 0, cache_dir=tmp_path)
    assert line.startswith("generating MNIST-1D's 1001000 samples (n_train=1000000 + n_test=1000) takes about 8.3 min")
    assert generation_notice(NOTICE_SAMPLES - 1000, 1000, 0, cache_dir=tmp_path) is None
    cfg = RunConfig(n_train=200_000, epochs=0.001, device="cpu")
    assert cost_notice(cfg, check_budget(cfg)).startswith("generating MNIST-1D's 201000 samples")


def test_workers_jobs_and_threads_are_bounded_by_the_cores(tmp_path, capsys):
    """(d) ``--loader-workers 100000`` started workers until 5.9 GB were taken; ``--threads 100000`` crashed
    PyTorch (SIGSEGV) after the run folder was made; ``--jobs 100000`` asked for as many processes."""
    from svag.data.loader import WORKERS_PER_CORE
    from svag.memory import usable_cores

    out = tmp_path / "r"
    most = WORKERS_PER_CORE * usable_cores()
    _refused(capsys, ["train", "--out", str(out), *TINY, "--loader-workers", "100000"],
             f"loader_workers must be at most {most} ({WORKERS_PER_CORE} worker processes per core")  # fmt: skip
    RunConfig(loader_workers=most).validate()
    _refused(capsys, ["train", "--out", str(out), *TINY, "--threads", "100000"], "--threads must be at most")
    _refused(capsys, ["compare", "--out", str(out), *SWEEP, "--jobs", "100000"], "--jobs must be at most")
    assert not out.exists()


# -- tracebacks ---------------------------------------------------------------------------------------
def test_an_unwritable_tensorboard_folder_is_refused_before_any_work(tmp_path, capsys):
    """(e) TensorBoard's writer failed with a traceback after the run folder was written."""
    (tmp_path / "file").write_text("")
    out = tmp_path / "r"
    argv = ["train", "--out", str(out), *TINY]
    _refused(capsys, [*argv, "--tensorboard", str(tmp_path / "file")], f"{tmp_path / 'file'} is a file, not a folder")
    assert not out.exists()
    tb = tmp_path / "tb"
    tb.mkdir()
    with _immutable(tb):
        _refused(capsys, [*argv, "--tensorboard", str(tb)], f"--tensorboard {tb}: cannot write events into it")
    assert not out.exists()
    # a run's own event folder that became unwritable: the resumed run stops before its status changes
    assert main([*argv, "--epochs", "1", "--checkpoint-every", "0.5", "--tensorboard", str(tb)]) == 0
    write_json(out / "status.json", {**read_json(out / "status.json"), "status": "interrupted"})
    before = (out / "status.json").read_bytes()
    capsys.readouterr()
    with _immutable(tb / "r"):
        _refused(capsys, [*argv, "--epochs", "1", "--checkpoint-every", "0.5", "--tensorboard", str(tb), "--resume"],
                 f"--tensorboard: cannot write events into {tb / 'r'}")  # fmt: skip
    assert (out / "status.json").read_bytes() == before


DETACHED = """
import math
import torch
import torch.nn.functional as F

def loss(outputs, targets):
    return F.cross_entropy(outputs.detach(), targets)

class Detached(torch.nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.lin = torch.nn.Linear(d, k)

    def forward(self, x):
        return self.lin(x.flatten(1)).detach()

def detached(input_shape, num_classes):
    return Detached(math.prod(input_shape), num_classes)

def frozen(input_shape, num_classes):
    layer = torch.nn.Linear(math.prod(input_shape), num_classes).requires_grad_(False)
    return torch.nn.Sequential(torch.nn.Flatten(), layer)
"""


def test_plugins_that_cut_the_graph_are_named_before_any_work(tmp_path, capsys):
    """(f) A loss on detached outputs ended in ``element 0 of tensors does not require grad`` (a traceback at
    the first evaluation, after the run folder was written); so did a model whose outputs are detached."""
    spec = _plugin(tmp_path, "cut", DETACHED)
    out = tmp_path / "r"
    argv = ["train", "--out", str(out), *TINY]
    _refused(capsys, [*argv, "--loss", f"{spec}:loss"], f"loss '{spec}:loss' returns a value that does not depend")
    _refused(capsys, [*argv, "--model", f"{spec}:detached"], f"model '{spec}:detached' returns outputs that do not")
    _refused(capsys, [*argv, "--model", f"{spec}:frozen"], f"model '{spec}:frozen' has no parameter that requires")
    assert not out.exists()


EMPTY = """
import torch

def empty():
    return (torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)), (torch.randn(10, 5), torch.randint(0, 3, (10,)))

def scalar():
    return (torch.tensor(1.0), torch.tensor([1])), (torch.randn(10, 5), torch.randint(0, 3, (10,)))
"""


def test_a_data_plugin_with_an_empty_training_split_is_one_line(tmp_path, capsys):
    """(g) ``max(): Expected reduction dim`` (a traceback) for an empty training split; likewise 0-d inputs."""
    spec = _plugin(tmp_path, "empty", EMPTY)
    out = tmp_path / "r"
    argv = ["train", "--out", str(out), "--device", "cpu", "--no-progress", "--batch-size", "2"]
    _refused(capsys, [*argv, "--data", f"{spec}:empty"], f"data '{spec}:empty' returned an empty training split")
    _refused(capsys, [*argv, "--data", f"{spec}:scalar"], "the train inputs are a 0-d tensor")
    assert not out.exists()


# -- silent -------------------------------------------------------------------------------------------
def test_milestones_apply_to_multistep_only(tmp_path, capsys):
    """(h) With the constant schedule the LR dropped at the milestones (the config said constant); a cosine
    ignored them. Milestones of a preset or a command's defaults go with their multistep schedule."""
    from svag.cli import build_parser
    from svag.config import PRESETS, config_from_args

    out = tmp_path / "r"
    for schedule in ("constant", "cosine"):
        got = f"milestones apply to --schedule multistep only, got milestones 0.25 with schedule '{schedule}'"
        _refused(capsys, ["train", "--out", str(out), *TINY, "--milestones", "0.25", "--schedule", schedule], got)
    assert not out.exists()
    argv = ["train", "--out", str(out), "--preset", "cifar10-vgg16", "--schedule", "cosine"]
    parser = build_parser("train")
    parser.parse_args(argv)._command_parser.set_defaults(**PRESETS["cifar10-vgg16"])
    cfg = config_from_args(parser.parse_args(argv))
    assert cfg.schedule == "cosine" and cfg.milestones == () and cfg.epochs == 160.0
    assert config_from_args(parser.parse_args(argv[:5])).milestones == (80.0, 120.0)  # the preset's multistep


def test_a_triangle_cycle_must_span_steps(tmp_path, capsys):
    """(i) ``--cycles 1000000`` sampled the triangle once per many cycles: a flat LR."""
    out = tmp_path / "r"
    _refused(capsys, ["train", "--out", str(out), *TINY, "--schedule", "triangle", "--cycles", "1000000"],
             "cycles=1000000 makes each half-cycle of the triangle 4e-06 steps of the simulated run long")  # fmt: skip
    assert not out.exists()
    cfg = dict(RUN, schedule="triangle")  # 256/16 = 16 steps: at most 8 cycles
    check_budget(RunConfig(**cfg, cycles=8))
    for unit in ("step", "time"):
        with pytest.raises(ValueError, match="a half-cycle must span at least one step: use cycles <= 8"):
            check_budget(RunConfig(**cfg, cycles=9, schedule_unit=unit))


@pytest.mark.parametrize("command", ["train", "compare", "scale", "lsr"])
def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch, command):
    """(j) ``--out ''`` trained into the current folder."""
    monkeypatch.chdir(tmp_path)
    _refused(capsys, [command, "--out", "", *TINY], "argument --out: expected a folder path, got ''")
    assert _files(tmp_path) == []


# -- exit codes ---------------------------------------------------------------------------------------
def test_a_plugin_calling_sys_exit_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    """(k) A plug-in file calling ``sys.exit(3)`` when imported ended svag with status 3 and no output."""
    spec = _plugin(tmp_path, "exiter", "import sys\nsys.exit(3)\n")
    _plugin(tmp_path, "exits_when_called", "import sys\n\ndef load():\n    sys.exit(4)\n")
    out = tmp_path / "r"
    argv = ["train", "--out", str(out), *TINY]
    _refused(capsys, [*argv, "--model", f"{spec}:model"], f"cannot import {spec} (it called sys.exit(3))")
    monkeypatch.chdir(tmp_path / "plugins")
    _refused(capsys, [*argv, "--model", "exiter:model"], "cannot import module 'exiter' (it called sys.exit(3))")
    _refused(capsys, [*argv, "--data", "exits_when_called:load"], "failed when called with (): it called sys.exit(4)")
    assert not out.exists()


BATCHNORM = """
import math
import torch

def model(input_shape, num_classes):
    layers = torch.nn.Linear(math.prod(input_shape), 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, num_classes)
    return torch.nn.Sequential(torch.nn.Flatten(), *layers)
"""


def test_compare_ngd_with_a_batchnorm_plugin_is_refused_before_any_run(tmp_path, capsys):
    """(l) The SGD and SVAG runs trained first, then every NGD run failed; built-in ``--norm bn`` was
    refused up front. The model is built on the meta device and its modules looked at before any run."""
    spec = _plugin(tmp_path, "bn", BATCHNORM)
    out = tmp_path / "c"
    _refused(capsys, ["compare", "--out", str(out), "--ls", "1,2", "--ngd", *SWEEP, "--model", f"{spec}:model"],
             f"model '{spec}:model': the Gaussian-noise step needs per-sample losses, which BatchNorm")  # fmt: skip
    assert not (out / "l1_seed0").exists() and not (out / "ngd_seed0").exists()


# -- misleading messages ------------------------------------------------------------------------------
def test_a_bad_data_seed_leaves_no_folder(tmp_path, capsys):
    """(m) ``--data-seed -1`` failed in the data loader, after the run folder was made (left empty)."""
    out = tmp_path / "r"
    _refused(capsys, ["train", "--out", str(out), *TINY, "--data-seed", "-1"], "data_seed must be an integer >= 0")
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "flags"),
    [("compare", ["--ls", "1,2"]), ("scale", ["--batch-sizes", "16,32"]),
     ("lsr", ["--model", "mlp", "--milestones", "0.25", "--verify", "32"])],
)  # fmt: skip
def test_an_unwritable_sweep_folder_is_refused_up_front(tmp_path, capsys, command, flags):
    """(n) Every run printed ``failed: cannot write``, then ``none of the runs ... is in ...``."""
    out = tmp_path / "sweep"
    out.mkdir()
    with _immutable(out):
        _refused(capsys, [command, "--out", str(out), *flags, *SWEEP],
                 f"cannot write the sweep into {out}: {out} is not writable")  # fmt: skip
    assert _files(out) == []


def test_a_file_that_is_not_utf8_json_is_named(tmp_path, capsys):
    """(o) ``'utf-8' codec can't decode byte 0xff`` did not say which file."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_bytes(b"\xff\xfe garbage")
    line = _refused(capsys, ["train", "--out", str(out), *TINY, "--resume"], f"{out / 'config.json'} is not valid JSON")
    assert "not UTF-8 text (byte 0xff at offset 0)" in line
    (tmp_path / "m.jsonl").write_bytes(b'{"a": 1}\n\xff\n')
    with pytest.raises(ValueError, match=r"m.jsonl is not valid JSON: not UTF-8 text \(byte 0xff at offset 9\)"):
        read_jsonl(tmp_path / "m.jsonl")


# -- found by trying bad values of every option -------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--width", "1e30"], "width=1e+30 makes a layer of mlp too large to allocate"),  # TypeError: overflow
        (["--device", "meta"], "device must be auto, cpu, cuda[:N] or mps, got 'meta'"),  # NotImplementedError
        (["--device", "mps"], "device 'mps' requested but Apple MPS is not available"),  # RuntimeError
        (["--betas", "0.8,0.9"], "betas applies to --optimizer adam, adamw or rmsprop only"),  # ignored by sgd
        (["--eps", "1"], "eps applies to --optimizer adam, adamw or rmsprop only, got eps=1.0 with sgd"),
    ],
)
def test_more_bad_values_are_one_line(tmp_path, capsys, flags, message):
    if flags == ["--device", "mps"] and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    out = tmp_path / "r"
    _refused(capsys, ["train", "--out", str(out), *TINY, *flags], message)
    assert not out.exists()


@pytest.mark.parametrize("command", ["compare", "scale"])
def test_a_sweep_checks_the_device_before_any_run(tmp_path, capsys, command):
    """Each run printed ``failed: device must be ...``, then ``none of the runs ... is in`` (compare) or
    ``the base run has no records`` after writing scale.json (scale)."""
    out = tmp_path / "s"
    flags = ["--ls", "1,2"] if command == "compare" else ["--batch-sizes", "16,32"]
    _refused(capsys, [command, "--out", str(out), *flags, *SWEEP, "--device", "bogus"],
             "device must be auto, cpu, cuda[:N] or mps, got 'bogus'")  # fmt: skip
    assert not out.exists() or _files(out) == []


def test_lsr_says_its_baseline_diverged(tmp_path, capsys):
    """A diverged baseline gave ``error: ... no G/N records in the window`` with status 2 (bad input)."""
    out = tmp_path / "l"
    argv = ["lsr", "--out", str(out), "--model", "mlp", "--eval-every", "0.125", "--milestones", "0.4", *TINY]
    assert main([*argv, "--lr", "1e30"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"svag lsr: no prediction: the baseline run {out / 'B16'} diverged: training loss")
    assert not any("error:" in line for line in err)
