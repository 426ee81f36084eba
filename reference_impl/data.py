"""A deterministic synthetic token dataset and a resumable, world-size-independent sampler.

The sampler walks a seeded global permutation of the dataset per epoch, one global batch per
optimizer step. Each global batch is split contiguously across ranks, and each rank's slice
contiguously into micro-batches. The sample order is therefore a function of (seed, epoch,
position) only, so a data position saved at one world size resumes exactly at another.

A :class:`ConsumptionLedger` records what a group of consecutive ranks (a node, a pair of ranks)
consumed: it is the reference trainer's ``per_node`` and ``per_group`` state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ckptspec.digest import json_digest


class SyntheticTokens:
    """``size`` sequences of ``seq_len + 1`` tokens: noisy arithmetic progressions mod ``vocab_size``.

    The whole dataset is generated from ``seed``, so it is identical in every process that
    builds it with the same arguments.
    """

    def __init__(
        self, seed: int, size: int, seq_len: int, vocab_size: int, name: str = "train"
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(vocab_size, (size, 1), generator=g)
        stride = torch.randint(1, 5, (size, 1), generator=g)
        noise = (torch.rand(size, seq_len + 1, generator=g) < 0.1) * torch.randint(
            vocab_size, (size, seq_len + 1), generator=g
        )
        self.tokens = (start + stride * torch.arange(seq_len + 1) + noise) % vocab_size
        self.identity = {
            "name": f"synthetic-arith-{name}",
            "seed": seed,
            "size": size,
            "seq_len": seq_len,
            "vocab_size": vocab_size,
        }

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def batch(self, ids: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets for the samples ``ids``, in that order."""
        rows = self.tokens[torch.tensor(ids, dtype=torch.long)]
        return rows[:, :-1].to(device), rows[:, 1:].to(device)


@dataclass
class DataPosition:
    """Where the sampler stands: the next global batch is batch ``batches_in_epoch`` of ``epoch``."""

    epoch: int = 0
    batches_in_epoch: int = 0
    samples_in_epoch: int = 0
    samples_seen: int = 0


class GlobalBatchSampler:
    """Yields global batches of sample ids from a seeded per-epoch permutation (drop-last)."""

    def __init__(self, dataset_size: int, global_batch_size: int, seed: int) -> None:
        if global_batch_size > dataset_size:
            raise ValueError(
                f"global batch size {global_batch_size} exceeds dataset size {dataset_size}"
            )
        self.dataset_size = dataset_size
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.batches_per_epoch = dataset_size // global_batch_size
        self.position = DataPosition()
        self._order: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(self.dataset_size, generator=g))
        return self._order[1]

    def next_global_batch(self) -> list[int]:
        """The next global batch's sample ids; advances the position by one batch."""
        pos = self.position
        start = pos.batches_in_epoch * self.global_batch_size
        ids = self._permutation(pos.epoch)[start : start + self.global_batch_size].tolist()
        pos.batches_in_epoch += 1
        pos.samples_in_epoch += len(ids)
        pos.samples_seen += len(ids)
        if pos.batches_in_epoch == self.batches_per_epoch:
            pos.epoch, pos.batches_in_epoch, pos.samples_in_epoch = pos.epoch + 1, 0, 0
        return ids

    @staticmethod
    def rank_micro_batches(
        global_batch: list[int], rank: int, world_size: int, accumulation_steps: int
    ) -> list[list[int]]:
        """This rank's contiguous slice of ``global_batch``, split into ``accumulation_steps`` micro-batches."""
        mine = GlobalBatchSampler.ranks_slice(global_batch, range(rank, rank + 1), world_size)
        per_micro = len(mine) // accumulation_steps
        return [mine[i * per_micro : (i + 1) * per_micro] for i in range(accumulation_steps)]

    @staticmethod
    def ranks_slice(global_batch: list[int], ranks: range, world_size: int) -> list[int]:
        """The samples of ``global_batch`` that the consecutive ``ranks`` consume, in order."""
        per_rank = len(global_batch) // world_size
        return global_batch[ranks.start * per_rank : ranks.stop * per_rank]

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.position)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = DataPosition(**state)


@dataclass
class ConsumptionLedger:
    """What the ``group_size`` consecutive ranks of group ``group`` consumed since ``since_step``:
    how many samples, and a running digest of their ids in order (``json_digest`` of the previous
    digest and each step's ids). Identical on every rank of the group; a resume at another
    grouping of ranks starts a new ledger (:meth:`restart`)."""

    group: int
    group_size: int
    since_step: int = 0
    samples: int = 0
    ids_digest: str = ""

    @classmethod
    def for_rank(cls, rank: int, group_size: int) -> ConsumptionLedger:
        """The empty ledger of ``rank``'s group of ``group_size`` ranks."""
        return cls(rank // group_size, group_size)

    @property
    def ranks(self) -> range:
        return range(self.group * self.group_size, (self.group + 1) * self.group_size)

    def record(self, global_batch: list[int], world_size: int) -> None:
        """Add the group's share of one global batch."""
        ids = GlobalBatchSampler.ranks_slice(global_batch, self.ranks, world_size)
        self.samples += len(ids)
        self.ids_digest = json_digest([self.ids_digest, ids])

    def restart(self, step: int) -> None:
        """Start an empty ledger at ``step`` (the groups changed, so the saved one is not this group's)."""
        self.since_step, self.samples, self.ids_digest = step, 0, ""

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore every field of a saved ledger (a missing or unknown key raises ``TypeError``)."""
        vars(self).update(asdict(ConsumptionLedger(**state)))


def shard_contiguous(n: int, rank: int, world_size: int) -> list[int]:
    """Ids ``range(n)`` split into ``world_size`` contiguous, nearly equal shards; this rank's shard."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (rank < extra)))
