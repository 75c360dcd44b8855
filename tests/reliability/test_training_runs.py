"""Issue 6.4-6.6: resume from a Trainer checkpoint, portability of the saved model, determinism."""

from __future__ import annotations

import json
import os
import pickletools
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from tests.helpers import CORPUS, load
from tests.reliability.conftest import max_abs_diff, run_trainer, weights

STEPS = 4


class StopAfter(TrainerCallback):
    """Simulate a crash: end training after ``step`` steps (the checkpoint of that step is written first)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def test_same_seed_gives_the_same_model_twice(tiny_model_dir, teacher, tmp_path):
    """Dropout on, Group-P on, live teacher, shuffled data: two runs with seed 0 give identical weights."""
    first, _ = run_trainer(tiny_model_dir, teacher, tmp_path / "first", steps=STEPS)
    second, _ = run_trainer(tiny_model_dir, teacher, tmp_path / "second", steps=STEPS)
    first_weights, second_weights = weights(first), weights(second)
    assert all(torch.equal(first_weights[key], second_weights[key]) for key in first_weights)
    assert max_abs_diff(first_weights, weights(load(tiny_model_dir))) > 1e-4  # and they did train


def test_resumed_run_reaches_the_weights_of_an_uninterrupted_run(tiny_model_dir, teacher, tmp_path):
    """Stopped after 2 of 4 steps and resumed from checkpoint-2 == never stopped (dropout and Group-P on).

    The Trainer's checkpoint holds the optimizer, scheduler and RNG states; Group-P and dropout draw from
    torch's generator, restored from ``rng_state.pth``, so the resumed run draws what the other one drew.
    """
    checkpoints = {"save_strategy": "steps", "save_steps": 2}
    whole, _ = run_trainer(tiny_model_dir, teacher, tmp_path / "whole", steps=STEPS, **checkpoints)
    run_trainer(tiny_model_dir, teacher, tmp_path / "crashed", steps=STEPS, callbacks=[StopAfter(2)], **checkpoints)
    checkpoint = tmp_path / "crashed" / "checkpoint-2"
    assert checkpoint.is_dir() and not (tmp_path / "crashed" / "checkpoint-4").exists()
    resumed, trainer = run_trainer(tiny_model_dir, teacher, tmp_path / "crashed", steps=STEPS,
                                   resume_from_checkpoint=str(checkpoint), **checkpoints)
    assert trainer.state.global_step == STEPS
    assert max_abs_diff(weights(resumed), weights(whole)) <= 1e-6
    # Not trivially equal: the first half changed the weights, and so did the second.
    halfway = SentenceTransformer(str(checkpoint), device="cpu")
    assert max_abs_diff(weights(halfway), weights(whole)) > 1e-4


def pickled_globals(path: Path) -> list[str] | None:
    """Module paths of the globals a pickle (plain, or inside a torch zip) refers to; ``None`` if not a pickle."""
    streams = []
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            streams = [archive.read(name) for name in archive.namelist() if name.endswith(".pkl")]
    elif path.read_bytes()[:1] == b"\x80":
        streams = [path.read_bytes()]
    if not streams:
        return None
    found = []
    for stream in streams:
        strings = []
        for opcode, argument, _ in pickletools.genops(stream):
            if opcode.name in ("GLOBAL", "INST"):
                found.append(str(argument))
            elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(argument))
            elif opcode.name == "STACK_GLOBAL":
                found.append(" ".join(strings[-2:]))
    return found


def test_trained_model_is_portable(tiny_model_dir, other_vocab_teacher_dir, tmp_path):
    """Trained with a live teacher through the Trainer, saved: a plain ST model with no teacher and no plugin object.

    Loads with ``SentenceTransformer(path)`` in a fresh CPU process where ``distillcse_st`` cannot be imported,
    and gives the same embeddings (max abs diff <= 1e-6).
    """
    teacher = load(other_vocab_teacher_dir)  # 24-dim, its own vocabulary: any teacher weight would stand out
    student, trainer = run_trainer(tiny_model_dir, teacher, tmp_path / "run", steps=2)
    saved, trainer_saved = tmp_path / "saved", tmp_path / "trainer_saved"
    student.save(str(saved))
    trainer.save_model(str(trainer_saved))

    student_tensors = {name: tuple(tensor.shape) for name, tensor in student[0].auto_model.state_dict().items()}
    teacher_tensors = sum(p.numel() for p in teacher.parameters())
    for directory in (saved, trainer_saved):
        files = [path for path in directory.rglob("*") if path.is_file()]
        stored = {}
        for path in files:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as handle:
                    stored.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
        assert stored == student_tensors, "the weight files hold exactly the student's tensors"
        assert sum(torch.Size(shape).numel() for shape in stored.values()) != teacher_tensors
        assert not [path for path in files if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")
                    and path.name != "training_args.bin"]
        for path in files:
            if path.suffix == ".json":
                assert "distillcse" not in path.read_text(), f"{path.name} refers to the plugin"
            modules = pickled_globals(path)
            if modules is not None:  # only trainer.save_model's training_args.bin, a pickle of the training arguments
                assert path.name == "training_args.bin" and directory == trainer_saved
                assert not [module for module in modules if "distillcse" in module or "teacher" in module.lower()]
    assert not [path for path in saved.rglob("*") if path.is_file() and pickled_globals(path) is not None]

    texts = CORPUS[:6] + [""]
    expected = student.encode(texts, convert_to_tensor=True).cpu()
    script = (
        "import sys, json\n"
        "sys.modules['distillcse_st'] = None  # any import of the plugin now fails\n"
        "import torch\n"
        "from sentence_transformers import SentenceTransformer\n"
        "out = {}\n"
        f"for path in {[str(saved), str(trainer_saved)]!r}:\n"
        "    model = SentenceTransformer(path, device='cpu')\n"
        f"    out[path] = model.encode({texts!r}, convert_to_tensor=True).tolist()\n"
        "assert 'distillcse_st' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=str(tmp_path), check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    embeddings = json.loads(result.stdout.strip().splitlines()[-1])
    for path in (saved, trainer_saved):
        assert (torch.tensor(embeddings[str(path)]) - expected).abs().max().item() <= 1e-6
