"""Reproduces: RESUME-8 (transformers 5.23.0).

On a resume inside an epoch, ``Trainer._run_epoch`` skips the batches already trained, fetches
the first resumed step's batches and only then restores ``rng_state.pth``; Accelerate's
``DataLoaderShard`` has by then also fetched the following batch (it reads one batch ahead). A
data pipeline that draws from the global torch RNG (a collator's random augmentation; the
default ``DataCollatorForLanguageModeling`` masking does) builds those batches from the fresh
process's seeded RNG instead of the saved one, and the RNG state after the resumed steps
differs from the uninterrupted run's.

Three processes forked from this one (which has only imported modules): one trains 4 steps
uninterrupted; one trains with ``save_steps=2`` and is killed (SIGKILL) when the save of step 2
has returned; one resumes that run with ``resume_from_checkpoint=True`` to step 4. The collator
adds noise drawn with ``torch.rand``; a ``TrainerCallback`` records, at each step's end, the
noise the step trained on and ``torch.get_rng_state()``. Exit 0 and ``REPRODUCED`` when the
resumed run's step 3 or 4 differs from the uninterrupted run's in either; exit 1 and
``NOT REPRODUCED`` when both match.
"""

import os
import signal
import sys
import tempfile
from typing import Any

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging


class TinyConfig(PretrainedConfig):
    model_type = "tiny-noisy-linear"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.linear = torch.nn.Linear(4, 1)
        self.last_noise = torch.empty(0)
        self.post_init()

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.last_noise = noise
        prediction = self.linear(x + noise[:, None])
        return {"loss": F.mse_loss(prediction, labels), "logits": prediction}


def collate_with_noise(features: list[dict[str, Any]]) -> dict[str, Any]:
    batch = default_data_collator(features)
    batch["noise"] = torch.rand(len(features))  # a random augmentation, from the global RNG
    return batch


class Recorder(TrainerCallback):
    """Saves each step's noise and the CPU RNG state at its end to ``<record_dir>/<step>.pt``."""

    def __init__(self, record_dir: str, die_after_save: bool) -> None:
        self.record_dir, self.die_after_save = record_dir, die_after_save

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        record = {"noise": kwargs["model"].last_noise, "rng": torch.get_rng_state()}
        torch.save(record, os.path.join(self.record_dir, f"{state.global_step}.pt"))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.die_after_save:
            os.kill(os.getpid(), signal.SIGKILL)


def train(_rank: int, output_dir: str, record_dir: str, interrupt: bool, resume: bool) -> None:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    os.makedirs(record_dir, exist_ok=True)
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
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=samples,
        data_collator=collate_with_noise,
        callbacks=[Recorder(record_dir, die_after_save=interrupt)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume or None)


def run(output_dir: str, record_dir: str, interrupt: bool = False, resume: bool = False) -> None:
    # fork: the child inherits the imported modules instead of importing them again
    mp.start_processes(
        train,
        args=(output_dir, record_dir, interrupt, resume),
        nprocs=1,
        start_method="fork",
    )


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        uninterrupted = os.path.join(directory, "uninterrupted")
        resumed = os.path.join(directory, "resumed")
        run(os.path.join(directory, "run-a"), uninterrupted)
        try:
            run(os.path.join(directory, "run-b"), resumed, interrupt=True)
        except mp.ProcessExitedException as exited:
            if exited.signal_name != "SIGKILL":
                raise
        else:
            raise RuntimeError("the interrupted run was not killed after its save")
        run(os.path.join(directory, "run-b"), resumed, resume=True)
        expected, got = (
            {step: torch.load(os.path.join(folder, f"{step}.pt")) for step in (1, 2, 3, 4)}
            for folder in (uninterrupted, resumed)
        )
    noise_differs = [s for s in (3, 4) if not torch.equal(got[s]["noise"], expected[s]["noise"])]
    rng_differs = [s for s in (3, 4) if not torch.equal(got[s]["rng"], expected[s]["rng"])]
    if not noise_differs and not rng_differs:
        print(
            "NOT REPRODUCED: the resumed run trained steps 3 and 4 on the uninterrupted run's "
            "noise and holds its CPU RNG state after them"
        )
        return 1
    replayed = [s for s in (3, 4) if torch.equal(got[s]["noise"], expected[s - 2]["noise"])]
    print(
        f"REPRODUCED: the resumed run's batch noise differs from the uninterrupted run's at "
        f"steps {noise_differs} (steps {replayed} replayed the noise of steps "
        f"{[s - 2 for s in replayed]}: drawn from the fresh process's seed) and its CPU RNG "
        f"state differs after steps {rng_differs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
