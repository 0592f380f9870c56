"""Per-position labels (a language model's next tokens) through the runner: the character GPT of
``examples/char_gpt_plugin.py`` as data, model and loss plug-ins; the checks before a run say what fits."""

import math

import pytest
import torch

from helpers import ROOT
from svag.build import check_fit
from svag.config import RunConfig
from svag.plugins import PluginError
from svag.records import read_jsonl
from svag.runner import run
from svag.task import CrossEntropy

PLUGIN = str(ROOT / "examples" / "char_gpt_plugin.py")
CFG = RunConfig(
    data=f"{PLUGIN}:data", model=f"{PLUGIN}:model", loss=f"{PLUGIN}:NextCharacter", n_train=64, n_test=32,
    lr=0.5, batch_size=16, epochs=1.0, eval_every=0.5, checkpoint_every=0.0, eval_train_samples=64,
    micro_batches=4, noise_source="microbatch",
)  # fmt: skip


def test_the_gpt_trains_on_next_characters_with_free_gn(tmp_path):
    """Records carry the mean next-character loss (below ln V after an epoch), its accuracy, and G/N from the
    micro-batches (4 steps measured)."""
    run(CFG, tmp_path / "gpt", progress=False)
    rows = read_jsonl(tmp_path / "gpt" / "metrics.jsonl")
    assert len(rows) == 3 and 0 <= rows[-1]["test_acc"] <= 1
    assert rows[0]["test_loss"] == pytest.approx(math.log(37), rel=0.05)  # ≈ uniform over the characters at init
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["noise_source"] == "microbatch" and rows[-1]["noise_count"] == 2


def test_check_fit_wants_a_logit_per_class_per_position():
    names = {"model": "m", "data": "d", "loss": "l"}
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 5))
    with pytest.raises(PluginError, match=r"to \(2, 5\); expected \(2, 8, 5\): one logit per class per label position"):
        check_fit(flat, CrossEntropy(), (8,), 5, names, label_shape=(8,))
    seq = torch.nn.Sequential(torch.nn.Unflatten(1, (8, 1)), torch.nn.Linear(1, 5))
    with pytest.raises(
        PluginError, match=r"loss 'l' fails on logits of shape \(4, 8, 5\) and int64 class labels of shape \(4, 8\)"
    ):
        check_fit(seq, CrossEntropy(), (8,), 5, names, label_shape=(8,))  # the built-in loss takes one class per sample
