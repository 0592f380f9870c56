"""The character-level GPT of ``examples/char_gpt.py`` as plug-ins of the runner (:mod:`svag.plugins`), so every
command that trains takes it: ``svag train``, ``compare``, ``lsr``, ``scale`` and ``cbs``.

    svag cbs --data examples/char_gpt_plugin.py:data --model examples/char_gpt_plugin.py:model \\
             --loss examples/char_gpt_plugin.py:NextCharacter --n-train 8192 --n-test 1024 --lr 0.5 --batch-size 32

A sample is a window of ``block_size`` characters of the generated prose of ``svag.data.text.synthetic_text``
(``x``) and the same window shifted by one character (``y``); its loss is the mean next-character
cross-entropy over the window's positions, its metric the share of positions whose next character is the
arg-max. The training set is ``n_train`` windows at uniform starts in the first 90% of the text, the test set
``n_test`` in the rest, both drawn with the data seed.
"""

import torch
import torch.nn.functional as F

from svag.data.text import CharText, synthetic_text
from svag.models.gpt import CharGPT, GPTConfig
from svag.task import Task

BLOCK = 32  # characters of context
CHARS = 60_000  # characters of generated prose


def data(n_train: int, n_test: int, seed: int):
    """``(train, test, vocab_size)``: windows of the generated text (the labels are the next characters)."""
    text = CharText(synthetic_text(CHARS, data_seed=seed), BLOCK)
    g = torch.Generator().manual_seed(seed)
    train = text.windows(torch.randint(text.n_windows("train"), (n_train,), generator=g), "train")
    test = text.windows(torch.randint(text.n_windows("val"), (n_test,), generator=g), "val")
    return train, test, text.vocab_size


class _Logits(torch.nn.Module):
    """The GPT's logits ``(batch, block, vocab)`` for ``idx (batch, block)``."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.gpt = CharGPT(GPTConfig(vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=width))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.gpt(idx.long())[0]  # the runner hands inputs over as floats: character ids, exact below 2^24


def model(num_classes: int, width: float = 1.0):
    """The 2-layer, 2-head GPT over ``num_classes`` characters, of width ``32·--width`` (the default 1: 27k
    parameters)."""
    return _Logits(num_classes, 2 * max(1, round(16 * width)))


class NextCharacter(Task):
    r"""Mean next-character cross-entropy over a window's positions, :math:`\ell_i = \frac1T \sum_t
    -\log\mathrm{softmax}(f(x_i)_t)_{y_{i,t}}`; metric ``acc``, the share of positions predicted right."""

    name = "next_character"
    metrics = ("acc",)

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.transpose(1, 2), target, reduction="none").mean(-1)

    def per_sample_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"acc": (output.argmax(-1) == target).to(output.dtype).mean(-1)}
