"""Plug-ins by import path (svag.plugins): a user's model, data and loss through every owner and the CLI.

Runs are tiny (MNIST-1D, 256 training samples, 1-3 epochs) and compared for equality: the same
network given as a built-in name and as an import path must give the same records.
"""

import json
import math

import pytest
import torch
from torch import nn

from svag import plugins
from svag import sweepfolder as sf
from svag.build import check_fit
from svag.cli import main
from svag.data import load_dataset
from svag.data import plugin as data_plugin
from svag.task import CrossEntropy, FunctionTask, make_task

SMALL = ["--n-train", "256", "--n-test", "128", "--no-progress"]


def _records(folder):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def _error(capsys, argv):
    """Run the CLI expecting bad input: exit 2 and one line on stderr, which is returned."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


def _write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ parsing
def test_spec_forms(tmp_path):
    assert plugins.is_spec("pkg.mod:fn") and plugins.is_spec("a/b.py:fn") and not plugins.is_spec("mlp")
    assert plugins.resolve("svag.models.mlp:MLP", "model") is __import__("svag.models.mlp").models.mlp.MLP
    f = _write(tmp_path / "m.py", "def make(input_shape, num_classes):\n    return 1\n")
    assert plugins.resolve(f"{f}:make", "model")(1, 2) == 1
    for bad in ("pkg.mod:", ":fn", "pkg mod:fn", "pkg.mod:1fn"):
        with pytest.raises(plugins.PluginError, match=r"package\.module:callable"):
            plugins.resolve(bad, "model")


def test_import_failures_are_one_line(tmp_path, capsys):
    err = _error(capsys, ["train", "--out", str(tmp_path / "a"), "--model", "no_such_module_xyz:make", *SMALL])
    assert "cannot import module 'no_such_module_xyz'" in err and "ModuleNotFoundError" in err
    err = _error(capsys, ["train", "--out", str(tmp_path / "b"), "--model", "missing/file.py:make", *SMALL])
    assert "no file missing/file.py" in err
    f = _write(tmp_path / "broken.py", "import torch\nraise RuntimeError('boom at import')\n")
    err = _error(capsys, ["train", "--out", str(tmp_path / "c"), "--model", f"{f}:make", *SMALL])
    assert "RuntimeError: boom at import" in err
    f = _write(tmp_path / "m.py", "def build(input_shape, num_classes):\n    pass\ndef other():\n    pass\n")
    err = _error(capsys, ["train", "--out", str(tmp_path / "d"), "--model", f"{f}:make", *SMALL])
    assert "has no 'make'" in err and "build, other" in err
    assert not (tmp_path / "d").exists()  # refused before a folder is made


def test_wrong_return_types(tmp_path, capsys):
    f = _write(
        tmp_path / "p.py",
        "import torch\n"
        "def tensor_model(input_shape, num_classes):\n    return torch.zeros(3)\n"
        "def text_data():\n    return 'data'\n"
        "def float_labels():\n"
        "    x = torch.randn(64, 4)\n    return (x, torch.rand(64)), (x, torch.rand(64))\n"
        "def needs_more(input_shape, num_classes, depth):\n    pass\n",
    )
    out = str(tmp_path / "r")
    err = _error(capsys, ["train", "--out", out, "--model", f"{f}:tensor_model", *SMALL])
    assert "returned a Tensor; expected a torch.nn.Module" in err
    err = _error(capsys, ["train", "--out", out, "--data", f"{f}:text_data", *SMALL])
    assert "returned a str; expected (train, test)" in err
    err = _error(capsys, ["train", "--out", out, "--data", f"{f}:float_labels", *SMALL])
    assert "labels are torch.float" in err and "integer class indices" in err
    err = _error(capsys, ["train", "--out", out, "--model", f"{f}:needs_more", *SMALL])
    assert "needs depth, which svag does not pass" in err and "input_shape, num_classes, dtype" in err


def test_shape_mismatch_between_model_and_data(tmp_path, capsys):
    f = _write(
        tmp_path / "m.py",
        "from torch import nn\n"
        "def five(input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(40, 5))\n"
        "def wrong_in(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(30, num_classes))\n",
    )
    out = str(tmp_path / "r")
    err = _error(capsys, ["train", "--out", out, "--model", f"{f}:five", *SMALL])
    assert "maps a batch of shape (2, 1, 40)" in err and "to (2, 5); expected (2, 10)" in err
    err = _error(capsys, ["train", "--out", out, "--model", f"{f}:wrong_in", *SMALL])
    assert "fails on a batch of shape (2, 1, 40) from data 'mnist1d'" in err and "num_classes=10" in err


def test_loss_must_be_a_scalar_mean(tmp_path, capsys):
    f = _write(
        tmp_path / "l.py",
        "import torch.nn.functional as F\n"
        "def per_sample(o, t):\n    return F.cross_entropy(o, t, reduction='none')\n"
        "def summed(o, t):\n    return F.cross_entropy(o, t, reduction='sum')\n"
        "def mean(o, t):\n    return F.cross_entropy(o, t)\n",
    )
    out = str(tmp_path / "r")
    err = _error(capsys, ["train", "--out", out, "--loss", f"{f}:per_sample", *SMALL])
    assert "returned (4,) for a batch of 4; expected a scalar tensor" in err
    err = _error(capsys, ["train", "--out", out, "--loss", f"{f}:summed", *SMALL])
    assert "it is the sum over the batch" in err and "reduction='mean'" in err
    task = make_task(f"{f}:mean", 10)
    check_fit(nn.Linear(3, 10), task, (3,), 10, {"model": "m", "data": "d", "loss": "l"})  # accepted


def test_function_task_per_sample_equals_the_loop():
    """vmap of the user's mean loss on one-sample batches = the loop (float64, seed 0, n = 7)."""
    gen = torch.Generator().manual_seed(0)
    out, target = torch.randn(7, 4, generator=gen), torch.randint(0, 4, (7,), generator=gen)
    task = FunctionTask(lambda o, t: torch.nn.functional.cross_entropy(o, t, label_smoothing=0.1), "ls")
    fast, slow = task.per_sample_loss(out, target), task.per_sample_loss_reference(out, target)
    assert task._vmap_ok and torch.allclose(fast, slow, rtol=1e-12, atol=0)
    assert torch.allclose(fast.mean(), task.loss(out, target), rtol=1e-12)

    def branchy(o, t):  # data-dependent control flow: vmap cannot trace it, the loop takes over
        return o.square().mean() if float(o.sum()) > 0 else o.abs().mean()

    task = FunctionTask(branchy, "branchy")
    assert torch.equal(task.per_sample_loss(out, target), task.per_sample_loss_reference(out, target))
    assert not task._vmap_ok
    assert make_task("svag.task:CrossEntropy", 4).loss(out, target) == CrossEntropy().loss(out, target)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i].numpy(), int(self.y[i])


def test_datasets_are_stacked_subset_and_refused_past_the_memory(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, 3, 5, generator=gen, dtype=torch.float32), torch.randint(0, 4, (100,), generator=gen)
    tx, ty = x[:30] + 1, y[:30]
    plugins._REGISTRY.pop("python:data", None)
    spec = data_plugin.as_data_spec((_Pairs(x, y), _Pairs(tx, ty)))
    ds = load_dataset(spec)
    assert torch.equal(ds.train_x, x) and torch.equal(ds.train_y, y) and torch.equal(ds.test_x, tx)
    assert ds.num_classes == int(y.max()) + 1 and ds.input_shape == (3, 5)
    sub = load_dataset(spec, n_train=40, seed=3)  # a seeded subset, as the built-in files
    idx = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:40].sort().values
    assert torch.equal(sub.train_x, x[idx]) and sub.n_test == 30
    with pytest.raises(ValueError, match="asked for 50 samples, only 30 available"):
        load_dataset(spec, n_test=50)
    monkeypatch.setattr(data_plugin, "memory_limit", lambda: 1000)  # 100 samples × 15 floats = 6000 bytes
    too_big = r"the train Dataset holds 100 samples of shape \(3, 5\).*use a DataLoader-backed run"
    with pytest.raises(ValueError, match=too_big):
        data_plugin.as_data_spec((_Pairs(x, y), _Pairs(tx, ty)))  # Datasets given as values: read at once
    later = data_plugin.as_data_spec(lambda: (_Pairs(x, y), _Pairs(tx, ty)))  # a callable: read when loaded
    with pytest.raises(ValueError, match=too_big):
        load_dataset(later)


# --------------------------------------------------------------------------- equal to the built-in
def test_builtin_pieces_as_plugins_give_the_same_run(tmp_path):
    """Model, data and loss all given by import path (the built-in MLP, the MNIST-1D loader as a data
    callable, the cross-entropy Task class) train exactly the run of the built-in names."""
    f = _write(
        tmp_path / "user_data.py",
        "from svag.data import load_dataset\n"
        "def load(n_train, n_test, seed):\n"
        "    return load_dataset('mnist1d', n_train=n_train, n_test=n_test, seed=seed)\n",
    )
    common = ["--epochs", "2", "--eval-every", "0.5", "--l", "2", "--norm", "bn", *SMALL]
    assert main(["train", "--out", str(tmp_path / "a"), *common]) == 0
    plug = ["--model", "svag.models.mlp:MLP", "--data", f"{f}:load", "--loss", "svag.task:CrossEntropy"]
    assert main(["train", "--out", str(tmp_path / "b"), *common, *plug]) == 0
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["config"]["model"] == "svag.models.mlp:MLP"
    assert set(saved["derived"]["plugins"]) == {"model", "data", "loss"}
    assert saved["derived"]["plugins"]["data"]["file"] == str(f.resolve())


def test_lsr_on_the_builtin_mlp_imported_as_a_user_model_reproduces_b_star(tmp_path, capsys):
    """The issue's "done when": `svag lsr --model svag.models.mlp:MLP` (the built-in MLP imported as if it
    were the user's) gives the built-in pipeline's B* and G/N, equal numbers."""
    args = ["--epochs", "3", "--milestones", "2", "--eval-every", "0.5", *SMALL]
    assert main(["lsr", "--out", str(tmp_path / "builtin"), "--model", "mlp", *args]) == 0  # lsr's default is a CNN
    assert main(["lsr", "--out", str(tmp_path / "user"), "--model", "svag.models.mlp:MLP", *args]) == 0
    a, b = (json.loads((tmp_path / n / sf.LSR_JSON).read_text()) for n in ("builtin", "user"))
    assert math.isfinite(a["B_star"]) and a["B_star"] > 0
    assert a["B_star"] == b["B_star"] and a["B_star_se"] == b["B_star_se"]
    assert a["baseline"]["G"] == b["baseline"]["G"] and a["baseline"]["N"] == b["baseline"]["N"]
    assert _records(tmp_path / "builtin" / "B32") == _records(tmp_path / "user" / "B32")


# -------------------------------------------------------------------------------------------- resume
def test_resume_refuses_a_changed_or_missing_plugin(tmp_path, capsys):
    model = _write(
        tmp_path / "net.py",
        "from torch import nn\n"
        "def make(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, num_classes))\n",
    )
    out = str(tmp_path / "run")
    argv = ["train", "--out", out, "--model", f"{model}:make", "--epochs", "1", *SMALL]
    assert main(argv) == 0
    assert main([*argv, "--resume"]) == 0  # the same file: resumes (here: nothing left to do)
    capsys.readouterr()
    model.write_text(model.read_text().replace("16", "32"))
    err = _error(capsys, [*argv, "--resume"])
    assert f"cannot resume {out}: the model plug-in {model}:make changed since the run started" in err
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    model.unlink()
    err = _error(capsys, [*argv, "--resume"])
    assert f"model '{model}:make': no file {model}" in err
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before  # nothing lost


def test_ensemble_on_stacks_a_plugin_model(tmp_path):
    """``--ensemble on`` trains a plug-in model's seeds as one stacked ensemble (svag.runner.ensemble.stack)."""
    argv = ["compare", "--out", str(tmp_path / "c"), "--model", "svag.models.mlp:MLP", "--ensemble", "on"]
    assert main([*argv, "--ls", "1,2", "--seeds", "2", "--epochs", "1", *SMALL]) == 0
    env = json.loads((tmp_path / "c" / "l2_seed1" / "env.json").read_text())
    assert env["trained_with_replicas"] == 2


def test_a_factory_that_cannot_run_on_the_meta_device_is_built_for_real(tmp_path):
    """The budget check builds models on the meta device; a factory that reads a value there
    (float() of a weight) is built on the CPU instead, and the run trains."""
    f = _write(
        tmp_path / "m.py",
        "from torch import nn\n"
        "def make(input_shape, num_classes):\n"
        "    lin = nn.Linear(40, num_classes)\n"
        "    assert float(lin.weight.abs().sum()) > 0\n"
        "    return nn.Sequential(nn.Flatten(), lin)\n",
    )
    assert main(["train", "--out", str(tmp_path / "r"), "--model", f"{f}:make", "--epochs", "1", *SMALL]) == 0
