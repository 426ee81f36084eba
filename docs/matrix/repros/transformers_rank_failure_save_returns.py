"""Reproduces: COMMIT-4 (transformers 5.23.0).

In ``Trainer._save_checkpoint`` on two ranks, rank 0 writes ``checkpoint-<step>/`` (model,
optimizer, scheduler, ``rng_state_0.pth``, ``trainer_state.json``) and every rank writes its
own ``rng_state_<rank>.pth``; there is no collective after the writes, so a rank whose write
fails raises alone while rank 0's save returns, and the folder stays behind as the latest
checkpoint without that rank's file.

Two gloo ranks (forked, ``file://`` rendezvous, adopted by the Trainer with ``use_cpu=True``)
train one step with ``save_steps=1``; on rank 1 ``torch.save`` raises ``OSError(EIO)`` for
``rng_state_1.pth``. Rank 0 leaves ``train()`` from ``on_save`` (called when its save has
returned; otherwise it would wait in the final ``store_flos`` all-gather, which rank 1 never
joins), and both ranks meet at a barrier. Exit 0 and
``REPRODUCED`` when rank 0's save returned while rank 1's raised and the folder that
``get_last_checkpoint`` picks lacks ``rng_state_1.pth``; exit 1 and ``NOT REPRODUCED`` when the
failure reached rank 0 or the folder is gone.
"""

import errno
import json
import os
import sys
import tempfile
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

WORLD_SIZE = 2


class TinyConfig(PretrainedConfig):
    model_type = "tiny-linear"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.linear = torch.nn.Linear(4, 1)
        self.post_init()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.linear(x)
        return {"loss": F.mse_loss(prediction, labels), "logits": prediction}


class SaveReturned(Exception):
    """Raised from ``on_save`` to leave ``train()`` once the save has returned."""


class StopAfterSave(TrainerCallback):
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise SaveReturned


def fail_rank_1_rng_file() -> None:
    real_save = torch.save

    def failing_save(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.basename(str(f)) == "rng_state_1.pth":
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(f))
        real_save(obj, f, *args, **kwargs)

    torch.save = failing_save


def train_one_step(rank: int, directory: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
    )
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(directory, 'rendezvous')}",
        rank=rank,
        world_size=WORLD_SIZE,
    )
    if rank == 1:
        fail_rank_1_rng_file()
    torch.manual_seed(0)  # the same initial weights on both ranks
    samples = [{"x": torch.randn(4), "labels": torch.randn(1)} for _ in range(16)]
    args = TrainingArguments(
        output_dir=os.path.join(directory, "output"),
        max_steps=1,
        save_steps=1,
        per_device_train_batch_size=2,
        use_cpu=True,
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=samples,
        callbacks=[StopAfterSave()],
    )
    trainer.remove_callback(PrinterCallback)
    try:
        trainer.train()
        outcome = {"save": "returned without on_save"}
    except SaveReturned:
        outcome = {"save": "returned"}
    except OSError as error:
        outcome = {"save": f"raised OSError({errno.errorcode[error.errno]})"}
    with open(os.path.join(directory, f"outcome-{rank}.json"), "w") as file:
        json.dump(outcome, file)
    dist.barrier()
    dist.destroy_process_group()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        # fork: the ranks inherit the imported modules instead of importing them again
        mp.start_processes(
            train_one_step, args=(directory,), nprocs=WORLD_SIZE, start_method="fork"
        )
        outcomes = []
        for rank in range(WORLD_SIZE):
            with open(os.path.join(directory, f"outcome-{rank}.json")) as file:
                outcomes.append(json.load(file))
        latest = get_last_checkpoint(os.path.join(directory, "output"))
        files = sorted(os.listdir(latest)) if latest else []
    if not outcomes[1]["save"].startswith("raised"):
        raise RuntimeError(f"the injected failure on rank 1 did not fire: {outcomes[1]}")
    if outcomes[0]["save"] == "returned" and latest and "rng_state_1.pth" not in files:
        print(
            f"REPRODUCED: rank 1's save {outcomes[1]['save']} while rank 0's save returned "
            f"normally; get_last_checkpoint picks {os.path.basename(latest)}, which lacks "
            f"rng_state_1.pth: {files}"
        )
        return 0
    print(f"NOT REPRODUCED: rank 0's save {outcomes[0]['save']}; latest checkpoint {files}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
