from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distillcse_st.errors import InputError
from distillcse_st.training.pruning import parse_layers, prune_layers, prune_model_dir
from tests.helpers import load


def test_parse_layers() -> None:
    assert parse_layers("0,1,2") == [0, 1, 2]
    assert parse_layers("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(InputError, match="comma-separated"):
        parse_layers("a")


def test_prune_keeps_the_listed_layers(tiny_model_dir: Path, tmp_path: Path) -> None:
    full = load(tiny_model_dir)
    kept = full[0].auto_model.encoder.layer[1].state_dict()
    output = prune_model_dir(tiny_model_dir, "1", tmp_path / "pruned")
    pruned = load(output)
    assert pruned[0].auto_model.config.num_hidden_layers == 1
    assert len(pruned[0].auto_model.encoder.layer) == 1
    for name, value in pruned[0].auto_model.encoder.layer[0].state_dict().items():
        torch.testing.assert_close(value, kept[name])
    assert pruned.encode(["A sentence."]).shape == (1, 32)
    assert pruned.max_seq_length == full.max_seq_length
    assert "# model (encoder layers 1)" in (output / "README.md").read_text(encoding="utf-8")  # not the base's card


@pytest.mark.parametrize(("layers", "message"), [([2], "out of range"), ([0, 0], "repeated"), ([], "at least one")])
def test_prune_errors(tiny_model_dir: Path, layers: list[int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        prune_layers(load(tiny_model_dir), layers)
