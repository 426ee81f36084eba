"""Reproduces: RESUME-8 (accelerate 1.15.0).

``Accelerator.save_state()`` stores the CPU RNG state and ``load_state()`` restores it exactly.
A mid-epoch resume, done as documented (``load_state()``, then ``skip_first_batches``), then
creates a new iterator of the prepared ``DataLoader``; when the loader has no ``generator`` of its
own, creating the iterator draws a value (torch's ``_base_seed``) from that restored global RNG,
whereas the uninterrupted run drew it at the start of the epoch, before the save. Every later
draw (dropout) is shifted, and the resumed run's losses differ from the uninterrupted run's.

A child process trains 3 steps of a model with dropout on a shuffled loader prepared with
``use_seedable_sampler=True``, saves, and records the next step's batch, RNG state and loss; this
process, fresh, builds the same loop, calls ``load_state()`` and
``skip_first_batches(loader, 3)``, and takes the same step. Exit 0 and ``REPRODUCED`` when the
resumed step's RNG state or loss differs from the uninterrupted one; exit 1 and
``NOT REPRODUCED`` when both match.
"""

import os
import sys
import tempfile

import torch
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, TensorDataset

STEPS_BEFORE_SAVE = 3


def build(
    directory: str,
) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer, DataLoader]:
    accelerator = Accelerator(
        cpu=True,
        project_config=ProjectConfiguration(
            project_dir=directory, automatic_checkpoint_naming=True
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(0)
    data = TensorDataset(torch.arange(16), torch.randn(16, 4), torch.randn(16, 1))
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    model, optimizer, loader = accelerator.prepare(
        model,
        torch.optim.AdamW(model.parameters(), lr=0.01),
        DataLoader(data, batch_size=2, shuffle=True),
    )
    return accelerator, model, optimizer, loader


def train_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
) -> float:
    loss = torch.nn.functional.mse_loss(model(x), y)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def uninterrupted(_rank: int, directory: str) -> None:
    accelerator, model, optimizer, loader = build(directory)
    batches = iter(loader)
    for _ in range(STEPS_BEFORE_SAVE):
        _, x, y = next(batches)
        train_step(accelerator, model, optimizer, x, y)
    rng_at_save = torch.get_rng_state()
    accelerator.save_state()
    ids, x, y = next(batches)
    rng_at_step = torch.get_rng_state()
    loss = train_step(accelerator, model, optimizer, x, y)
    torch.save(
        {"rng_at_save": rng_at_save, "ids": ids, "rng_at_step": rng_at_step, "loss": loss},
        os.path.join(directory, "uninterrupted.pt"),
    )


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(uninterrupted, args=(directory,), nprocs=1)
        expected = torch.load(os.path.join(directory, "uninterrupted.pt"))

        accelerator, model, optimizer, loader = build(directory)
        accelerator.load_state()
        rng_restored = torch.equal(torch.get_rng_state(), expected["rng_at_save"])
        batches = iter(accelerator.skip_first_batches(loader, STEPS_BEFORE_SAVE))
        ids, x, y = next(batches)
        rng_at_step = torch.get_rng_state()
        loss = train_step(accelerator, model, optimizer, x, y)

    # One int64 draw from the restored state: what torch's DataLoader iterator takes for its
    # _base_seed when the loader has no generator.
    one_draw = torch.Generator()
    one_draw.set_state(expected["rng_at_save"])
    torch.empty((), dtype=torch.int64).random_(generator=one_draw)
    shifted_by_one_draw = torch.equal(rng_at_step, one_draw.get_state())

    same_batch = torch.equal(ids, expected["ids"])
    same_rng = torch.equal(rng_at_step, expected["rng_at_step"])
    observed = (
        f"CPU RNG restored by load_state(): {rng_restored}; next batch {ids.tolist()} "
        f"(uninterrupted {expected['ids'].tolist()}); RNG at the resumed step equal to the "
        f"uninterrupted run's: {same_rng} (it is the restored state advanced by one int64 draw: "
        f"{shifted_by_one_draw}); loss {loss:.6f} (uninterrupted {expected['loss']:.6f})"
    )
    if same_batch and same_rng and loss == expected["loss"]:
        print(f"NOT REPRODUCED: {observed}")
        return 1
    print(f"REPRODUCED: {observed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
