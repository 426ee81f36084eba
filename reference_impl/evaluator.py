"""Evaluation with symmetric collectives and sharding-independent, bitwise-reproducible metrics.

Guarantees (EVAL-1..3):

- Every rank issues exactly the same collectives whatever its shard (one all-gather of the
  full weights, one ``all_reduce``), so ranks with empty shards never hang.
- Each sample's loss is computed on its own (batch of one, eval mode, full unsharded weights),
  so it does not depend on which rank or which batch evaluated it.
- Per-sample sums are scattered into a float64 table indexed by sample id and summed with one
  ``all_reduce``: every entry has exactly one non-zero contributor, so the reduced table is
  exact, identical on every rank and independent of the sharding. The final sums are taken
  over that table in sample-id order, so the metrics are **bitwise** identical on every rank,
  for every sharding of the same sample set, and equal to a single-process evaluation.
  (Shards must be disjoint; a sample listed on two ranks counts twice.)
- A globally empty eval set yields ``None``, never zeros.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from ckptspec.reference_impl.data import SyntheticTokens
from ckptspec.reference_impl.model import ModelArgs, TinyTransformer

LOSS, TOKENS, CORRECT = 0, 1, 2


class Evaluator:
    """Evaluates a (possibly FSDP-sharded) model on shards of a fixed eval dataset."""

    def __init__(
        self, dataset: SyntheticTokens, model_args: ModelArgs, device: torch.device
    ) -> None:
        self.dataset = dataset
        self.device = device
        self._replica = TinyTransformer(model_args).to(device).eval()
        self.last_sample_count = 0  # samples behind the most recent metrics

    def evaluate(self, model: nn.Module, samples: Sequence[int]) -> dict[str, float] | None:
        """*Collective.* Global metrics (``loss``, ``perplexity``, ``accuracy``) over the union of
        every rank's ``samples``, or None when that union is empty."""
        self._load_replica(model)
        return self._global_metrics(self._local_sums(samples))

    def _load_replica(self, model: nn.Module) -> None:
        """Copy the full (all-gathered) weights into the local, unsharded eval replica."""
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
        self._replica.load_state_dict(full)

    @torch.no_grad()
    def _local_sums(self, samples: Sequence[int]) -> torch.Tensor:
        """A float64 table ``[3, len(dataset)]``: per-sample loss sum, token count, correct tokens."""
        table = torch.zeros(3, len(self.dataset), dtype=torch.float64, device=self.device)
        for sample in samples:
            inputs, targets = self.dataset.batch([sample], self.device)
            logits = self._replica(inputs)
            losses = F.cross_entropy(logits, targets.flatten(), reduction="none")
            correct = logits.argmax(-1) == targets.flatten()
            table[LOSS, sample] = losses.double().sum()
            table[TOKENS, sample] = targets.numel()
            table[CORRECT, sample] = correct.sum().double()
        return table

    def _global_metrics(self, table: torch.Tensor) -> dict[str, float] | None:
        """Reduce the per-sample table across ranks, then divide the global sums."""
        dist.all_reduce(table)
        table = table.cpu()
        self.last_sample_count = int((table[TOKENS] > 0).sum())
        loss_sum, tokens, correct = (float(row.sum()) for row in table)
        if tokens == 0:
            return None
        loss = loss_sum / tokens
        return {"loss": loss, "perplexity": math.exp(loss), "accuracy": correct / tokens}
