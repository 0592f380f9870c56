"""The command line end to end on tiny problems: files written, one-line errors with status 2."""

import contextlib
import shutil
import subprocess
import sys

import pytest

from svag import sweepfolder as sf
from svag.cli import main
from svag.records import read_json, read_jsonl, write_json

TINY = ["--data", "teacher-student", "--n-train", "256", "--n-test", "128", "--batch-size", "16",
        "--device", "cpu", "--no-progress"]  # fmt: skip


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("train", "compare", "plot", "lsr", "verify", "demo"):
        assert name in out


def _modules_after(code):
    """The ``svag*`` and ``torch`` modules loaded by ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules if m.split('.')[0] in ('svag', 'torch')))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_import_svag_loads_no_research_module_and_no_torch():
    loaded = _modules_after("import svag")
    # its version and the aliases of moved module paths (both a few lines, no imports of their own); studies,
    # verify, models, data, ... and torch load on first use
    assert loaded == {"svag", "svag.version", "svag._moved"}, loaded


@pytest.mark.parametrize(
    "argv", [["--help"], *([c, "--help"] for c in ("train", "compare", "lsr", "plot", "demo", "verify"))]
)
def test_help_imports_no_torch(argv):
    loaded = _modules_after(f"from svag.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert "svag.cli" in loaded and "torch" not in loaded, sorted(loaded)


def test_public_names_load_on_first_use():
    import svag

    for name in svag.__all__:
        assert getattr(svag, name) is not None, name
    assert set(svag.__all__) <= set(dir(svag))
    assert svag.SVAG.__module__ == "svag.optim" and svag.data.__name__ == "svag.data"
    with pytest.raises(AttributeError, match="module 'svag' has no attribute 'nope'"):
        svag.nope  # noqa: B018


def test_every_train_flag_has_a_default_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--l L" in out and "(default: 1.0)" in out and "--resume" in out


def test_train_writes_the_documented_fields(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--l", "2", "--epochs", "1", "--seed", "0", *TINY]) == 0
    row = read_jsonl(tmp_path / "r" / "metrics.jsonl")[-1]
    for key in ("sde_time", "step", "effective_step", "epoch", "lr", "train_loss", "train_acc", "test_loss",
                "test_acc", "weight_norm_sq", "grad_norm_sq", "wall_time", "G", "N", "gn_ratio"):  # fmt: skip
        assert key in row
    assert row["noise_count"] > 0 and row["N"] > 0
    assert "completed" in capsys.readouterr().out


def test_compare_then_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--out", str(out), "--ls", "1,2", "--seeds", "2", "--epochs", "1", "--eval-every", "0.5",
                 *TINY])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["l1_seed0", "l1_seed1", "l2_seed0", "l2_seed1"]
    assert (out / sf.SUMMARY_MD).read_text().count("\n") == 4  # header, rule, two rows of l
    assert "test_loss: " in capsys.readouterr().out  # a verdict line per metric (tests/analysis/test_report.py)
    assert {sf.VERDICTS_MD, sf.VERDICTS_CSV, sf.VERDICTS_JSON, sf.VERDICTS_PNG} <= {p.name for p in out.iterdir()}
    assert main(["plot", str(out)]) == 0
    assert (out / sf.COMPARE_PNG).stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "figure:" in printed and f"verdict figure: {out / 'verdicts.png'}" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--out", "X", "--l", "0.5"], "l must be a finite real number >= 1, got 0.5"),
        (["train", "--out", "X", "--data", "imagenet"], "imagenet"),
        (["plot", "/nonexistent/runs"], "no such folder: /nonexistent/runs"),
        (["train", "--out", "X", "--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
        (["compare", "--out", "X", "--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["compare", "--out", "X", "--ls", "1,two"], "expected comma-separated numbers, got '1,two'"),
        (["compare", "--out", "X", "--margin", "test_acc=0"], "the margin of 'test_acc' must be a finite number > 0"),
        (["compare", "--out", "X", "--margin", "acc=1"], "expected METRIC=VALUE with METRIC one of test_loss,"),
        (["compare", "--out", "X", "--fit-ls", "1,3"], "--fit-ls must list at least 2 values of --ls (1, 2, 4, 8)"),
        (["lsr", "--out", "X", "--verify", "64,x"], "expected comma-separated integers, got '64,x'"),
        (["scale", "--out", "X", "--batch-sizes", "0,32"], "batch sizes must be integers >= 1, got '0,32'"),
        (["scale", "--out", "X", "--batch-sizes", ","], "--batch-sizes needs at least one batch size"),
        (["train", "--out", "X", "--noise-window", "3,1"], "noise_window must be START,END epochs"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, argv, message):
    argv = [a.replace("X", str(tmp_path / "x")) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "svag", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_lsr_baseline_and_sweep(tmp_path, capsys):
    out = tmp_path / "lsr"
    code = main(["lsr", "--out", str(out), "--verify", "32,64", "--epochs", "3", "--milestones", "2",
                 "--eval-every", "0.25", "--model", "mlp", "--norm", "bn", "--lr", "0.1", "--noise-fraction", "1",
                 *TINY])  # fmt: skip
    assert code == 0
    result = read_json(out / sf.LSR_JSON)
    assert result["B_star"] > 0 and result["baseline"]["batch_size"] == 16
    assert [r["batch_size"] for r in result["verdicts"]] == [16, 32, 64]
    assert (out / sf.LSR_PNG).is_file() and (out / sf.VERDICTS_CSV).is_file()
    assert "Predicted B*" in capsys.readouterr().out
    # a run of the table that did not complete makes the exit status 1 (it used to be 0)
    shutil.copytree(out / "B16", tmp_path / "diverged")
    write_json(tmp_path / "diverged" / "status.json", {"status": "diverged", "message": "loss became nan"})
    assert main(["lsr", "--out", str(tmp_path / "again"), "--baseline", str(tmp_path / "diverged")]) == 1
    assert "run B=16 is diverged" in capsys.readouterr().out


def test_parallel_jobs_report_a_failed_run_and_finish_the_others(tmp_path):
    from svag.config import RunConfig
    from svag.experiments.executors import Job, run_jobs

    good = RunConfig(data="teacher-student", n_train=128, n_test=64, batch_size=16, epochs=1.0, device="cpu")
    bad = RunConfig(data="fashion-mnist", data_root=str(tmp_path / "missing"), epochs=1.0, device="cpu")
    jobs = [
        Job(good, [0], [tmp_path / "a"], ["a"]),
        Job(bad, [0], [tmp_path / "b"], ["b"]),
        Job(good, [1], [tmp_path / "c"], ["c"]),
    ]
    statuses = run_jobs(jobs, 2, progress=False, log=lambda m: None)
    assert statuses["a"] == statuses["c"] == "completed"
    assert statuses["b"].startswith("failed: ") and "fashion-mnist" in statuses["b"]
    assert (tmp_path / "c" / "metrics.jsonl").is_file()


def test_compare_with_jobs_matches_sequential(tmp_path):
    args = ["--ls", "1,2", "--seeds", "1", "--epochs", "1", "--ensemble", "off", *TINY]
    assert main(["compare", "--out", str(tmp_path / "seq"), *args]) == 0
    assert main(["compare", "--out", str(tmp_path / "par"), "--jobs", "2", *args]) == 0
    for name in ("l1_seed0", "l2_seed0"):
        a = read_jsonl(tmp_path / "seq" / name / "metrics.jsonl")
        b = read_jsonl(tmp_path / "par" / name / "metrics.jsonl")
        assert len(a) == len(b)
        for x, y in zip(a, b):  # workers use 1 thread each: float sums may round differently
            for key in ("sde_time", "step", "train_loss", "test_acc", "weight_norm_sq", "grad_norm_sq"):
                assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-6), key


def test_preset_sets_the_paper_recipe_and_flags_override(tmp_path, monkeypatch):
    import svag.commands.train

    seen = []
    monkeypatch.setattr(svag.commands.train, "run", lambda args: seen.append(args) or 0)  # what main would run
    assert main(["train", "--out", "x", "--preset", "cifar10-preresnet32-gn", "--epochs", "2"]) == 0
    (args,) = seen
    assert (args.model, args.norm, args.lr, args.batch_size, args.weight_decay) == ("preresnet32", "gn", 0.8, 128, 5e-4)
    assert args.milestones == (80.0, 120.0) and args.scale_invariant and args.epochs == 2.0
    proc = subprocess.run(
        [sys.executable, "-m", "svag", "train", "--out", str(tmp_path / "r"), "--preset", "cifar10-vgg16",
         "--data-root", str(tmp_path / "nothing")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "cifar10" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_threads_option_sets_torch_threads(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert before == 1  # the suite's own (conftest): the option must change it
        assert main(["--threads", "2", "train", "--out", str(tmp_path / "r"), "--epochs", "0.25", *TINY]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert main(["--threads", "-1", "train", "--out", str(tmp_path / "s"), *TINY]) == 2
    assert "--threads must be >= 0, got -1" in capsys.readouterr().err


# -- issue 11: every bad input is refused before any work, with one line and status 2 -------------
SHORT = ["--epochs", "1", *TINY]
MULTI = ["--schedule", "multistep", "--milestones", "0.5"]
BAD_INPUTS = [
    # values that implied a run that never ends or exhausts the machine
    (["train", *SHORT, *MULTI, "--gamma", "1e9"], "gamma must be a decay factor in (0, 1], got 1000000000.0"),
    (["train", *SHORT, "--gamma", "0"], "gamma must be a decay factor in (0, 1], got 0.0"),
    (["train", *SHORT, "--n-train", "100000000000"], "n_train=100000000000 + n_test=128 samples of shape (20,)"),
    (["train", *SHORT, "--n-test", "100000000000"], "n_test=100000000000 samples of shape (20,)"),
    (["train", *SHORT, "--eval-every", "1e-7"], "eval_every=1e-07 gives 1e+07 evaluation records"),
    (["train", *SHORT, "--checkpoint-every", "1e-7"], "checkpoint_every=1e-07 gives 1e+07 checkpoints"),
    (["train", *SHORT, "--noise-every", "1e-7"], "noise_every=1e-07 gives 1e+07 m-batch G/N measurements"),
    (["train", *SHORT, "--noise-every", "0.5", "--noise-batches", "1"], "noise_batches must be 0"),
    (["train", *SHORT, "--noise-batches", "1000000000"], "got 1000000000"),
    (["train", *SHORT, "--warmup", "5"], "warmup must be shorter than the run (epochs=1), got 5"),
    (
        ["train", *TINY, "--epochs", "1e9", "--eval-every", "1e5", "--checkpoint-every", "0"],
        "this run takes 1.6e+10 optimizer steps (epochs=1e+09",
    ),
    (["train", *SHORT, "--l", "1e9"], "optimizer steps (epochs=1 × n_train/B = 256/16 × 1e+09 steps per SGD step"),
    (["train", *SHORT, "--width", "1e-9"], "width 1e-09 leaves a layer of 128 channels"),
    (["train", *SHORT, "--width", "1e7"], "width=1e+07 makes a layer of mlp too large to allocate"),
    (["train", *SHORT, "--width", "1e4"], "width=10000 gives mlp 1.64e+12 parameters"),
    (["train", *SHORT, "--batch-size", "100000"], "batch_size=100000 is larger than the training set (n_train=256)"),
    (["train", *SHORT, "--l", "2", "--batch-size", "200"], "batch_size=200: SVAG (l=2) draws two disjoint batches"),
    (["train", *SHORT, "--data", "fashion-mnist", "--n-train", "70000"], "fashion-mnist has 60000 train samples"),
    (["train", *SHORT, "--sampling", "bogus"], "sampling must be one of disjoint, replacement, got 'bogus'"),
    (["train", *SHORT, "--model", "bogus"], "got 'bogus'"),
    # duplicates and impossible sweeps
    (["compare", *SHORT, "--ls", "2,2", "--seeds", "1"], "values must be distinct, got '2,2'"),
    (["compare", *SHORT, "--ls", "2,2.0000001", "--seeds", "1"], "two runs of the sweep would share the folder"),
    (["compare", *SHORT, "--ls", "1,2", "--seeds", "1", "--batch-size", "1000"], "batch_size=1000 is larger"),
    (["scale", *SHORT, "--batch-sizes", "32,8000", "--seeds", "1"], "batch_size=8000 is larger than the training set"),
    (["scale", *SHORT, "--batch-sizes", "64,64", "--seeds", "1"], "values must be distinct, got '64,64'"),
    (["lsr", *SHORT, "--milestones", "0.8", "--model", "mlp", "--verify", "100000"], "batch_size=100000 is larger"),
    (["lsr", *SHORT, "--milestones", "0.8", "--verify", "64,64"], "values must be distinct, got '64,64'"),
    (["lsr", *SHORT, "--schedule", "cosine"], "schedule 'cosine', which has no constant-LR"),  # lsr's milestones go
    (["lsr", *SHORT, "--milestones", "0.8", "--warmup", "0.75"], "starts inside the warm-up (until 0.75)"),
    (["lsr", *SHORT, "--milestones", "0.8", "--tau", "nan"], "--tau must be a finite number > 0, got nan"),
    (["verify", "--l-max", "1000000000"], "l_max=1000000000, replicas=10000, em_substeps=32 would take about"),
    (["verify", "--replicas", "1000000000"], "replicas=1000000000"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, argv, message):
    """Status 2, one line naming the value on stderr, nothing written: the output folder is not
    created (these used to hang, be killed for memory, train then fail, or exit 0 or 1)."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) if "distinct" in message else contextlib.nullcontext() as exit_:
        code = main([*argv, "--out", str(out)])
    code = exit_.value.code if exit_ is not None else code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0] and list(tmp_path.iterdir()) == []


def _tree(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compare_resume_refuses_a_run_of_another_config_and_reads_only_its_own_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    base = ["--epochs", "0.5", "--seeds", "1", "--ensemble", "off", *TINY]
    assert main(["compare", "--out", str(out), "--ls", "1,2", *base]) == 0
    assert main(["train", "--out", str(out / "l4_seed0"), "--l", "4", "--lr", "0.05", "--epochs", "0.5", *TINY]) == 0
    before = _tree(out)
    capsys.readouterr()
    assert main(["compare", "--out", str(out), "--ls", "1,2,4", "--resume", *base]) == 2  # l4 has another lr
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "l4_seed0: config differs in ['lr']" in err[0], err
    assert _tree(out) == before
    assert main(["compare", "--out", str(out), "--ls", "1,2", "--resume", *base]) == 0  # l4 is not of this sweep
    rows = [r for r in (out / sf.SUMMARY_MD).read_text().splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 1", "| 2"]


def test_exit_codes_follow_one_rule(tmp_path, capsys):
    """1 when a run diverges (train: a RunDiverged error; lsr: a run of its table), documented in --help."""
    assert main(["train", "--out", str(tmp_path / "d"), "--lr", "1e6", "--epochs", "0.5", *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training loss became" in err[0] and "error:" not in err[0]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exit codes: 0 everything asked for was produced; 1 a run failed or diverged" in capsys.readouterr().out


def test_compare_says_which_sde_each_kind_of_run_simulates():
    from svag.commands.compare import describe
    from svag.config import RunConfig

    assert "Euler–Maruyama" in describe(RunConfig(gradient_noise="gaussian"))
    assert "SVAG of that SGD run" in describe(RunConfig())
    assert "η/(1-β)=1" in describe(RunConfig(momentum=0.9))
    assert "l² steps per original step" in describe(RunConfig(optimizer="adam"))
