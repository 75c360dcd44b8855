"""The tiny test models are the same in every process (the multi-process tests compare runs across processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import _tokenizer

ROOT = Path(__file__).resolve().parents[1]
VOCAB = "import json; from tests.helpers import _tokenizer; print(json.dumps(_tokenizer(200, False).get_vocab()))"


def test_the_tiny_vocabulary_is_the_same_in_another_process() -> None:
    other = subprocess.run([sys.executable, "-c", VOCAB], cwd=ROOT, capture_output=True, text=True, check=True)
    vocab = _tokenizer(200, False).get_vocab()
    assert json.loads(other.stdout) == vocab and len(vocab) == 200
    assert _tokenizer(190, False).get_vocab() != vocab  # tiny_teacher_dir's own vocabulary
