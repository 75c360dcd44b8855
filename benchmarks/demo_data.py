"""Build the demo's packaged STS-B files from the shared data: in-domain training sentences and a test set.

Only sources whose licence allows redistribution are kept (per source in the STS Benchmark's
``LICENSE.txt``; see ``distillcse_st/data/README.md``): image captions (PASCAL VOC, CC BY-SA), news
headlines (European Media Monitor, reuse with acknowledgement) and, in the test split, SNLI
(``track5.en-en``, CC BY-SA 4.0). MSRpar and MSRvid (Microsoft Research's licence agreement), DEFT
(no licence given) and the Stack Exchange answers (attribution per author that a sentence file cannot
carry) stay out. Training sentences that also occur in STS-B dev or test or in SICK-R are dropped
(case-insensitively), as in table B, so the test score stays held out.

    python benchmarks/demo_data.py        # writes distillcse_st/data/stsb_train_sentences.txt.gz, stsb_test.jsonl.gz
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
DATA = BENCHMARKS.parent / "distillcse_st" / "data"
STS_DIR = BENCHMARKS.parents[1] / "shared" / "data" / "sts"
TRAIN_SUBSETS = ("images", "headlines")
TEST_SUBSETS = ("images", "headlines", "track5.en-en")
HELD_OUT = ("STSBenchmark-dev.jsonl", "STSBenchmark.jsonl", "SICK-R.jsonl", "SICK-R-test.jsonl")
TRAIN_FILE = "stsb_train_sentences.txt.gz"
TEST_FILE = "stsb_test.jsonl.gz"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pair_sentences(rows: Iterable[dict]) -> list[str]:
    return [row[key].strip() for row in rows for key in ("sentence1", "sentence2")]


def train_sentences(train: list[dict], held_out: Iterable[str]) -> list[str]:
    """Unique sentences of the licensed training subsets, in file order, minus the held-out ones."""
    excluded = {sentence.lower() for sentence in held_out}
    kept = pair_sentences(row for row in train if row["subset"] in TRAIN_SUBSETS)
    return [sentence for sentence in dict.fromkeys(kept) if sentence.lower() not in excluded]


def test_pairs(test: list[dict]) -> list[dict]:
    """The test pairs of the licensed subsets, unchanged."""
    return [row for row in test if row["subset"] in TEST_SUBSETS]


def write_gzip(path: Path, text: str) -> str:
    """Write ``text`` gzipped with a fixed timestamp (the same bytes on every run); returns its sha256."""
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main() -> None:
    held_out = [sentence for name in HELD_OUT for sentence in pair_sentences(read_jsonl(STS_DIR / name))]
    sentences = train_sentences(read_jsonl(STS_DIR / "STSBenchmark-train.jsonl"), held_out)
    pairs = test_pairs(read_jsonl(STS_DIR / "STSBenchmark.jsonl"))
    train_sha = write_gzip(DATA / TRAIN_FILE, "".join(sentence + "\n" for sentence in sentences))
    test_sha = write_gzip(DATA / TEST_FILE, "".join(json.dumps(pair) + "\n" for pair in pairs))
    print(f"{TRAIN_FILE}: {len(sentences)} sentences, sha256 of the text {train_sha}")
    print(f"{TEST_FILE}: {len(pairs)} pairs, sha256 of the text {test_sha}")


if __name__ == "__main__":
    main()
