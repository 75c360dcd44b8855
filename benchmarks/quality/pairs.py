"""Table E's supervised data: (anchor, positive) pairs from SICK train ENTAILMENT pairs and STS-B train pairs
scored >= 4, and a triplet variant whose hard negative is a SICK CONTRADICTION partner of the anchor.

Pairs sharing a sentence (case-insensitively) with a test or selection set that is not built from these
training files (STS12-16, STS-B test, STS-B dev) are dropped: most STS-B train pairs scored >= 4 *are*
STS12-16 test pairs (STS-B was assembled from the SemEval STS data), and keeping them would train on the
out-of-domain tasks. MTEB's SICK-R holds all of SICK, its train pairs included, so it stays in domain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from common import STS_DIR

SICK_TRAIN = STS_DIR / "raw" / "sick2014" / "SICK_train.txt"
STSB_TRAIN = STS_DIR / "raw" / "stsbenchmark" / "sts-train.csv"
STSB_MIN_SCORE = 4.0
HELD_OUT_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "STSBenchmark-dev")

Pair = tuple[str, str]
Triplet = tuple[str, str, str]


def key(text: str) -> str:
    """A sentence as compared for duplicates and held-out overlap."""
    return text.strip().lower()


def read_sick(path: Path = SICK_TRAIN) -> list[Triplet]:
    """(sentence A, sentence B, entailment judgment) of every SICK row (tab-separated, with a header)."""
    with open(path, encoding="utf-8") as lines:
        rows = [line.rstrip("\n").split("\t") for line in lines][1:]
    return [(row[1].strip(), row[2].strip(), row[4]) for row in rows]


def read_stsb(path: Path = STSB_TRAIN, min_score: float = STSB_MIN_SCORE) -> list[Pair]:
    """The STS-B pairs scored ``>= min_score`` (tab-separated: score in column 5, the sentences in 6 and 7)."""
    with open(path, encoding="utf-8") as lines:
        rows = [line.rstrip("\n").split("\t") for line in lines]
    return [(row[5].strip(), row[6].strip()) for row in rows if float(row[4]) >= min_score]


def build_pairs(sick: Sequence[Triplet], stsb: Sequence[Pair], held_out: set[str]) -> tuple[list[Pair],
                                                                                           dict[str, Any]]:
    """SICK ENTAILMENT pairs then STS-B pairs, each unordered pair once, without identical sides and without a
    sentence in ``held_out`` (keys); the counts of what was dropped."""
    entailment = [(a, b) for a, b, judgment in sick if judgment == "ENTAILMENT"]
    seen: set[frozenset[str]] = set()
    pairs: list[Pair] = []
    dropped = {"duplicate": 0, "identical": 0, "held_out": 0}
    for a, b in [*entailment, *stsb]:
        pair = frozenset((key(a), key(b)))
        reason = ("identical" if len(pair) == 1 else "held_out" if pair & held_out
                  else "duplicate" if pair in seen else None)
        if reason:
            dropped[reason] += 1
            continue
        seen.add(pair)
        pairs.append((a, b))
    stats = {"sick_entailment": len(entailment), "stsb_min_score": len(stsb), "dropped": dropped, "pairs": len(pairs)}
    return pairs, stats


def build_triplets(pairs: Iterable[Pair], sick: Sequence[Triplet], held_out: set[str]) -> list[Triplet]:
    """(anchor, positive, hard negative) for every pair whose anchor is the premise (sentence A) of a SICK
    CONTRADICTION pair: its first contradiction partner that is neither the positive nor held out."""
    partners: dict[str, list[str]] = {}
    for a, b, judgment in sick:
        if judgment == "CONTRADICTION" and key(b) not in held_out:
            partners.setdefault(key(a), []).append(b)
    triplets = []
    for anchor, positive in pairs:
        negative = next((c for c in partners.get(key(anchor), []) if key(c) != key(positive)), None)
        if negative is not None:
            triplets.append((anchor, positive, negative))
    return triplets


def held_out_sentences(tasks: Sequence[str] = HELD_OUT_TASKS) -> set[str]:
    """The keys of every sentence of ``tasks``' evaluation files."""
    from .rows import sts_sentences

    return {key(text) for task in tasks for text in sts_sentences(f"{task}.jsonl")}


def table_e_data() -> tuple[list[Pair], list[Triplet], dict[str, Any]]:
    """Table E's pairs, triplets and the counts behind them, from the shared data."""
    sick, held_out = read_sick(), held_out_sentences()
    pairs, stats = build_pairs(sick, read_stsb(), held_out)
    triplets = build_triplets(pairs, sick, held_out)
    return pairs, triplets, {**stats, "triplets": len(triplets), "held_out_tasks": list(HELD_OUT_TASKS)}
