"""A small character-level GPT: the language-model setting of P2's experiments, at CPU scale.

A decoder-only transformer (Radford et al. 2018; Vaswani et al. 2017) written for this project:
token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal multi-head
self-attention, then a 4×-wide GELU MLP, each a residual branch with dropout), a final LayerNorm,
and an output layer **tied** to the token embedding (Press & Wolf 2017). ``forward(idx, targets)``
returns ``(logits, loss)``, the convention of many language-model scripts, which
:func:`svag.train_step` and :func:`svag.measure_noise` accept as is (:mod:`svag.batch_loss`).

The loss is the **mean** cross-entropy over every position of every sequence of the batch, so a
batch of ``B`` sequences gives one minibatch gradient of batch size ``B`` (sequences are the
samples; positions of one sequence are not independent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from svag.task import CrossEntropy

__all__ = ["CharGPT", "GPTConfig"]

_LOSS = CrossEntropy()  # the mean over every position of every sequence (svag.task)


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a :class:`CharGPT` (defaults: ~27k parameters with a 30-character vocabulary)."""

    vocab_size: int  # characters in the vocabulary
    block_size: int = 32  # context length in characters
    n_layer: int = 2  # transformer blocks
    n_head: int = 2  # attention heads per block
    n_embd: int = 32  # width of the residual stream
    dropout: float = 0.0  # dropout probability in the residual branches and attention

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class _SelfAttention(nn.Module):
    """Causal multi-head self-attention: ``softmax(QKᵀ/√d_head + causal mask) V``, heads concatenated."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.out = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, c)))


class _Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = _SelfAttention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """The model (module docstring). ``model(idx)`` → ``(logits, None)``; ``model(idx, targets)`` →
    ``(logits, loss)`` with ``loss`` the mean cross-entropy over all ``B·T`` positions.

    Initialization: weights ``N(0, 0.02²)``, biases 0, LayerNorm ``(1, 0)``; the output projection of
    each residual branch is scaled by ``1/√(2·n_layer)`` so the residual stream's variance does not grow
    with depth. Call ``torch.manual_seed`` (or pass ``generator``) for a reproducible model.
    """

    def __init__(self, cfg: GPTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # weight tying
        self._init(generator)

    @torch.no_grad()
    def _init(self, generator: torch.Generator | None) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if module is self.head:
                    continue  # tied to self.tok
                std = residual_std if name.endswith(("attn.out", "mlp.2")) else 0.02
                module.weight.normal_(0.0, std, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        b, t = idx.shape
        if t > self.cfg.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.cfg.block_size}")
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln(x))
        if targets is None:
            return logits, None
        return logits, _LOSS.loss(logits.reshape(b * t, -1), targets.reshape(b * t))  # the task owns the loss
