"""A tiny causal transformer with dropout, so that RNG state matters for training."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelArgs:
    """Architecture of :class:`TinyTransformer`; part of the config fingerprint."""

    vocab_size: int = 32
    dim: int = 16
    n_layers: int = 2
    n_heads: int = 2
    seq_len: int = 8
    dropout: float = 0.1


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads = args.n_heads
        self.qkv = nn.Linear(args.dim, 3 * args.dim)
        self.proj = nn.Linear(args.dim, args.dim)
        self.attn_dropout = nn.Dropout(args.dropout)
        mask = torch.full((args.seq_len, args.seq_len), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.n_heads) + self.causal_mask[:t, :t]
        weights = self.attn_dropout(scores.softmax(dim=-1))
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(args.dim)
        self.attn = Attention(args)
        self.norm2 = nn.LayerNorm(args.dim)
        self.mlp = nn.Sequential(
            nn.Linear(args.dim, 4 * args.dim), nn.GELU(), nn.Linear(4 * args.dim, args.dim)
        )
        self.dropout = nn.Dropout(args.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class TinyTransformer(nn.Module):
    """Token + position embeddings, ``n_layers`` pre-norm blocks, untied output head.

    ``forward(tokens[batch, seq])`` returns logits flattened to ``[batch * seq, vocab]``.
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.tok_emb = nn.Embedding(args.vocab_size, args.dim)
        self.pos_emb = nn.Embedding(args.seq_len, args.dim)
        self.emb_dropout = nn.Dropout(args.dropout)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = nn.LayerNorm(args.dim)
        self.head = nn.Linear(args.dim, args.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.emb_dropout(self.tok_emb(tokens) + self.pos_emb(positions))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).flatten(0, 1))
