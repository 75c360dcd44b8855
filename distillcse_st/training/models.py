"""Loading the SentenceTransformers a training run starts from, with one-line errors."""

from __future__ import annotations

from pathlib import Path

from sentence_transformers import SentenceTransformer

from distillcse_st.errors import InputError


def check_model_dir(path: str | Path, role: str) -> Path:
    """``path`` as an absolute ``Path`` if it is a saved SentenceTransformer directory, else an error."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{role} model directory not found: {path}")
    if not (path / "modules.json").is_file():
        raise InputError(f"{role} directory is not a SentenceTransformer model (no modules.json): {path}")
    return path.resolve()


def load_model(path: str | Path, role: str, max_seq_length: int | None = None) -> SentenceTransformer:
    """Load the SentenceTransformer saved in ``path`` (offline), optionally capping ``max_seq_length``."""
    path = check_model_dir(path, role)
    try:
        model = SentenceTransformer(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the {role} model {path}: {error}") from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model
