"""One process of the multi-process equivalence test (tests/reliability/test_multi_process.py).

Run with torchrun-style environment variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ...) for a
process of a distributed run, or without them for the single-process reference. It trains a tiny
student for a few steps with SentenceTransformerTrainer on CPU (DDP with the gloo backend when
distributed) and writes the logged losses and the final weights to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sentence_transformers import (  # noqa: E402
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from transformers import TrainerCallback  # noqa: E402

from distillcse_st import GroupPDistillLoss, add_teacher_embeddings  # noqa: E402
from tests.helpers import CORPUS  # noqa: E402


class RecordLosses(TrainerCallback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


def train(student_dir: str, teacher_dir: str, out: Path, teacher_mode: str, group_p: float | None,
          global_batch: int, steps: int) -> dict:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    student = SentenceTransformer(student_dir, device="cpu")
    teacher = SentenceTransformer(teacher_dir, device="cpu")
    # Two duplicated sentences, so that copies can meet in a global batch (possibly across processes).
    texts = list(CORPUS[: global_batch * steps - 2]) + [CORPUS[0], CORPUS[5]]
    dataset = Dataset.from_dict({"text": texts})
    if teacher_mode == "precomputed":
        dataset = add_teacher_embeddings(dataset, [teacher], show_progress_bar=False)
        teacher = None
    loss = GroupPDistillLoss(student, teacher=teacher, group_p=group_p, gather_across_devices=True)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out / f"run-{teacher_mode}-{os.environ.get('RANK', 'single')}"),
        per_device_train_batch_size=global_batch // world_size,
        max_steps=steps,
        learning_rate=1e-3,
        # Adam's default epsilon (1e-8) turns all-reduce float noise in near-zero gradients into steps of
        # up to lr (1.7e-4 apart was seen); 1e-6 damps those and leaves the real gradients' steps as they are
        adam_epsilon=1e-6,
        warmup_steps=0,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        use_cpu=True,
        dataloader_drop_last=True,
        ddp_backend="gloo" if world_size > 1 else None,
        disable_tqdm=True,
    )
    recorder = RecordLosses()
    trainer = SentenceTransformerTrainer(
        model=student, args=training_args, train_dataset=dataset, loss=loss, callbacks=[recorder]
    )
    trainer.train()
    weights = out / f"{teacher_mode}-world{world_size}.safetensors"
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({name: tensor.detach().contiguous() for name, tensor in student.state_dict().items()}, str(weights))
    return {"losses": recorder.losses, "weights": str(weights)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", required=True, help="a tiny student without dropout")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True, help="a directory for the results")
    parser.add_argument("--teacher-mode", choices=["live", "precomputed"], required=True,
                        help="live: vanilla KD, teacher embeddings gathered across processes; precomputed: "
                        "precomputed labels gathered across processes, with Group-P "
                        "(0.5: real shuffling in a batch of 8)")
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    group_p = None if args.teacher_mode == "live" else 0.5
    result = train(args.student, args.teacher, out, args.teacher_mode, group_p, args.global_batch, args.steps)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if int(os.environ.get("RANK", "0")) == 0:
        (out / f"{args.teacher_mode}-world{world_size}.json").write_text(json.dumps(result))
    if torch.distributed.is_initialized():
        # Without this, gloo's threads can outlive the interpreter and abort the process at exit.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
