"""The quality benchmark's settings, tables, rows and losses (no training, no I/O beyond the corpora).

A benchmark is one :class:`Settings` (steps, K, lr); each has its own run dir and report. A row is a
:class:`Row`: its label, the loss it trains with (``None``: evaluated as is, or a row of an earlier
version kept for its results) and the row whose STS-B dev lr sweep chooses its lr when the benchmark's
lr is ``dev``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from common import CACHE, MAX_SEQ_LENGTH, RESULTS, STS_DIR, wiki_sentences
from torch import nn

STS7 = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R"]
OUT_OF_DOMAIN = STS7[:5]  # table E trains on no sentence of STS12-16 (pairs.py)
IN_DOMAIN = STS7[5:]  # table E's pairs come from the training splits of STS-B and SICK
E_BLOCKS = {  # table E's blocks: (student, teacher) on supervised pairs (pairs.py)
    "E1-minilm": ("pruned-minilm", "minilm"),
    "E1-mpnet": ("pruned-minilm", "mpnet"),
    "E2-mpnet": ("minilm", "mpnet"),
    "E2-self": ("minilm", "minilm"),  # the start model as its own frozen teacher
}
TASKS = {  # B and D train on STS-B train sentences: STS12-16 share many of them
    "A": STS7,
    "B": ["STSBenchmark", "SICK-R"],
    "C": STS7,
    "D": ["STSBenchmark", "SICK-R"],
    **{block: STS7 for block in E_BLOCKS},  # table E drops every pair that shares a sentence with STS12-16
}
TITLES = {
    "A": "A: compression (MiniLM-L6 -> 3 layers)",
    "B": "B: self-training on STS-B train sentences",
    "C": "C: cross-architecture distillation (all-mpnet-base-v2 -> all-MiniLM-L6-v2)",
    "D": "D: adapting an already strong model (all-MiniLM-L6-v2) on STS-B train sentences, no labels",
    "E1-minilm": "E1: supervised pairs, student MiniLM-L6's first 3 layers, teacher all-MiniLM-L6-v2",
    "E1-mpnet": "E1: supervised pairs, student MiniLM-L6's first 3 layers, teacher all-mpnet-base-v2",
    "E2-mpnet": "E2: supervised pairs, student all-MiniLM-L6-v2, teacher all-mpnet-base-v2",
    "E2-self": "E2: supervised pairs, student all-MiniLM-L6-v2, the start model as its own frozen teacher",
}
DEFAULT_LR = 1e-4
TABLE_P = 0.1  # Group-P's p of every row that does not name another
LARGER_K = (4, 8)  # table B's larger ensembles: rows "<row>-K<n>" average SimCSE seeds 0..n-1
LR_GRID = {  # each table's first three points (one interior), extended by x2 / /2 while the best sits at an edge
    "A": (4e-4, 8e-4, 1.6e-3),
    "C": (5e-5, 1e-4, 2e-4),  # a full, already strong student (table D: it degrades from 2.5e-5 with SimCSE);
    # 1e-4 is the lr of ST's model_distillation_layer_reduction.py; table A's grid suits a 3-layer student far
    # from its teacher
    "B": (2.5e-5, 5e-5, 1e-4),  # SimCSE from a trained model: table B's 150-step sweep chose 5e-5
    "D": (2.5e-5, 5e-5, 1e-4),
    # supervised fine-tuning: the 3-layer student from the probe's 1e-4 and 2e-4, the full model lower
    **{block: (5e-5, 1e-4, 2e-4) if student == "pruned-minilm" else (2.5e-5, 5e-5, 1e-4)
       for block, (student, _) in E_BLOCKS.items()},
}
LR_FLOOR = 1e-6  # no lr grid extends below: a model barely moves at such an lr in a benchmark's steps
P_SWEEP = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # p = 1 is one group: a full shuffle, no ranking left
# the p sweep's first points (0.1 published, 0.5 the 150-step sweep's best), extended one step along P_SWEEP
# while the best mean over P_SWEEP_SEEDS sits at an edge
P_GRID = (0.1, 0.3, 0.5, 0.7)
P_SWEEP_SEEDS = (0, 1, 2)
P_SWEEP_ROWS = {"A": "group-p-no-contrastive", "B": "group-p"}
# table E's in-batch term, chosen on STS-B dev at vanilla KD's lr (knob sweep): group_p among P_CHOICES at weight
# 1, then the weight of the best along W_LADDER, from W_GRID until the best point is interior. Adam is blind to the
# loss's scale, so a weight w trains as (1/w) * base + term: the ladder's top is the in-batch term nearly alone
KNOB_ROW = "mnrl+kd-dev"
P_CHOICES = (None, 0.1, 0.3, 0.5)
W_LADDER = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
W_GRID = (0.3, 1.0, 3.0)
EVAL_MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's own max length, for every row's final evaluation

PAPER = {  # DistillCSE paper, BERT-base, STS avg of the seven tasks (docs/method.md), keyed by table B's rows
    "simcse": 76.25,
    "vanilla-kd": 77.03,
    "group-p": 78.02,
    "components": 78.64,
    "distillcse": 79.04,
}


@dataclass(frozen=True)
class Settings:
    """One benchmark: every trained row of it runs ``steps`` steps of ``batch_size``; ``lr=None`` is ``--lr dev``."""

    steps: int = 150
    K: int = 2
    lr: float | None = DEFAULT_LR
    lr_source: str = "fixed a priori"
    batch_size: int = 64
    max_seq_length: int = MAX_SEQ_LENGTH
    warmup_ratio: float = 0.0
    scheduler: str = "linear"

    @property
    def eval_steps(self) -> int:
        """STS-B dev every quarter of the run, at least every 15 steps, at most every 125 (the authors' interval)."""
        return min(125, max(15, self.steps // 4))

    @property
    def tag(self) -> str:
        """``steps<S>-K<K>``, plus ``-lr<lr>`` off the default lr (``-lrdev``: each row at its dev-chosen lr)."""
        tag = f"steps{self.steps}-K{self.K}"
        if self.lr is None:
            return f"{tag}-lrdev"
        return tag if self.lr == DEFAULT_LR else f"{tag}-lr{self.lr:g}"

    @property
    def runs(self) -> Path:
        return RESULTS / f"quality_runs-{self.tag}"

    @property
    def cache(self) -> Path:
        """Models and table B teachers, shared by every lr of the same (steps, K): run names carry their lr."""
        return CACHE / f"quality-steps{self.steps}-K{self.K}"

    @property
    def stem(self) -> str:
        return f"quality-{self.tag}"

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "eval_steps": self.eval_steps, "group_p": TABLE_P}


@dataclass(frozen=True)
class Row:
    """A table row: ``loss`` is a :func:`build_loss` kind (``None``: not trained here); ``lr_row`` names the
    row whose lr sweep sets its lr under ``--lr dev`` (default: itself); ``distillation_weight`` is the
    in-batch term's lambda in the kinds that have one; ``batch_size`` overrides the benchmark's (the row then
    runs as many steps fewer as it sees the same texts)."""

    label: str
    loss: str | None = None
    group_p: float | None = TABLE_P
    lr_row: str | None = None
    distillation_weight: float = 1.0
    batch_size: int | None = None


CACHED_BATCH = 256  # the batch CachedMultipleNegativesRankingLoss is for, in table E


def e_rows(block: str) -> dict[str, Row]:
    """The rows of a block of table E (its teacher named in the labels); in-batch rows take vanilla KD's lr."""
    student, key = E_BLOCKS[block]
    teacher = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}[key] + (
        " (the start model)" if key == student else "")
    return {
        "initial-student": Row("start: the student, no training"),
        "teacher": Row(f"teacher: {teacher}"),
        "mnrl": Row("ST MultipleNegativesRankingLoss (MNRL)", "mnrl", None),
        "mnrl+kd": Row("InBatchDistillLoss(MNRL), vanilla KD, precomputed teacher", "mnrl+kd", None),
        KNOB_ROW: Row("InBatchDistillLoss(MNRL), group_p and distillation_weight chosen on STS-B dev", "mnrl+kd",
                      None, "mnrl+kd"),
        "mnrl|embed-distill": Row("ST multi-objective: MNRL + EmbedDistillLoss (cosine) on the same texts",
                                  "mnrl|embed-distill", None),
        # ours on top of ST's multi-objective route: does the in-batch term add to it?
        "mnrl+kd|embed-distill": Row("ST multi-objective with InBatchDistillLoss(MNRL), vanilla KD, on the pairs",
                                     "mnrl+kd|embed-distill", None, "mnrl|embed-distill"),
        "gist": Row(f"ST GISTEmbedLoss, guide {teacher}", "gist", None),
        "gist+kd": Row("InBatchDistillLoss(GISTEmbedLoss), vanilla KD", "gist+kd", None, "gist"),
        "mnrl+kd-live": Row("InBatchDistillLoss(MNRL), vanilla KD, live teacher", "mnrl+kd-live", None, "mnrl+kd"),
        "cached-mnrl": Row(f"ST CachedMNRL, batch {CACHED_BATCH}", "cached-mnrl", None, batch_size=CACHED_BATCH),
        "cached-mnrl+kd": Row(f"InBatchDistillLoss(CachedMNRL), vanilla KD, batch {CACHED_BATCH}",
                              "cached-mnrl+kd", None, "cached-mnrl", batch_size=CACHED_BATCH),
        "margin-mse": Row("ST MarginMSELoss on teacher scores, triplets", "margin-mse", None),
    }


ROWS: dict[str, dict[str, Row]] = {
    "A": {
        "initial-student": Row("initial student (3 layers, no training)"),
        "teacher": Row("teacher: all-MiniLM-L6-v2 (6 layers)"),
        "mse": Row("ST MSELoss", "mse", None, "embed-distill-cosine"),
        "embed-distill-cosine": Row("ST EmbedDistillLoss (cosine)", "embed-distill", None),
        "vanilla-kd": Row("GroupPDistillLoss, group_p=None (vanilla KD)", "kd", None, "group-p-no-contrastive"),
        "group-p": Row("GroupPDistillLoss, group_p=0.1", "kd", TABLE_P, "group-p-no-contrastive"),
        "group-p-no-contrastive": Row("GroupPDistillLoss, group_p=0.1, contrastive_weight=0", "kd-only"),
        # trained by the removed PlusEmbedDistill (SimCSE + Group-P + EmbedDistillLoss); kept for its results
        "group-p+embed-distill": Row("GroupPDistillLoss p=0.1 + EmbedDistillLoss (cosine)"),
        "embed-distill+group-p": Row("InBatchDistillLoss(EmbedDistillLoss), group_p=0.1, distillation_weight=1",
                                     "embed+kd"),
        "embed-distill+vanilla-kd": Row("InBatchDistillLoss(EmbedDistillLoss), group_p=None (vanilla KD)",
                                        "embed+kd", None, "embed-distill+group-p"),
        # at lambda = 1 the in-batch term's gradient is ~20x EmbedDistillLoss's at the start of training
        # (measured on this student and corpus), so the stacked row is KD with a small regulariser;
        # lambda = 1/20 gives the two terms equal gradient norms there, and the row trains at the lr of
        # EmbedDistillLoss, the term it keeps in charge
        "embed-distill+group-p-balanced": Row(
            "InBatchDistillLoss(EmbedDistillLoss), group_p=0.1, distillation_weight=0.05", "embed+kd", TABLE_P,
            "embed-distill-cosine", 0.05),
        "multi-teacher": Row("MultiTeacherAvgLoss p=0.1, components MiniLM-L6 + mpnet-base", "multi", TABLE_P,
                             "group-p-no-contrastive"),
    },
    "B": {
        "initial-student": Row("initial student (pruned MiniLM)"),
        "simcse": Row("SimCSE round 0 (the K teachers)", "simcse", None),
        "vanilla-kd": Row("vanilla KD (teacher: SimCSE seed 0)", "kd", None, "group-p"),
        "group-p": Row("Group-P only, p=0.1 (teacher: SimCSE seed 0)", "kd"),
        "components": Row("components only (K SimCSE teachers, no Group-P)", "multi", None, "group-p"),
        "distillcse": Row("DistillCSE (K components + Group-P p=0.1)", "multi", TABLE_P, "group-p"),
        **{f"components-K{k}": Row(f"components only, K={k}", "multi", None, "group-p") for k in LARGER_K},
        **{f"distillcse-K{k}": Row(f"DistillCSE, K={k}", "multi", TABLE_P, "group-p") for k in LARGER_K},
        "group-p-devp": Row("Group-P only, best p on STS-B dev (--p-sweep)", "kd", TABLE_P, "group-p"),
        "distillcse-devp": Row("DistillCSE, best p on STS-B dev (--p-sweep)", "multi", TABLE_P, "group-p"),
        "distillcse-K8-devp": Row("DistillCSE, K=8, best p on STS-B dev (--p-sweep)", "multi", TABLE_P, "group-p"),
        "round-2": Row("round 2: Group-P p=0.1 from the DistillCSE student", "kd", TABLE_P, "group-p"),
    },
    "C": {
        "initial-student": Row("start: all-MiniLM-L6-v2 (student, 384-d)"),
        "teacher": Row("teacher: all-mpnet-base-v2 (768-d)"),
        "embed-distill-cosine": Row("ST EmbedDistillLoss (cosine), projection 384 -> 768", "embed-distill", None),
        # ST's own way to a narrower student (examples' model_distillation.py): the teacher's embeddings pass
        # through its top PCA components (a bias-free Dense layer), so no projection is learnt
        "embed-distill-pca": Row("ST EmbedDistillLoss (cosine), teacher reduced to 384-d by PCA", "embed-distill",
                                 None),
        "group-p-no-contrastive": Row("GroupPDistillLoss p=0.1, contrastive_weight=0 (no projection)", "kd-only"),
        "embed-distill+group-p": Row("InBatchDistillLoss(EmbedDistillLoss with projection), group_p=0.1",
                                     "embed+kd"),
        "multi-teacher": Row("MultiTeacherAvgLoss p=0.1, contrastive_weight=0, mpnet + the start model",
                             "multi-only", TABLE_P, "group-p-no-contrastive"),
    },
    "D": {
        "initial-student": Row("start: all-MiniLM-L6-v2 (no training)"),
        "simcse": Row("SimCSE from the start model", "simcse", None),
        "group-p-self": Row("SimCSE + Group-P p=0.5, the start model as its own teacher", "kd", 0.5, "simcse"),
    },
    **{block: e_rows(block) for block in E_BLOCKS},
}
EVAL_MODELS = {  # the untrained rows: (table, row) -> model (pruned-minilm: the first 3 layers of minilm)
    ("A", "initial-student"): "pruned-minilm",
    ("A", "teacher"): "minilm",
    ("B", "initial-student"): "pruned-minilm",
    ("C", "initial-student"): "minilm",
    ("C", "teacher"): "mpnet",
    ("D", "initial-student"): "minilm",
    **{(block, "initial-student"): student for block, (student, _) in E_BLOCKS.items()},
    **{(block, "teacher"): teacher for block, (_, teacher) in E_BLOCKS.items()},
}
SWEEP_ROWS = {  # the rows whose lr is swept on STS-B dev (--sweep); every other row borrows one's (Row.lr_row)
    "A": ("embed-distill-cosine", "embed-distill+group-p", "group-p-no-contrastive"),
    "B": ("simcse", "group-p"),
    "C": ("embed-distill-cosine", "embed-distill+group-p", "group-p-no-contrastive", "embed-distill-pca"),
    "D": ("simcse",),
    **{block: ("mnrl", "mnrl+kd", "mnrl|embed-distill", "gist", "cached-mnrl", "margin-mse") for block in E_BLOCKS},
}


def build_loss(row: Row, model, teacher_dim: int | None = None, teacher=None) -> nn.Module | dict[str, nn.Module]:
    """The loss of a row (its kind, with its ``group_p`` and ``distillation_weight``); ``teacher_dim`` (the label
    width) adds EmbedDistillLoss's projection if needed; ``teacher`` is the live teacher of the kinds that run one
    (GISTEmbedLoss's guide, ``mnrl+kd-live``). ``mnrl|embed-distill`` is ST's multi-objective training: one loss
    per dataset of a ``DatasetDict`` (``pairs``, ``distill``)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        EmbedDistillLoss,
        GISTEmbedLoss,
        MarginMSELoss,
        MSELoss,
        MultipleNegativesRankingLoss,
    )

    from distillcse_st.losses import GroupPDistillLoss, InBatchDistillLoss, MultiTeacherAvgLoss

    width = model.get_embedding_dimension()
    projection = teacher_dim if teacher_dim not in (None, width) else None
    group_p, weight = row.group_p, row.distillation_weight

    def embed_distill() -> nn.Module:
        return EmbedDistillLoss(model, distance_metric="cosine", projection_dim=projection)

    def in_batch(base: nn.Module, teachers=None) -> nn.Module:
        return InBatchDistillLoss(model, base, teachers=teachers, group_p=group_p, distillation_weight=weight)

    def cached_mnrl() -> nn.Module:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=64)

    losses = {
        "mse": lambda: MSELoss(model),
        "embed-distill": embed_distill,
        "simcse": lambda: GroupPDistillLoss(model, distillation_weight=0.0),
        "kd": lambda: GroupPDistillLoss(model, group_p=group_p, distillation_weight=weight),
        "kd-only": lambda: GroupPDistillLoss(model, group_p=group_p, contrastive_weight=0.0,
                                             distillation_weight=weight),
        "multi": lambda: MultiTeacherAvgLoss(model, group_p=group_p, distillation_weight=weight),
        "multi-only": lambda: MultiTeacherAvgLoss(model, group_p=group_p, contrastive_weight=0.0,
                                                  distillation_weight=weight),
        "embed+kd": lambda: in_batch(embed_distill()),
        "mnrl": lambda: MultipleNegativesRankingLoss(model),
        "mnrl+kd": lambda: in_batch(MultipleNegativesRankingLoss(model)),
        "mnrl+kd-live": lambda: in_batch(MultipleNegativesRankingLoss(model), [teacher]),
        "mnrl|embed-distill": lambda: {"pairs": MultipleNegativesRankingLoss(model), "distill": embed_distill()},
        "mnrl+kd|embed-distill": lambda: {"pairs": in_batch(MultipleNegativesRankingLoss(model)),
                                          "distill": embed_distill()},
        "gist": lambda: GISTEmbedLoss(model, guide=teacher),
        "gist+kd": lambda: in_batch(GISTEmbedLoss(model, guide=teacher)),
        "cached-mnrl": cached_mnrl,
        "cached-mnrl+kd": lambda: in_batch(cached_mnrl()),
        "margin-mse": lambda: MarginMSELoss(model),
    }
    return losses[row.loss]()


# ----------------------------------------------------------------------------------------------- row names


class Knobs(NamedTuple):
    """Table E's in-batch term as its knob sweep chose it on STS-B dev (``knob-sweep.json``)."""

    group_p: float | None
    distillation_weight: float


def split_p(row: str, best_p: float | None = None) -> tuple[str, float | None]:
    """``<row>-p0.3`` -> (``<row>``, 0.3); ``<row>-devp`` -> (``<row>``, ``best_p``, the p sweep's best on
    STS-B dev); any other row -> (row, None): its own p."""
    if row.endswith("-devp"):
        if best_p is None:
            raise ValueError(f"{row}: run the p sweep (--p-sweep) first")
        return row[: -len("-devp")], best_p
    base, sep, value = row.rpartition("-p")
    if sep and re.fullmatch(r"[0-9.]+", value):
        return base, float(value)
    return row, None


def split_dev(row: str, knobs: Knobs | None) -> tuple[str, Knobs | None]:
    """``<row>-dev`` -> (``<row>``, ``knobs``, the knob sweep's choice); any other row -> (row, None)."""
    if not row.endswith("-dev"):
        return row, None
    if knobs is None:
        raise ValueError(f"{row}: run the knob sweep first")
    return row[: -len("-dev")], knobs


def knobs_suffix(spec: Row, knobs: Knobs) -> str:
    """The knobs that differ from the row's own, as a name suffix (``-p0.3-w3``, ``-pnone``; none: ``""``)."""
    p = knobs.group_p
    group_p = "" if p == spec.group_p else "-pnone" if p is None else f"-p{p:g}"
    weight = knobs.distillation_weight
    return group_p + ("" if weight == spec.distillation_weight else f"-w{weight:g}")


def row_spec(table: str, row: str, K: int, best_p: float | None = None,
             knobs: Knobs | None = None) -> tuple[str, Row, int]:
    """(base row, its Row at the name's p, K) of a row name: ``distillcse-K8-devp`` is table B's DistillCSE with
    K = 8 at the p sweep's best p; ``-p0.3`` sets p = 0.3 (rows without Group-P keep None); without ``-K<n>``
    K is the benchmark's; ``-dev`` (table E) takes ``knobs``' group_p and distillation_weight."""
    name, chosen = split_dev(row, knobs)
    name, p_override = split_p(name, best_p)
    base, _, k = name.partition("-K") if table == "B" else (name, "", "")
    if base not in ROWS[table] or not (k == "" or k.isdigit()):
        raise ValueError(f"table {table}: no row {row}")
    spec = ROWS[table][base]
    if p_override is not None and spec.group_p is not None:
        spec = replace(spec, group_p=p_override)
    if chosen is not None:
        spec = replace(spec, group_p=chosen.group_p, distillation_weight=chosen.distillation_weight)
    return base, spec, int(k) if k else K


TEACHER_FREE = ("mnrl", "cached-mnrl")  # table E's losses that never read the teacher


def model_table(table: str, base: str) -> str:
    """The table whose cached model a row's run is: a teacher-free row of table E trains once per student, under
    the first block with that student (E1-mpnet's MNRL is E1-minilm's run), every other row under its own."""
    if table not in E_BLOCKS or ROWS[table][base].loss not in TEACHER_FREE:
        return table
    return next(block for block, (student, _) in E_BLOCKS.items() if student == E_BLOCKS[table][0])


def run_name(table: str, row: str, seed: int, lr: float, best_p: float | None = None,
             knobs: Knobs | None = None) -> str:
    """The cache name of a run; rows with a p override are named by their p (``-devp`` is ``-p<best p>``), a
    ``-dev`` row by the knobs it changes (none: the name of its base row's run, which it shares)."""
    name, chosen = split_dev(row, knobs)
    if chosen is not None:
        return f"{table}/{name}{knobs_suffix(ROWS[table][name], chosen)}-seed{seed}-lr{lr:g}"
    base, group_p = split_p(row, best_p)
    return f"{model_table(table, base)}/{base}{'' if group_p is None else f'-p{group_p:g}'}-seed{seed}-lr{lr:g}"


# ----------------------------------------------------------------------------------------------- corpora


def corpus_wiki(settings: Settings) -> list[str]:
    """Tables A and C: the first ``steps * batch_size`` Wikipedia sentences (one epoch)."""
    return wiki_sentences(settings.steps * settings.batch_size)


def sts_file(name: str) -> Path:
    """``STS_DIR/name``, or its ``.gz`` where only that exists (the GPU bundle)."""
    path = STS_DIR / name
    return path if path.is_file() or not path.with_name(path.name + ".gz").is_file() else path.with_name(
        path.name + ".gz")


def sts_sentences(name: str) -> set[str]:
    from distillcse_st.evaluation import read_sts_jsonl

    data = read_sts_jsonl(sts_file(name))
    return {s.strip() for s in data["sentence1"] + data["sentence2"]}


def corpus_stsb(settings: Settings) -> tuple[list[str], dict[str, Any]]:
    """Tables B and D: unique STS-B train sentences (scores never read) minus STS-B dev/test and SICK-R ones.

    At most ``steps * batch_size`` of them, drawn once with a fixed seed: every row sees the same sentences
    (more steps than sentences run several epochs), and precomputed teachers encode only what training uses.
    """
    from distillcse_st.evaluation import read_sts_jsonl

    excluded: set[str] = set()
    for name in ("STSBenchmark-dev.jsonl", "STSBenchmark.jsonl", "SICK-R.jsonl", "SICK-R-test.jsonl"):
        if sts_file(name).is_file():
            excluded |= {s.lower() for s in sts_sentences(name)}
    data = read_sts_jsonl(sts_file("STSBenchmark-train.jsonl"))
    train = [s.strip() for pair in zip(data["sentence1"], data["sentence2"]) for s in pair]
    unique = list(dict.fromkeys(train))
    kept = [s for s in unique if s.lower() not in excluded]
    used = random.Random(1234).sample(kept, min(len(kept), settings.steps * settings.batch_size))
    stats = {"train_sentences": len(train), "unique": len(unique), "kept_after_exclusion": len(kept),
             "used": len(used), "sampling": "random.Random(1234).sample(kept, steps * batch_size)"}
    return used, stats


def read_knobs(runs: Path, table: str) -> Knobs | None:
    """The in-batch term chosen on STS-B dev by the table's knob sweep in ``runs``, once it has finished."""
    path = runs / table / "knob-sweep.json"
    best = json.loads(path.read_text()).get("best") if path.is_file() else None
    return None if best is None else Knobs(**best)


def read_best_lrs(runs: Path, table: str) -> dict[str, float]:
    """``{sweep row: lr}`` chosen on STS-B dev by the table's lr sweep in ``runs`` (rows still growing left out)."""
    path = runs / table / "lr-sweep.json"
    best = json.loads(path.read_text()).get("best_lr", {}) if path.is_file() else {}
    return {row: float(lr) for row, lr in best.items() if lr is not None}


def read_best_p(runs: Path, table: str) -> float | None:
    """The best p on STS-B dev of the table's p sweep in ``runs``, once it has finished."""
    path = runs / table / "p-sweep.json"
    best = json.loads(path.read_text()).get("best_p_on_dev") if path.is_file() else None
    return None if best is None else float(best)
