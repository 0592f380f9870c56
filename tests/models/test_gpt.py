"""The character-level GPT (svag.models.gpt), its text (svag.data.text) and the example that trains it."""

import json
import math

import pytest
import torch

import svag
from helpers import repo_module
from svag.data.text import CharText, synthetic_text
from svag.models.gpt import CharGPT, GPTConfig


def _gpt(seed=0, **kw):
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, **kw)
    return CharGPT(cfg, generator=torch.Generator().manual_seed(seed))


def test_attention_is_causal_and_the_head_is_tied():
    model = _gpt()
    idx = torch.randint(11, (3, 8), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 11
    a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.equal(a[:, 5:], b[:, 5:])
    assert model.head.weight is model.tok.weight
    assert len(list(model.parameters())) == len({id(p) for p in model.parameters()})


def test_loss_is_the_mean_cross_entropy_over_all_positions():
    model = _gpt()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randint(11, (4, 8), generator=g), torch.randint(11, (4, 8), generator=g)
    logits, loss = model(x, y)
    expected = sum(torch.nn.functional.cross_entropy(logits[i, t], y[i, t]) for i in range(4) for t in range(8)) / 32
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    assert model(x)[1] is None
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head, got n_embd=10, n_head=3"):
        GPTConfig(vocab_size=5, n_embd=10, n_head=3)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        GPTConfig(vocab_size=5, dropout=1.0)


def test_text_is_deterministic_and_windows_are_shifted_by_one():
    text = synthetic_text(3000, data_seed=3)
    assert text == synthetic_text(3000, data_seed=3) != synthetic_text(3000, data_seed=4)
    assert len(text) == 3000 and set(".!? \n") & set(text)
    data = CharText(text, block_size=8)
    x, y = data.batch(5, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and torch.equal(x[:, 1:], y[:, :-1])
    assert "".join(data.chars[i] for i in x[0]) in text
    with pytest.raises(ValueError, match="fewer than block_size \\+ 2"):
        CharText("abc" * 10, block_size=8)


@pytest.mark.parametrize("make", [lambda p: svag.SVAG(p, lr=0.5, l=4), lambda p: svag.SVAGAdamW(p, lr=1e-2, l=2)])
def test_micro_batched_gpt_steps_equal_whole_batches(make):
    """The (logits, loss) model straight into train_step; 2 micro-batches per batch: same parameters (float64,
    rtol 1e-10 after 3 steps)."""
    data = CharText(synthetic_text(2000), block_size=8)
    cfg = GPTConfig(vocab_size=data.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=8)
    a, b = (CharGPT(cfg, generator=torch.Generator().manual_seed(0)) for _ in range(2))
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        b1, b2 = data.batch(6, gen), data.batch(6, gen)
        svag.train_step(opt_a, lambda batch: a(*batch), b1, b2)
        svag.train_step(opt_b, lambda batch: b(*batch), b1, b2, micro_batches=2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-13)


def test_the_example_runs_at_tiny_size_on_a_given_text(tmp_path, monkeypatch):
    """examples/char_gpt.py --size tiny --text FILE --out JSON: every family of runs, finite numbers."""
    module = repo_module("examples/char_gpt.py", "char_gpt")
    (tmp_path / "corpus.txt").write_text(synthetic_text(4000, data_seed=7), encoding="utf-8")
    out = module.main(["--size", "tiny", "--text", str(tmp_path / "corpus.txt"), "--out", str(tmp_path / "r.json")])
    saved = json.loads((tmp_path / "r.json").read_text())
    for family in ("sgd", "adamw", "sqrt_rule", "linear_rule", "clip_per_batch", "clip_amplified"):
        assert saved[family] and all(math.isfinite(r["val_loss"]) and math.isfinite(r["N"]) for r in saved[family])
    sgd = {r["l"]: r for r in out["sgd"]}
    assert sgd[4]["svag_steps"] == 4 * sgd[1]["svag_steps"]  # l steps per SGD step
    assert {r["l"]: r["svag_steps"] for r in out["adamw"]} == {1: 4, 2: 16}  # l² steps per AdamW step
    assert sgd[1]["sde_time"] == pytest.approx(sgd[4]["sde_time"], rel=1e-12)  # the same continuous time
    norms = {row["l"]: row for row in out["init_norms"]}
    assert norms[4]["amplified_norm"] > norms[1]["amplified_norm"] == pytest.approx(norms[1]["batch_norm"])
