"""Model cards of the saved models: names instead of local paths, and the base model's language and license.

A saved model's card is sentence-transformers' own, filled through ``model.model_card_data``: the title names
the models it comes from without local paths, language and license are the base model's (from its card), and
the DistillCSE citation comes with the loss.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import ModelCard
from sentence_transformers import SentenceTransformer

CARD_FILE = "README.md"
TRAINED_TAG = "generated_from_trainer"
"""The tag sentence-transformers' Trainer gives the cards it writes."""
DEFAULT_TITLE = "SentenceTransformer"
"""The title sentence-transformers gives the card of a model it knows nothing about: not a name."""

LANGUAGE = "en"
"""The language of a card whose base model's card names none: the DistillCSE recipe and its STS-B dev set are
English."""


def _card(directory: Path) -> ModelCard | None:
    """The model card in ``directory``, or None if it has none or an unreadable one."""
    path = directory / CARD_FILE
    try:
        return ModelCard.load(path) if path.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def model_name(directory: Path) -> str:
    """How cards name the model saved in ``directory``: the title of its card, else the directory's name.

    A card written by a training run is passed over (its title names that run's own bases), so that the stages
    of a self-training run are named by their directories, e.g. ``round0-simcse1``; an external model (e.g.
    all-MiniLM-L6-v2) or a pruned copy is named by its card's title.
    """
    card = _card(directory)
    if card is not None and TRAINED_TAG not in (card.data.tags or []):
        title = next((line[2:].strip() for line in card.text.splitlines() if line.startswith("# ")), "")
        if title and title != DEFAULT_TITLE:
            return title
    return directory.name


def describe(model: SentenceTransformer, title: str, base_dir: Path) -> None:
    """Fill the card of ``model``, derived from the model in ``base_dir``: ``title``, language and license."""
    card = _card(base_dir)
    data = model.model_card_data
    data.model_name = title
    data.set_language(card.data.language if card is not None and card.data.language else LANGUAGE)
    if card is not None and card.data.license:
        data.set_license(card.data.license)
    # sentence-transformers saves the card a model was loaded with unchanged unless a Trainer trained it: drop
    # it, since ``model`` is another model (e.g. a pruned copy) than the one that card describes.
    model._model_card_text = None
