"""Layer pruning of BERT-like SentenceTransformers: keep some encoder layers, drop the rest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sentence_transformers import SentenceTransformer
from torch import nn

from distillcse_st.errors import InputError
from distillcse_st.models import check_model_dir, load_model
from distillcse_st.training.model_cards import describe, model_name
from distillcse_st.training.outputs import finish, start


def parse_layers(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-2"`` (or a mix, ``"0-2,5"``) -> ``[0, 1, 2]`` / ``[0, 1, 2, 5]``."""
    layers: list[int] = []
    try:
        for part in text.split(","):
            start, _, end = part.strip().partition("-")
            layers.extend(range(int(start), int(end) + 1) if end else [int(start)])
    except ValueError:
        raise InputError(
            f"layers must be comma-separated indices or ranges like 0,1,2 or 0-2, got {text!r}"
        ) from None
    return layers


def encoder_layers(model: SentenceTransformer) -> tuple[nn.Module, nn.ModuleList]:
    """The transformers model of ``model``'s first module and its list of encoder layers."""
    auto_model = getattr(model[0], "auto_model", None)
    layers = getattr(getattr(auto_model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise InputError(
            f"layer pruning needs a BERT-like encoder (auto_model.encoder.layer), got {type(auto_model).__name__}"
        )
    return auto_model, layers


def prune_layers(model: SentenceTransformer, layers: Sequence[int]) -> SentenceTransformer:
    """Keep only the encoder layers ``layers`` (in that order) of ``model``, in place; returns ``model``.

    The embeddings, pooling and other modules are kept; ``config.num_hidden_layers`` is updated so
    that the saved model loads with the pruned depth.
    """
    auto_model, encoder = encoder_layers(model)
    count = len(encoder)
    if not layers:
        raise InputError("keep at least one layer")
    if len(set(layers)) != len(layers):
        raise InputError(f"layers are repeated: {list(layers)}")
    if bad := [layer for layer in layers if not 0 <= layer < count]:
        raise InputError(f"layers {bad} are out of range: the model has layers 0-{count - 1}")
    auto_model.encoder.layer = nn.ModuleList(encoder[layer] for layer in layers)
    auto_model.config.num_hidden_layers = len(layers)
    return model


def prune_model_dir(model_dir: str | Path, layers: str | Sequence[int], output: Path, overwrite: bool = False) -> Path:
    """Save to ``output`` the model of ``model_dir`` pruned to ``layers`` (a list or text like ``"0-2"``)."""
    layers = parse_layers(layers) if isinstance(layers, str) else list(layers)
    model_dir = check_model_dir(model_dir, "model")
    model = prune_layers(load_model(model_dir, "model"), layers)
    describe(model, f"{model_name(model_dir)} (encoder layers {', '.join(map(str, layers))})", model_dir)
    config = {"stage": "prune", "model": str(model_dir), "layers": layers}
    work = start(output, config, overwrite)
    model.save(str(work))
    finish(work, output)
    return output
