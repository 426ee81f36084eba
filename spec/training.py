"""Records of training progress shared by trainers and the conformance suite."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepRecord:
    """What one optimizer step did on this rank."""

    step: int  # global step after this optimizer step (1 for the first)
    loss: float  # the loss this rank reports for the step
    lr: float  # learning rate used for the step
    samples: tuple[int, ...]  # global ids of the training samples this rank consumed in the step
