"""Issue 6.3: two CPU processes (DDP, gloo) with gather_across_devices train like one process on the global batch.

The test launches the processes itself (``tests/reliability/ddp_worker.py`` with torchrun's environment
variables on 127.0.0.1 and a free port) and runs ``SentenceTransformerTrainer`` in each: the Trainer
sets up DDP through accelerate, exactly as under ``torchrun``. The student has dropout 0, so that the
two runs see the same student views; Group-P draws the keys of the whole global batch on every process
(from the same seed), so its permutations are those of the single process too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distillcse_st.similarity import (
    cosine_similarity_matrix,
    duplicate_mask,
    in_batch_distillation_loss,
    simcse_contrastive_loss,
)
from tests.helpers import build_tiny_model

WORKER = Path(__file__).with_name("ddp_worker.py")
TOLERANCE = 1e-5
# Adam divides by the root of the squared gradients, so float noise of the all-reduce in the smallest
# gradients reaches the weights amplified: 1.8e-5, once 1.7e-4, was seen after 3 steps whose updates are 1e-3
# each with Adam's default epsilon; the worker raises it to 1e-6 (ddp_worker.py)
WEIGHT_TOLERANCE = 1e-4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(world_size: int, student: Path, teacher: Path, out: Path, teacher_mode: str) -> dict:
    port = free_port()
    processes = []
    for rank in range(world_size):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        if world_size > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                       LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        command = [sys.executable, str(WORKER), "--student", str(student), "--teacher", str(teacher),
                   "--out", str(out), "--teacher-mode", teacher_mode]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    return json.loads((out / f"{teacher_mode}-world{world_size}.json").read_text())


@pytest.mark.parametrize("teacher_mode", ["live", "precomputed"])
def test_two_processes_with_gather_equal_one_process(tmp_path, teacher_mode):
    student = build_tiny_model(tmp_path / "student", seed=0, dropout=0.0)
    teacher = build_tiny_model(tmp_path / "teacher", seed=1)
    single = launch(1, student, teacher, tmp_path, teacher_mode)
    double = launch(2, student, teacher, tmp_path, teacher_mode)
    assert len(single["losses"]) == len(double["losses"]) == 3
    assert single["losses"] == pytest.approx(double["losses"], abs=TOLERANCE)
    a, b = load_file(single["weights"]), load_file(double["weights"])
    start = load_file(str(student / "model.safetensors"))
    assert max((a[key] - b[key]).abs().max().item() for key in a) <= WEIGHT_TOLERANCE
    # The weights did move: the equality is not that of two untouched models.
    moved = max((a[key] - start[key.split(".model.", 1)[1]]).abs().max().item() for key in a if ".model." in key)
    assert moved > 10 * WEIGHT_TOLERANCE


@pytest.mark.parametrize("group_p", [None, 0.5])
def test_row_slices_against_all_candidates_average_to_the_full_batch_loss(group_p):
    """The gather arithmetic without processes: each slice's anchors against all candidates, averaged."""
    torch.manual_seed(0)
    z1, z2, teacher_embeddings = torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 12)
    z1[6] = z1[1]  # a duplicate pair split across the two slices
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 1, 7])
    teacher = cosine_similarity_matrix(teacher_embeddings, teacher_embeddings)

    def loss(rows: slice) -> torch.Tensor:
        offset, count = rows.start, rows.stop - rows.start
        mask = duplicate_mask(groups, offset, count)
        torch.manual_seed(1)  # every process has the same generator state
        return simcse_contrastive_loss(z1[rows], z2, mask=mask, row_offset=offset) + in_batch_distillation_loss(
            z1[rows], teacher[rows], group_p=group_p, candidates=z1, mask=mask, row_offset=offset, total_rows=8)

    full = loss(slice(0, 8))
    halves = (loss(slice(0, 4)) + loss(slice(4, 8))) / 2
    assert halves.item() == pytest.approx(full.item(), abs=1e-6)
