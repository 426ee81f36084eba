"""ckptspec's checkpoint library for PyTorch trainers (DDP, FSDP2): write, find and read
conformant checkpoints. Needs torch; ``ckptspec validate`` never imports it.

The front door is :class:`Checkpointer`: built on every rank from its :class:`DistContext`, run
directory, fingerprinted settings and run policy, it saves a trainer's state, named once as
components (:class:`Sharded` — :func:`model_component`, :func:`optimizer_component` —,
:class:`Replicated`, :class:`PerRank`, :class:`Grouped`), resumes it (discovery, every pre-load
check, every component read and verified before any is applied) and releases the run at
:meth:`~Checkpointer.close`. It is built from these parts, public for trainers that need them:

- a :class:`RunPolicy` for its run directory: the single-writer claim, discovery of committed
  checkpoints and ``latest``, best, retention, rewind and ``run.json``;
- a :class:`CommitProtocol` over that policy: ``save(SaveRequest)`` stages every file, agrees
  across ranks and commits atomically (``save_async`` / ``wait`` to write in the background);
- a :class:`CheckpointLoader`: ``plan(path)`` runs every pre-load check (the validator's reader,
  digests of the small files, config drift, world size); ``read_sharded`` reads a DCP component
  into fresh tensors, verifying each file's digest as it is read, and ``load_json`` and
  ``load_per_rank`` / ``load_group`` read the rest, all without unpickling anything. Read every sharded component
  before changing live state.

:func:`fingerprint` builds the manifest's config fingerprint from the settings that must not
drift; :class:`DistContext` says where the rank runs. ``conformance/examples/ddp_trainer.py``
is a complete trainer written against this API only.
"""

from ckptspec.checkpointing.checkpointer import (
    Checkpointer,
    Component,
    Grouped,
    PerRank,
    Replicated,
    Sharded,
    model_component,
    optimizer_component,
)
from ckptspec.checkpointing.commit import (
    CommitProtocol,
    GroupState,
    SaveError,
    SaveRequest,
    per_group_file,
    per_rank_file,
)
from ckptspec.checkpointing.distributed import DistContext, init_distributed
from ckptspec.checkpointing.fingerprint import differences, fingerprint
from ckptspec.checkpointing.loader import CheckpointLoader, LoadPlan
from ckptspec.checkpointing.run_policy import BestPolicy, CommittedWithWarning, RunPolicy

__all__ = [
    "BestPolicy",
    "CheckpointLoader",
    "Checkpointer",
    "CommitProtocol",
    "CommittedWithWarning",
    "Component",
    "DistContext",
    "GroupState",
    "Grouped",
    "LoadPlan",
    "PerRank",
    "Replicated",
    "RunPolicy",
    "SaveError",
    "SaveRequest",
    "Sharded",
    "differences",
    "fingerprint",
    "init_distributed",
    "model_component",
    "optimizer_component",
    "per_group_file",
    "per_rank_file",
]
