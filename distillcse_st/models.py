"""Loading a SentenceTransformer from a local directory, with one-line input errors.

The training stages and the evaluation share this one loader: a directory that sentence-transformers loads
offline, either a saved SentenceTransformer (``modules.json``) or a plain transformers checkpoint
(``config.json``), to which sentence-transformers adds mean pooling.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distillcse_st.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def check_model_dir(path: str | Path, role: str = "model") -> Path:
    """``path`` as an absolute ``Path`` if it is a model directory (see the module), else an :class:`InputError`.

    ``role`` ("student", "teacher", ...) names the model in the error.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{role} directory not found: {path}")
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise InputError(
            f"{role} directory is not a SentenceTransformer or transformers model (no modules.json or config.json): "
            f"{path}"
        )
    return path.resolve()


def load_model(path: str | Path, role: str = "model", max_seq_length: int | None = None) -> SentenceTransformer:
    """The SentenceTransformer saved in the directory ``path``, loaded offline, optionally at ``max_seq_length``."""
    from sentence_transformers import SentenceTransformer

    path = check_model_dir(path, role)
    try:
        model = SentenceTransformer(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the {role} model {path}: {error}") from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model
