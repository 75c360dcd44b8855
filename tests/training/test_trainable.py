"""Settings that cannot train are refused before a run starts, for library users as for the CLI.

The command-line table of every bad option is in tests/commands/test_commands.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset

from distillcse_st.errors import InputError
from distillcse_st.training.stages import train_simcse, training_arguments
from tests.helpers import CORPUS


def test_the_authors_defaults_can_train(tmp_path: Path) -> None:
    args = training_arguments(tmp_path / "out", None)
    assert args.per_device_train_batch_size == 64 and args.learning_rate == 3e-5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"per_device_train_batch_size": 1}, "batch size must be at least 2"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"adam_beta2": -0.5}, "Invalid beta parameter at index 1"),
    ],
)
def test_a_library_call_is_refused_before_it_starts(
    options: dict, message: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=message):
        train_simcse(tiny_model_dir, Dataset.from_dict({"text": CORPUS}), tmp_path / "out", None, options)
    assert not (tmp_path / "out.partial").exists()
