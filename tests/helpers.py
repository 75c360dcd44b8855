"""Test helpers: a tiny offline BERT SentenceTransformer and a small corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import BertConfig, BertModel, BertTokenizerFast

CORPUS = [
    "A man is playing a guitar on the stage.",
    "A woman is slicing an onion in the kitchen.",
    "The cat sleeps on the warm windowsill.",
    "Two dogs are running through the green field.",
    "The stock market fell sharply on Monday.",
    "Scientists discovered a new species of frog.",
    "The train to the city leaves at noon.",
    "A child is reading a book under a tree.",
    "Heavy rain caused flooding in the valley.",
    "The orchestra performed a symphony by Mozart.",
    "He bought fresh bread at the bakery this morning.",
    "The team won the championship after extra time.",
    "A plane landed safely despite the strong wind.",
    "She painted the old fence a bright blue color.",
    "The museum opened a new exhibition on ancient Egypt.",
    "Farmers harvested the wheat before the storm.",
    "A boy is riding a bicycle down the hill.",
    "The committee approved the new budget proposal.",
    "Students gathered in the hall for the lecture.",
    "The river flows slowly past the old mill.",
    "A chef is preparing pasta with tomato sauce.",
    "The moon was bright over the quiet village.",
    "An old man is feeding pigeons in the park.",
    "The company announced record profits this year.",
    "A girl is playing the piano in the living room.",
    "The bridge was closed for repairs last week.",
    "Volunteers cleaned the beach on Saturday morning.",
    "The doctor recommended more rest and water.",
    "A group of friends is hiking in the mountains.",
    "The new phone has a larger screen and better camera.",
    "Snow covered the roofs of the small town.",
    "The singer released her third album in spring.",
]


def _tokenizer(vocab_size: int, lowercase: bool) -> BertTokenizerFast:
    """A WordPiece tokenizer whose vocabulary is the same in every process.

    Not trained with ``tokenizers``' WordPieceTrainer: its ties between equally frequent merges fall in a
    hash order that changes from process to process, so every test session built a different tiny model.
    Here the vocabulary is the special tokens, every character of the corpus (alone and as ``##`` suffix),
    then the corpus' words, the most frequent first (ties alphabetically), up to ``vocab_size``.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(
        word
        for sentence in CORPUS
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(sentence))
    )
    characters = sorted({character for word in words for character in word})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *(f"##{c}" for c in characters)]
    frequent = sorted((word for word in words if len(word) > 1), key=lambda word: (-words[word], word))
    vocab += frequent[: max(vocab_size - len(vocab), 0)]
    tokenizer.model = models.WordPiece({token: row for row, token in enumerate(vocab)}, unk_token="[UNK]")
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=lowercase)


def build_tiny_model(
    path: Path,
    seed: int = 0,
    vocab_size: int = 200,
    hidden_size: int = 32,
    lowercase: bool = False,
    max_seq_length: int = 32,
    dropout: float = 0.1,
) -> Path:
    """Save a tiny random BERT with mean pooling in SentenceTransformer format under ``path``."""
    torch.manual_seed(seed)
    tokenizer = _tokenizer(vocab_size, lowercase)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    raw = path / "raw"
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden_size, pooling_mode="mean")], device="cpu")
    model.save(str(path / "model"))
    return path / "model"


def load(path: Path) -> SentenceTransformer:
    return SentenceTransformer(str(path), device="cpu")


def training_args(tmp_path: Path, **kwargs) -> SentenceTransformerTrainingArguments:
    """Trainer arguments for a few quick steps of a tiny model (batches of 4, no saving, no reporting)."""
    defaults = {
        "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4,
        "learning_rate": 1e-3, "report_to": [], "save_strategy": "no", "seed": 0, "disable_tqdm": True,
    }
    return SentenceTransformerTrainingArguments(**{**defaults, **kwargs})
