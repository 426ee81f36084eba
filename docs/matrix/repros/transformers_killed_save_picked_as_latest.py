"""Reproduces: COMMIT-2 (transformers 5.23.0).

``Trainer._save_checkpoint`` creates ``<output_dir>/checkpoint-<step>/`` and then writes the
model, optimizer, scheduler, RNG and trainer-state files into it in place.
``train(resume_from_checkpoint=True)`` resumes the folder that
``transformers.trainer_utils.get_last_checkpoint`` picks: the highest-numbered
``checkpoint-<n>`` directory, complete or not.

A process forked from this one trains 2 steps with ``save_steps=1`` and is killed (SIGKILL)
right after the save of step 2 created ``checkpoint-2/``. This process, which has only imported
modules, then builds the same Trainer and calls ``train(resume_from_checkpoint=True)``. Exit 0 and ``REPRODUCED`` when that resume fails
although resuming ``checkpoint-1`` explicitly succeeds; exit 1 and ``NOT REPRODUCED`` when the
resume skips the incomplete folder.
"""

import os
import signal
import sys
import tempfile

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging


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


def make_trainer(output_dir: str) -> Trainer:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "x": torch.randn(4, generator=generator),
            "labels": torch.randn(1, generator=generator),
        }
        for _ in range(16)
    ]
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=2,
        save_steps=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(model=TinyModel(TinyConfig()), args=args, train_dataset=samples)
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_and_die(_rank: int, output_dir: str) -> None:
    real_makedirs = os.makedirs

    def makedirs_then_die(name: str, *args: object, **kwargs: object) -> None:
        real_makedirs(name, *args, **kwargs)
        if os.path.basename(name) == "checkpoint-2":
            os.kill(os.getpid(), signal.SIGKILL)

    os.makedirs = makedirs_then_die
    make_trainer(output_dir).train()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as output_dir:
        try:
            # fork: the child inherits the imported modules instead of importing them again
            mp.start_processes(train_and_die, args=(output_dir,), nprocs=1, start_method="fork")
        except mp.ProcessExitedException as exited:
            if exited.signal_name != "SIGKILL":
                raise
        else:
            raise RuntimeError("the save of step 2 was not killed")
        picked = os.path.basename(get_last_checkpoint(output_dir) or "")
        partial = sorted(os.listdir(os.path.join(output_dir, "checkpoint-2")))
        try:
            make_trainer(output_dir).train(resume_from_checkpoint=True)
        except Exception as error:  # any failure of the resume is the finding
            failure = f"{type(error).__name__}: {error}".replace(output_dir, "<output_dir>")
        else:
            print(f"NOT REPRODUCED: train(resume_from_checkpoint=True) resumed {picked}")
            return 1
        make_trainer(output_dir).train(
            resume_from_checkpoint=os.path.join(output_dir, "checkpoint-1")
        )
    print(
        f"REPRODUCED: get_last_checkpoint picked {picked} (contents {partial}) left by the "
        f"killed save; train(resume_from_checkpoint=True) raised {failure}; resuming "
        "checkpoint-1 succeeds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
