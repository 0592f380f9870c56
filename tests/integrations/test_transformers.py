"""svag inside the Hugging Face Trainer (svag.integrations.transformers), against a real `Trainer` on the CPU and
offline: a 2-layer GPT-2 built from `GPT2Config` (no weights downloaded) learns the characters of a text file the
test writes. The callback's G/N equals the project's estimators computed by hand on the same gradients (micro-batch
and extra-batch paths, exact up to float64 rounding), reaches `state.log_history` and a reporter through
`Trainer.log`, leaves the training as it was, and gives a positive B* interval; `import svag` never loads
transformers. Each training is a few steps of a ~10k-parameter model (about a second)."""

import os

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")

import math
import subprocess
import sys

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from svag.integrations.transformers import NoiseCallback
from svag.lsr import max_batch_interval, predict_from_window
from svag.noise import from_microbatches, from_pair, pool_window
from svag.seeds import generator

hf_logging.set_verbosity_error()  # the tiny config's token ids outside its 20-odd characters are warned about

BLOCK = 16  # characters per sequence (GPT-2's n_positions)
TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of light, "
    "it was the season of darkness, it was the spring of hope, it was the winter of despair.\n"
) * 4


class CharBlocks(torch.utils.data.Dataset):
    """Character-level blocks of a local text file: input ids and labels (the model shifts them)."""

    def __init__(self, path) -> None:
        text = path.read_text()
        self.vocab = sorted(set(text))
        ids = torch.tensor([self.vocab.index(c) for c in text])
        self.blocks = [ids[i : i + BLOCK] for i in range(0, len(ids) - BLOCK + 1, BLOCK)]

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


@pytest.fixture
def data(tmp_path) -> CharBlocks:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return CharBlocks(path)


def tiny_gpt2(vocab: int, dropout: float = 0.0, loss_type: str | None = "ForCausalLM") -> GPT2LMHeadModel:
    """A 2-layer GPT-2 of ~10k parameters. ``loss_type="ForCausalLM"`` makes the Trainer count the shifted targets
    the model averages over, so its loss is the model's mean; transformers 5.25 derives ``loss_type`` from the class
    name, which for ``GPT2LMHeadModel`` gives None: the Trainer then counts every label, and its loss is 15/16 of
    the model's at 16 tokens."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=BLOCK, n_embd=16, n_layer=2, n_head=2, resid_pdrop=dropout,
                     embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(cfg)
    model.loss_type = loss_type
    return model


class Recording(Trainer):
    """A Trainer that keeps every micro-batch it trains on (to recompute its gradient by hand)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.seen = [*getattr(self, "seen", []), {k: v.clone() for k, v in inputs.items()}]
        return super().training_step(model, inputs, num_items_in_batch)


class Snapshot(TrainerCallback):
    """The parameters at the beginning of optimizer step ``at``; and every dict a reporter's ``on_log`` receives."""

    def __init__(self, at: int) -> None:
        self.at, self.state, self.logs = at, None, []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.at:
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def train(data, tmp_path, *, accumulation: int, steps: int = 4, dropout: float = 0.0, callback: bool = True,
          at: int = 2, max_grad_norm: float = 1.0, loss_type: str | None = "ForCausalLM", drop_last: bool = True,
          **noise_kw):  # fmt: skip
    """Train the tiny GPT-2 for ``steps`` optimizer steps of 4 sequences per micro-batch, logging every step."""
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, gradient_accumulation_steps=accumulation,
        max_steps=steps, logging_steps=1, learning_rate=1e-2, max_grad_norm=max_grad_norm, report_to="none",
        save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, dataloader_drop_last=drop_last,
    )  # fmt: skip
    snap = Snapshot(at)
    model = tiny_gpt2(len(data.vocab), dropout, loss_type)
    trainer = Recording(model=model, args=args, train_dataset=data, callbacks=[snap])
    noise = NoiseCallback(trainer, verbose=False, **noise_kw) if callback else None
    trainer.train()
    return trainer, noise, snap


def grads_at(trainer, state, batches) -> list[list[torch.Tensor]]:
    """By hand: the gradient of each batch's mean loss at the parameters ``state``."""
    cfg = trainer.model.config
    model = tiny_gpt2(cfg.vocab_size, cfg.resid_pdrop, trainer.model.loss_type)
    model.load_state_dict(state)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return [list(torch.autograd.grad(model(**b).loss, params)) for b in batches]


def test_microbatch_estimator_equals_from_microbatches_by_hand(data, tmp_path):
    """gradient_accumulation_steps=2: step 2's estimate is from_microbatches of its two micro-batch gradients,
    each recomputed by hand at that step's parameters (the hooks see them before clipping: max_grad_norm binds)."""
    trainer, noise, snap = train(data, tmp_path, accumulation=2, max_grad_norm=0.1)
    assert noise.estimator == "microbatch" and noise.batch_size == 8
    assert [r["noise_count"] for r in noise.records] == [1, 1, 1, 1]  # one estimate per step, logged every step
    G, N = from_microbatches(grads_at(trainer, snap.state, trainer.seen[4:6]))
    rec = noise.records[2]
    assert rec["G"] == pytest.approx(G, rel=1e-6) and rec["N"] == pytest.approx(N, rel=1e-6)
    assert rec["B_simple"] == pytest.approx(8 * N / G, rel=1e-6)
    assert max(r["grad_norm"] for r in trainer.state.log_history if "grad_norm" in r) > 0.1  # clipping did bind


def test_extra_batch_estimator_equals_from_pair_by_hand(data, tmp_path):
    """gradient_accumulation_steps=1: step 2's estimate is from_pair of the step's batch gradient and that of the
    extra batch the noise_batches stream drew at step 2 (its third draw), both recomputed by hand."""
    trainer, noise, snap = train(data, tmp_path, accumulation=1, fraction=1.0, seed=5)
    assert noise.estimator == "pairs" and noise.batch_size == 4
    gen = generator(5, "noise_batches")
    idx = [torch.randint(len(data), (4,), generator=gen) for _ in range(3)][2]
    extra = {k: torch.stack([data[i][k] for i in idx.tolist()]) for k in ("input_ids", "labels")}
    G, N = from_pair(*grads_at(trainer, snap.state, [trainer.seen[2], extra]))
    assert noise.records[2]["G"] == pytest.approx(G, rel=1e-6)
    assert noise.records[2]["N"] == pytest.approx(N, rel=1e-6)


def test_the_pair_shares_the_trainers_loss_normalisation(data, tmp_path):
    """Without ``loss_type`` the Trainer divides a GPT-2's token sum by a count that is not the model's own (see
    tiny_gpt2): the extra batch must be divided alike, or the pair's two gradients differ by a factor and N̂ picks
    up G. A common factor c scales G and N by c² and leaves G/N as the model-mean gradients give it by hand."""
    trainer, noise, snap = train(data, tmp_path, accumulation=1, fraction=1.0, seed=5, loss_type=None)
    gen = generator(5, "noise_batches")
    idx = [torch.randint(len(data), (4,), generator=gen) for _ in range(3)][2]
    extra = {k: torch.stack([data[i][k] for i in idx.tolist()]) for k in ("input_ids", "labels")}
    G, N = from_pair(*grads_at(trainer, snap.state, [trainer.seen[2], extra]))
    assert noise.records[2]["gn_ratio"] == pytest.approx(G / N, rel=1e-6)


def test_the_extra_batch_leaves_the_training_as_it_was(data, tmp_path):
    """With dropout on, the weights trained with the callback (an extra forward and backward at every step) equal
    those trained without it: the global RNG is forked around the extra batch and .grad is not touched."""
    with_noise, noise, _ = train(data, tmp_path / "a", accumulation=1, dropout=0.1, fraction=1.0)
    plain, _, _ = train(data, tmp_path / "b", accumulation=1, dropout=0.1, callback=False)
    assert len(noise.records) == 4
    for p, q in zip(with_noise.model.parameters(), plain.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_a_short_last_step_of_an_epoch_is_not_measured(data, tmp_path, accumulation):
    """18 sequences in micro-batches of 4: the epoch's last micro-batch holds 2, so its step is skipped (its N
    belongs to another batch size); the next epoch is measured again."""
    data.blocks = data.blocks[:18]
    per_epoch = math.ceil(5 / accumulation)
    _, noise, _ = train(data, tmp_path, accumulation=accumulation, steps=per_epoch + 1, drop_last=False, fraction=1.0)
    assert sum(r["noise_count"] for r in noise.records) == per_epoch
    assert [r["step"] for r in noise.records] == [*range(1, per_epoch), per_epoch + 1]


def test_logged_through_trainer_log_to_history_and_reporters(data, tmp_path):
    """The keys reach state.log_history and a reporter registered before the callback, beside the Trainer's own
    loss entries (which Trainer.log's reset of should_log must not swallow); B* pools the logged intervals."""
    trainer, noise, snap = train(data, tmp_path, accumulation=2, steps=6)
    keys = {"svag/G", "svag/N", "svag/gn_ratio", "svag/B_simple", "svag/B_star", "svag/noise_count"}
    ours = [r for r in trainer.state.log_history if "svag/G" in r]
    assert len(ours) == 6 and all(keys <= r.keys() for r in ours)
    assert "svag/gn_ratio_se" not in ours[-1]  # one estimate per interval (logging_steps=1): no SE, not logged
    assert {"svag/B_star_low", "svag/B_star_high"} <= ours[-1].keys()  # the window's 6 estimates pooled
    assert [r["step"] for r in ours] == [1, 2, 3, 4, 5, 6]
    assert len([r for r in trainer.state.log_history if "loss" in r]) == 6  # the Trainer's own entries are kept
    reported = [r for r in snap.logs if "svag/G" in r]
    assert len(reported) == 6 and reported[-1]["svag/B_star"] == ours[-1]["svag/B_star"]
    pooled = pool_window(noise.records)
    assert ours[-1]["svag/B_star"] == pytest.approx(predict_from_window(8, pooled).B_star, rel=1e-12)
    assert noise.prediction["count"] == 6 and noise.prediction["B_star"] == ours[-1]["svag/B_star"]


def test_b_star_interval_is_positive_and_said_in_words(data, tmp_path):
    _, noise, _ = train(data, tmp_path, accumulation=2, steps=6)
    p = noise.prediction
    assert 0 < p["low"] < p["B_star"] < p["high"]
    assert "95% interval [" in noise.summary()
    noise.records = noise.records[:1]  # one estimate pooled: no SE, so no interval, and the line says why
    noise.prediction = noise._predict()
    assert math.isnan(noise.prediction["low"]) and "at least 2 are needed" in noise.summary()


def test_max_batch_interval_fieller():
    """Fieller's interval: positive, around B*, equal to the delta method's for small SEs, open above when G is
    not distinguishable from 0, unbounded when N is not, and nan without SEs."""
    win = dict(G=1.0, N=2.0, G_se=1e-4, N_se=1e-4, GN_cov=0.0, ratio_se=math.hypot(1e-4 / 2, 1e-4 / 4))
    low, high = max_batch_interval(8, win, tau=2.0)
    pred = predict_from_window(8, win, tau=2.0)
    assert pred.B_star == pytest.approx(32.0)
    assert (low, high) == pytest.approx((32 - 1.96 * pred.B_star_se, 32 + 1.96 * pred.B_star_se), rel=1e-6)
    low, high = max_batch_interval(8, dict(win, G_se=0.8), tau=2.0)
    assert 0 < low < 32 < high and high - 32 > 32 - low  # skewed up, where B* ± z·se would reach below 0
    assert max_batch_interval(8, dict(win, G_se=0.6))[1] == math.inf  # G within 1.96 SE of 0: lower bound only
    assert max_batch_interval(8, dict(win, N_se=1.5)) == (0.0, math.inf)
    assert all(math.isnan(v) for v in max_batch_interval(8, dict(win, G_se=math.nan)))


def test_refuses_what_it_cannot_measure(data, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1)
    trainer = Trainer(model=tiny_gpt2(len(data.vocab)), args=args, train_dataset=data)
    with pytest.raises(ValueError, match="fraction must be in"):
        NoiseCallback(trainer, fraction=0.0)
    with pytest.raises(ValueError, match="window must be"):
        NoiseCallback(trainer, window=(2, 1))
    with pytest.raises(ValueError, match=r"trainer must be a transformers\.Trainer"):
        NoiseCallback(object())


def test_import_svag_does_not_load_transformers():
    code = "import sys, svag, svag.integrations; print(sorted({'transformers', 'accelerate'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
