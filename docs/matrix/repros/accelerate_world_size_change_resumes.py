"""Reproduces: RESUME-3 (accelerate 1.15.0).

``Accelerator.save_state()`` writes one ``random_states_<rank>.pkl`` per rank but records no world
size; ``load_state()`` reads the file of its own rank only, so a checkpoint saved by two ranks
loads in one process, and rank 1's RNG state is dropped without a word.

Two gloo ranks (each with its own torch seed) train a step and save; this process, fresh and
alone, builds the same loop and calls ``load_state()``, recording the files read through
``torch.load`` and any warning or log record of level WARNING or above. Exit 0 and
``REPRODUCED`` when the load completes with neither an error nor a warning although
``random_states_1.pkl`` was never read; exit 1 and ``NOT REPRODUCED`` when it raises or warns.
"""

import logging
import os
import sys
import tempfile
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

SAVED_WORLD_SIZE = 2


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def build(directory: str) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer]:
    accelerator = Accelerator(
        cpu=True,
        project_config=ProjectConfiguration(
            project_dir=os.path.join(directory, "project"), automatic_checkpoint_naming=True
        ),
    )
    model = torch.nn.Linear(4, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=0.01))
    return accelerator, model, optimizer


def train_and_save(rank: int, directory: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(SAVED_WORLD_SIZE),
        LOCAL_WORLD_SIZE=str(SAVED_WORLD_SIZE),
    )
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(directory, 'rendezvous')}",
        rank=rank,
        world_size=SAVED_WORLD_SIZE,
    )
    accelerator, model, optimizer = build(directory)
    torch.manual_seed(100 + rank)
    accelerator.backward(model(torch.randn(2, 4)).square().mean())
    optimizer.step()
    accelerator.save_state()
    dist.destroy_process_group()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(train_and_save, args=(directory,), nprocs=SAVED_WORLD_SIZE)
        checkpoint = os.path.join(directory, "project", "checkpoints", "checkpoint_0")
        saved = sorted(name for name in os.listdir(checkpoint) if name.startswith("random_states"))

        read: list[str] = []
        real_load = torch.load

        def recording_load(f: object, *args: object, **kwargs: object) -> object:
            read.append(os.path.basename(str(f)))
            return real_load(f, *args, **kwargs)

        torch.load = recording_load
        recorder = Recorder()
        logging.getLogger().addHandler(recorder)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            accelerator, _, _ = build(directory)
            try:
                accelerator.load_state()
            except Exception as error:  # a refused resume is what the invariant asks for
                print(f"NOT REPRODUCED: load_state() raised {type(error).__name__}: {error}")
                return 1
    complaints = recorder.messages + [str(warning.message) for warning in caught]
    if complaints:
        print(f"NOT REPRODUCED: load_state() warned: {complaints}")
        return 1
    if "random_states_1.pkl" in read:
        raise RuntimeError("the single process read rank 1's RNG state")
    print(
        f"REPRODUCED: a checkpoint saved by {SAVED_WORLD_SIZE} ranks ({saved}) loaded in "
        f"{accelerator.num_processes} process with no error and no warning; load_state() read "
        f"{sorted(set(read))} and never random_states_1.pkl"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
