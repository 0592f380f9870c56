"""Character-level text for the language-model experiments: a generated corpus or a file, and its windows.

:func:`synthetic_text` writes text with learnable structure at several scales (spelling inside
words, a Markov chain over words, sentence punctuation), from a data seed (the same text for every
run, as other synthetic data sets here). :class:`CharText` encodes any text (a generated one or a
file the user gives) and draws batches of windows: a sample is a window of ``block_size + 1``
characters, input its first ``block_size``, targets its last ``block_size``.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import torch

__all__ = ["CharText", "synthetic_text"]

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def synthetic_text(n_chars: int, data_seed: int = 0, n_words: int = 60, branching: int = 4) -> str:
    """``n_chars`` characters of generated prose: ``n_words`` made-up words (1–3 consonant-vowel
    syllables), each followed by one of ``branching`` successors chosen at random (a sparse first-order
    Markov chain over words); sentences of 4–11 words end with ``.``, ``!`` or ``?`` and a space, every
    fourth sentence with a newline. Deterministic in ``data_seed``."""
    for name, value, low in (("n_chars", n_chars, 1), ("n_words", n_words, 2), ("branching", branching, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    g = torch.Generator().manual_seed(int(data_seed))

    def pick(seq: str) -> str:
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    words = []
    while len(words) < n_words:
        word = "".join(pick(_CONSONANTS) + pick(_VOWELS) for _ in range(int(torch.randint(1, 4, (1,), generator=g))))
        if word not in words:
            words.append(word)
    successors = torch.randint(n_words, (n_words, branching), generator=g)
    out: list[str] = []
    size, word, sentence, length, count = 0, 0, 0, 0, int(torch.randint(4, 12, (1,), generator=g))
    while size < n_chars:
        piece = words[word] if length else words[word].capitalize()
        length += 1
        if length == count:
            piece += pick(".!?") + ("\n" if sentence % 4 == 3 else " ")
            sentence, length, count = sentence + 1, 0, int(torch.randint(4, 12, (1,), generator=g))
        else:
            piece += " "
        out.append(piece)
        size += len(piece)
        word = int(successors[word, int(torch.randint(branching, (1,), generator=g))])
    return "".join(out)[:n_chars]


class CharText:
    """A text as character ids, split into a training and a validation part, with window batches.

    Args:
        text: the text, or a path to a UTF-8 file.
        val_fraction: the last fraction of the text kept for validation.
        block_size: characters of context per sample.
    """

    def __init__(self, text: str | Path, block_size: int, val_fraction: float = 0.1) -> None:
        if isinstance(text, Path):
            text = text.read_text(encoding="utf-8")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        cut = int(len(ids) * (1 - val_fraction))
        self.block_size = int(block_size)
        self.train, self.val = ids[:cut], ids[cut:]
        for name, part in (("training", self.train), ("validation", self.val)):
            if len(part) < self.block_size + 2:
                raise ValueError(
                    f"the {name} part has {len(part)} characters, fewer than block_size + 2 = {self.block_size + 2}: "
                    "give a longer text or a smaller block_size"
                )

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def n_windows(self, split: str = "train") -> int:
        """Number of distinct windows (samples) of a split."""
        return len(self._split(split)) - self.block_size

    def _split(self, split: str) -> torch.Tensor:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self.train if split == "train" else self.val

    def windows(self, starts: torch.Tensor, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``(x, y)`` of windows starting at ``starts``: ``x[i] = ids[s_i : s_i+T]``, ``y[i] = ids[s_i+1 :
        s_i+T+1]``."""
        ids = self._split(split)
        offsets = torch.arange(self.block_size)
        idx = starts[:, None] + offsets
        return ids[idx], ids[idx + 1]

    def batch(self, batch_size: int, generator: torch.Generator, split: str = "train") -> tuple[torch.Tensor, ...]:
        """``batch_size`` windows at independent uniform starts (sampling with replacement)."""
        starts = torch.randint(self.n_windows(split), (batch_size,), generator=generator)
        return self.windows(starts, split)
