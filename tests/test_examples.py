"""The examples/ folder runs, at a small size: a user's model and CSV data through the CLI plug-ins,
and the LSR test on a user's model from Python (the README shows them at their real size)."""

import csv
import json
import runpy
import sys

import pytest

from helpers import ROOT
from svag import sweepfolder as sf
from svag.cli import main
from svag.runfolder import RunFolder

EXAMPLES = ROOT / "examples"
OWN = EXAMPLES / "own_model_csv"


@pytest.fixture
def csv_data(tmp_path):
    runpy.run_path(str(OWN / "make_csv.py"))["main"]([str(tmp_path / "csv"), "--n-train", "200", "--n-test", "60"])
    return tmp_path / "csv"


def test_make_csv_writes_the_files(csv_data):
    with (csv_data / "train.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == [f"f{i}" for i in range(8)] + ["label"] and len(rows) == 201
    assert {r[-1] for r in rows[1:]} == {"0", "1", "2"}


def test_own_model_and_csv_data_through_the_cli(csv_data, tmp_path):
    plug = ["--model", f"{OWN}/model.py:make_model", "--data", f"{OWN}/data.py:load", "--data-root", str(csv_data)]
    small = ["--epochs", "2", "--lr", "0.2", "--batch-size", "16", "--no-progress"]
    assert main(["train", "--out", str(tmp_path / "one"), *plug, *small]) == 0
    run = RunFolder(tmp_path / "one").load()
    assert run.derived["input_shape"] == [8] and run.derived["num_classes"] == 3 and run.derived["n_train"] == 200
    assert run.records[-1]["train_loss"] < run.records[0]["train_loss"]  # it learns
    assert main(["compare", "--out", str(tmp_path / "cmp"), "--ls", "1,2", "--seeds", "1", *plug, *small]) == 0
    assert (tmp_path / "cmp" / sf.SUMMARY_MD).is_file() and (tmp_path / "cmp" / "l2_seed0" / "metrics.jsonl").is_file()


def test_lsr_from_python(tmp_path, monkeypatch, capsys):
    out = tmp_path / "lsr"
    argv = ["--out", str(out), "--n-train", "512", "--n-test", "128", "--epochs", "3", "--milestone", "2",
            "--verify", "64"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["lsr_from_python.py", *argv])
    runpy.run_path(str(EXAMPLES / "lsr_from_python.py"), run_name="__main__")
    printed = capsys.readouterr().out
    result = json.loads((out / sf.LSR_JSON).read_text())
    assert f"B* = {result['B_star']:.4g}" in printed and "B =   64: G/N" in printed
    assert RunFolder(out / "B32").config()["model"] == "python:make_model"


def test_hf_trainer_noise(tmp_path, monkeypatch, capsys):
    """The Hugging Face Trainer example at 8 steps: two logged intervals of micro-batch G/N and the prediction."""
    monkeypatch.chdir(tmp_path)
    module = runpy.run_path(str(EXAMPLES / "hf_trainer_noise.py"))
    noise = module["main"](["--steps", "8", "--logging-steps", "4", "--out", str(tmp_path / "hf")])
    out = capsys.readouterr().out
    assert noise.estimator == "microbatch" and [r["step"] for r in noise.records] == [4, 8]
    assert noise.prediction["count"] == 8 and noise.prediction["B_star"] > 0
    assert out.count("B_simple") == 2 and "svag: G/N =" in out
