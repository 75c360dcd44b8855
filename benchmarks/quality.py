"""Quality benchmark: the DistillCSE ablation at CPU scale (issue 8, part 2).

Table A, compression: teacher = all-MiniLM-L6-v2 (the wheel), student = its first 3 layers, trained on
Wikipedia sentences with ST's built-in distillation losses and with the DistillCSE losses; final
scores on the seven MTEB STS tasks (``distillcse_st.evaluation.evaluate_sts``, local data).

Table B, self-training as unsupervised in-domain adaptation: corpus = the sentences of STS-B train
(scores never read) minus every sentence of STS-B dev, STS-B test and SICK-R; round 0 = SimCSE from
the pruned MiniLM with K seeds; then vanilla KD, Group-P only, components only, DistillCSE, a second
round. Scores on STS-B test and SICK-R (STS12-16 share many sentences with STS-B train).

Every run: same steps, batch, learning rate and max length within a table; STS-B dev evaluated every
``eval_steps`` and the best checkpoint kept (selected on dev only); the kept model is evaluated once.
Resumable: each finished run writes ``results/quality_runs-steps<S>-K<K>/<table>/<row>-seed<k>.json`` and
is skipped when run again (or only re-scored, when the table's task list grew); trained models and
teacher embeddings are cached under ``benchmarks/cache/quality-steps<S>-K<K>``.

    python benchmarks/quality.py              # run whatever is not finished yet (long: background it)
    python benchmarks/quality.py --report     # rebuild results/quality-steps<S>-K<K>.{json,md} and the plots
    python benchmarks/quality.py --sweep --tables A   # STS-B dev lr sweep of two of table A's rows
    python benchmarks/quality.py --p-sweep --tables B  # STS-B dev sweep of Group-P's p (table A: at --lr 4e-4)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import (  # noqa: E402
    CACHE,
    MAX_SEQ_LENGTH,
    RESULTS,
    STS_DIR,
    load_mpnet,
    load_teacher,
    machine_info,
    pruned_student,
    read_json,
    set_seed,
    wiki_sentences,
    write_json,
)
from torch import nn  # noqa: E402

logger = logging.getLogger("quality")

STS7 = ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R"]
TASKS = {"A": STS7, "B": ["STSBenchmark", "SICK-R"]}  # B: STS12-16 share sentences with its corpus
LARGER_K = (4, 8)  # table B's larger ensembles: rows "<row>-K<n>" average SimCSE seeds 0..n-1
LR_SWEEP = (5e-5, 1e-4, 2e-4, 4e-4, 8e-4)
# Group-P's p, swept on STS-B dev only (rows: P_SWEEP_ROWS); p = 1.0 is one group: a full shuffle, no ranking left
P_SWEEP = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DEFAULT_LR = 1e-4
EVAL_MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's own max length, for every row's final evaluation
DEV_KEY = "eval_sts-dev_spearman_cosine"

SETTINGS = {
    "steps": 150,
    "batch_size": 64,
    "max_seq_length": MAX_SEQ_LENGTH,
    "eval_steps": 15,
    "lr": DEFAULT_LR,
    "lr_source": "fixed a priori",
    "group_p": 0.1,
    "K": 2,
    "warmup_ratio": 0.0,
    "scheduler": "linear",
}



def run_tag(steps: int, K: int, lr: float = DEFAULT_LR) -> str:
    """The name of one benchmark's run dir and report: ``steps<S>-K<K>``, plus ``-lr<lr>`` off the default lr."""
    tag = f"steps{steps}-K{K}"
    return tag if lr == DEFAULT_LR else f"{tag}-lr{lr:g}"


def configure(steps: int, K: int, lr: float = DEFAULT_LR, lr_source: str = "fixed a priori") -> None:
    """Settings, run dir, cache and report names: each (steps, K, lr) is its own benchmark, never mixed.

    The cache is shared by every lr of the same (steps, K): model and teacher names carry their lr.
    """
    global RUNS, QCACHE, STEM
    SETTINGS.update(steps=steps, K=K, eval_steps=max(15, steps // 4), lr=lr, lr_source=lr_source)
    tag = run_tag(steps, K, lr)
    RUNS, QCACHE, STEM = RESULTS / f"quality_runs-{tag}", CACHE / f"quality-{run_tag(steps, K)}", f"quality-{tag}"


configure(SETTINGS["steps"], SETTINGS["K"])

PAPER = {  # DistillCSE paper, BERT-base, STS avg of the seven tasks (docs/method.md), keyed by table B's rows
    "simcse": 76.25,
    "vanilla-kd": 77.03,
    "group-p": 78.02,
    "components": 78.64,
    "distillcse": 79.04,
}

ROW_LABELS = {
    "A": {
        "initial-student": "initial student (3 layers, no training)",
        "teacher": "teacher: all-MiniLM-L6-v2 (6 layers)",
        "mse": "ST MSELoss",
        "embed-distill-cosine": "ST EmbedDistillLoss (cosine)",
        "vanilla-kd": "GroupPDistillLoss, group_p=None (vanilla KD)",
        "group-p": "GroupPDistillLoss, group_p=0.1",
        "group-p-no-contrastive": "GroupPDistillLoss, group_p=0.1, contrastive_weight=0",
        "group-p+embed-distill": "GroupPDistillLoss p=0.1 + EmbedDistillLoss (cosine)",
        "multi-teacher": "MultiTeacherAvgLoss p=0.1, components MiniLM-L6 + mpnet-base",
    },
    "B": {
        "initial-student": "initial student (pruned MiniLM)",
        "simcse": "SimCSE round 0 (the K teachers)",
        "vanilla-kd": "vanilla KD (teacher: SimCSE seed 0)",
        "group-p": "Group-P only, p=0.1 (teacher: SimCSE seed 0)",
        "components": "components only (K SimCSE teachers, no Group-P)",
        "distillcse": "DistillCSE (K components + Group-P p=0.1)",
        **{f"components-K{k}": f"components only, K={k}" for k in LARGER_K},
        **{f"distillcse-K{k}": f"DistillCSE, K={k}" for k in LARGER_K},
        "group-p-devp": "Group-P only, best p on STS-B dev (--p-sweep)",
        "distillcse-K8-devp": "DistillCSE, K=8, best p on STS-B dev (--p-sweep)",
        "round-2": "round 2: Group-P p=0.1 from the DistillCSE student",
    },
}


# ----------------------------------------------------------------------------------------------- data


def corpus_a(steps: int, batch_size: int) -> list[str]:
    return wiki_sentences(steps * batch_size)


def _sts_sentences(name: str) -> set[str]:
    sentences: set[str] = set()
    with open(STS_DIR / name, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                sentences.update((row["sentence1"].strip(), row["sentence2"].strip()))
    return sentences


def corpus_b() -> tuple[list[str], dict[str, int]]:
    """Unique STS-B train sentences (scores never read) minus STS-B dev/test and SICK-R sentences."""
    excluded: set[str] = set()
    for name in ("STSBenchmark-dev.jsonl", "STSBenchmark.jsonl", "SICK-R.jsonl", "SICK-R-test.jsonl"):
        if (STS_DIR / name).is_file():
            excluded |= {s.lower() for s in _sts_sentences(name)}
    train = []
    with open(STS_DIR / "STSBenchmark-train.jsonl", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                train += [row["sentence1"].strip(), row["sentence2"].strip()]
    unique = list(dict.fromkeys(train))
    kept = [s for s in unique if s.lower() not in excluded]
    # one epoch of exactly `steps` batches, drawn once with a fixed seed: every row sees the same sentences,
    # and precomputed teachers only encode what training uses
    used = random.Random(1234).sample(kept, min(len(kept), SETTINGS["steps"] * SETTINGS["batch_size"]))
    stats = {"train_sentences": len(train), "unique": len(unique), "kept_after_exclusion": len(kept),
             "used": len(used), "sampling": "random.Random(1234).sample(kept, steps * batch_size)"}
    return used, stats


def teacher_embeddings(key: str, texts: Sequence[str], model_factory: Callable[[], Any]) -> np.ndarray:
    """L2-normalised teacher embeddings of ``texts`` (max length 32), cached as float32 .npy."""
    from distillcse_st.teachers import encode_stacked

    path = QCACHE / "teacher_embeddings" / f"{key}.npy"
    if path.is_file():
        array = np.load(path)
        if len(array) >= len(texts):  # texts are always a prefix of the same ordered corpus
            return array[: len(texts)]
    model = model_factory()
    model.max_seq_length = MAX_SEQ_LENGTH
    start = time.perf_counter()
    array = encode_stacked(list(texts), [model], batch_size=128, show_progress_bar=False).numpy().astype(np.float32)
    logger.info("teacher embeddings %s: %d texts in %.1f s", key, len(texts), time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return array


# ----------------------------------------------------------------------------------------------- losses


class PlusEmbedDistill(nn.Module):
    """A DistillCSE loss plus ST's EmbedDistillLoss on the first dropout view (no extra forward pass).

    The ``label`` column holds the (single, L2-normalised) teacher embedding, which is both the
    DistillCSE precomputed teacher and EmbedDistillLoss's target.
    """

    def __init__(self, distill: nn.Module, embed: nn.Module) -> None:
        super().__init__()
        self.model = distill.model
        self.distill = distill
        self.embed = embed

    def forward(self, sentence_features, labels=None):
        features = self.distill.text_features(sentence_features)
        teacher = self.distill.teacher_similarity(features, labels)
        views = self.distill.embed_views(features)
        return self.distill.loss_from_embeddings(views, teacher) + self.embed.compute_loss_from_embeddings(
            [views[0]], [labels.to(views[0].device)]
        )

    def get_config_dict(self) -> dict[str, Any]:
        return {"distill": self.distill.get_config_dict(), "embed": self.embed.get_config_dict()}

    @property
    def citation(self) -> str:
        return self.distill.citation


def build_loss(kind: str, model, group_p: float | None):
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss, MSELoss

    from distillcse_st import GroupPDistillLoss, MultiTeacherAvgLoss

    if kind == "mse":
        return MSELoss(model)
    if kind == "embed-distill-cosine":
        return EmbedDistillLoss(model, distance_metric="cosine")
    if kind == "simcse":
        return GroupPDistillLoss(model, teacher=None, distillation_weight=0.0)
    if kind == "single":
        return GroupPDistillLoss(model, teacher=None, group_p=group_p)
    if kind == "single-no-contrastive":
        return GroupPDistillLoss(model, teacher=None, group_p=group_p, contrastive_weight=0.0)
    if kind == "multi":
        return MultiTeacherAvgLoss(model, teachers=None, group_p=group_p)
    if kind == "single+embed":
        return PlusEmbedDistill(
            GroupPDistillLoss(model, teacher=None, group_p=group_p), EmbedDistillLoss(model, distance_metric="cosine")
        )
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------------- training


def dev_evaluator():
    from distillcse_st.evaluation import sts_dev_evaluator

    return sts_dev_evaluator(STS_DIR / "STSBenchmark-dev.jsonl", batch_size=128)


def dev_score(model) -> float:
    return 100 * dev_evaluator()(model)["sts-dev_spearman_cosine"]


def train(
    name: str,
    texts: Sequence[str],
    labels: np.ndarray | None,
    loss_kind: str,
    group_p: float | None,
    seed: int,
    lr: float,
    init: Callable[[], Any],
) -> dict[str, Any]:
    """Train one run (or load it from the cache); the best-dev model is saved in ``cache/quality/models``."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    model_dir = QCACHE / "models" / name
    record_path = QCACHE / "train" / f"{name}.json"
    if record_path.is_file() and (model_dir / "modules.json").is_file():
        return read_json(record_path)

    set_seed(seed)
    model = init()
    model.max_seq_length = MAX_SEQ_LENGTH
    data = {"text": list(texts)}
    if labels is not None:
        data["label"] = [row for row in labels]
    dataset = Dataset.from_dict(data)
    loss = build_loss(loss_kind, model, group_p)

    class KeepBest(TrainerCallback):
        def __init__(self) -> None:
            self.best = -math.inf
            self.state = None
            self.history: list[dict[str, float]] = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            score = (metrics or {}).get(DEV_KEY)
            if score is None:
                return
            self.history.append({"step": state.global_step, "dev": 100 * score})
            logger.info("%s step %d dev %.2f", name, state.global_step, 100 * score)
            if score > self.best:
                self.best = score
                self.best_step = state.global_step
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    keep = KeepBest()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(QCACHE / "trainer_tmp" / name),
        max_steps=SETTINGS["steps"],
        per_device_train_batch_size=SETTINGS["batch_size"],
        learning_rate=lr,
        warmup_steps=0,
        lr_scheduler_type=SETTINGS["scheduler"],
        eval_strategy="steps",
        eval_steps=SETTINGS["eval_steps"],
        save_strategy="no",
        logging_steps=25,
        seed=seed,
        data_seed=seed,
        dataloader_drop_last=True,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, evaluator=dev_evaluator(), callbacks=[keep]
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    model.load_state_dict(keep.state)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save(str(model_dir))
    shutil.rmtree(QCACHE / "trainer_tmp" / name, ignore_errors=True)
    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    record = {
        "name": name,
        "loss_kind": loss_kind,
        "group_p": group_p,
        "seed": seed,
        "lr": lr,
        "best_dev": 100 * keep.best,
        "best_step": keep.best_step,
        "dev_history": keep.history,
        "train_loss": losses,
        "train_seconds": seconds,
        "model_dir": str(model_dir),
    }
    write_json(record_path, record)
    logger.info("%s: best dev %.2f at step %d (%.0f s)", name, record["best_dev"], record["best_step"], seconds)
    return record


def memoize_encode(model) -> None:
    """Encode each distinct sentence once per evaluation (SICK-R repeats sentences a lot)."""
    original = model.encode
    cache: dict[str, np.ndarray] = {}

    def encode(inputs, *args, **kwargs):
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        kwargs.pop("convert_to_tensor", None)
        kwargs["convert_to_numpy"] = True
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            cache.update(zip(missing, original(missing, *args, **kwargs)))
        out = np.stack([cache[t] for t in texts])
        return out[0] if single else out

    model.encode = encode
    model.encode_query = encode
    model.encode_document = encode


def final_scores(model, tasks: Sequence[str]) -> dict[str, float]:
    from distillcse_st.evaluation import evaluate_sts

    model.max_seq_length = EVAL_MAX_SEQ_LENGTH
    model.eval()
    memoize_encode(model)
    start = time.perf_counter()
    summary = evaluate_sts(model, tasks=list(tasks), data_dir=STS_DIR, batch_size=128, show_progress_bar=False,
                           model_name="local/benchmark-student")
    logger.info("evaluated %s in %.0f s", list(tasks), time.perf_counter() - start)
    return {task: 100 * score for task, score in summary["scores"].items()}


# ----------------------------------------------------------------------------------------------- runs


def run_path(table: str, row: str, seed: int | None) -> Path:
    return RUNS / table / (f"{row}.json" if seed is None else f"{row}-seed{seed}.json")


def is_done(table: str, row: str, seed: int | None) -> bool:
    """Finished and scored on every task of its table (runs scored on fewer tasks are re-scored, not retrained)."""
    path = run_path(table, row, seed)
    return path.is_file() and set(TASKS[table]) <= set(read_json(path)["scores"])


def finish_run(table: str, row: str, seed: int | None, record: dict[str, Any] | None, model, extra=None) -> None:
    scores = final_scores(model, TASKS[table])
    result = {
        "table": table,
        "row": row,
        "label": ROW_LABELS[table][row],
        "seed": seed,
        "scores": scores,
        "average": sum(scores.values()) / len(scores),
        "train": record,
        "settings": SETTINGS,
        **(extra or {}),
        "machine": machine_info(),
    }
    write_json(run_path(table, row, seed), result)
    logger.info("DONE %s/%s seed %s: avg %.2f %s", table, row, seed, result["average"],
                {k: round(v, 2) for k, v in scores.items()})


def eval_only(table: str, row: str, factory: Callable[[], Any]) -> None:
    if is_done(table, row, None):
        return
    model = factory()
    model.max_seq_length = MAX_SEQ_LENGTH
    dev = dev_score(model)
    finish_run(table, row, None, None, model, {"dev": dev})


def chosen_lr() -> float:
    """The learning rate of every trained row of this benchmark (``--lr``), recorded with where it came from."""
    path = RUNS / "A" / "lr-selection.json"
    if not path.is_file():
        write_json(path, {"chosen_lr": SETTINGS["lr"], "tuned": SETTINGS["lr_source"] != "fixed a priori",
                          "note": f"{SETTINGS['lr_source']}; used for every trained row"})
    return read_json(path)["chosen_lr"]


def dev_chosen_lr(table: str) -> float:
    """The best lr on STS-B dev of the default-lr benchmark's sweep for ``table`` (run ``--sweep`` first)."""
    path = RESULTS / f"quality_runs-{run_tag(SETTINGS['steps'], SETTINGS['K'])}" / table / "lr-sweep.json"
    if not path.is_file():
        raise SystemExit(f"no lr sweep at {path}: run `quality.py --sweep --tables {table}` first")
    return float(read_json(path)["best_lr_on_dev"])


def lr_sweep(table: str, rows: Sequence[str]) -> None:
    """Train ``rows`` (seed 0) at every lr of ``LR_SWEEP`` and record their best STS-B dev (no test task is read)."""
    path = RUNS / table / "lr-sweep.json"
    sweep = read_json(path) if path.is_file() else {"rows": {}}
    for row in rows:
        for lr in LR_SWEEP:
            if f"{lr:g}" in sweep["rows"].get(row, {}):
                continue
            record = run_a(row, 0, lr=lr, train_only=True) if table == "A" else run_b(row, 0, lr=lr, train_only=True)
            sweep["rows"].setdefault(row, {})[f"{lr:g}"] = record["best_dev"]
            mean_dev = {f"{x:g}": np.mean([d[f"{x:g}"] for d in sweep["rows"].values() if f"{x:g}" in d])
                        for x in LR_SWEEP}
            sweep.update(mean_dev=mean_dev, best_lr_on_dev=max(mean_dev, key=mean_dev.get),
                         table_lr=f"{chosen_lr():g}", machine=machine_info())
            write_json(path, sweep)


P_SWEEP_ROWS = {"A": "group-p-no-contrastive", "B": "group-p"}  # table A's best DistillCSE row on dev


def split_p(table: str, row: str) -> tuple[str, float | None]:
    """``<row>-p0.3`` -> (``<row>``, 0.3); ``<row>-devp`` -> (``<row>``, the best p of ``--p-sweep`` on STS-B
    dev); any other row -> (row, None): its table's own p."""
    if row.endswith("-devp"):
        return row[: -len("-devp")], float(read_json(RUNS / table / "p-sweep.json")["best_p_on_dev"])
    base, sep, value = row.rpartition("-p")
    if sep and re.fullmatch(r"[0-9.]+", value):
        return base, float(value)
    return row, None


def run_name(table: str, row: str, seed: int, lr: float) -> str:
    """The cache name of a run; rows with a p override are named by their p (``-devp`` is ``-p<best p>``)."""
    base, group_p = split_p(table, row)
    return f"{table}/{base}{'' if group_p is None else f'-p{group_p:g}'}-seed{seed}-lr{lr:g}"


def p_sweep(table: str) -> None:
    """``P_SWEEP_ROWS[table]`` (seed 0) at every p of ``P_SWEEP``: best STS-B dev only (no test task is read)."""
    path = RUNS / table / "p-sweep.json"
    sweep = read_json(path) if path.is_file() else {}
    row = P_SWEEP_ROWS[table]
    devs = sweep.setdefault(row, {})
    for group_p in P_SWEEP:
        if f"{group_p:g}" in devs:
            continue
        run = run_a if table == "A" else run_b
        devs[f"{group_p:g}"] = run(f"{row}-p{group_p:g}", 0, train_only=True)["best_dev"]
        sweep.update(best_p_on_dev=max(devs, key=devs.get), table_p=f"{SETTINGS['group_p']:g}",
                     lr=f"{chosen_lr():g}", machine=machine_info())
        write_json(path, sweep)


A_ROWS = {  # row -> (loss kind, group_p)
    "mse": ("mse", None),
    "embed-distill-cosine": ("embed-distill-cosine", None),
    "vanilla-kd": ("single", None),
    "group-p": ("single", SETTINGS["group_p"]),
    "group-p-no-contrastive": ("single-no-contrastive", SETTINGS["group_p"]),
    "group-p+embed-distill": ("single+embed", SETTINGS["group_p"]),
    "multi-teacher": ("multi", SETTINGS["group_p"]),
}


def a_labels(row: str, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Table A's precomputed teacher: MiniLM-L6, or MiniLM-L6 + mpnet-base averaged for ``multi-teacher``."""
    from distillcse_st.similarity import stack_teacher_embeddings

    minilm = teacher_embeddings("A-minilm", texts, lambda: load_teacher())
    if row != "multi-teacher":
        return minilm, {}
    mpnet = teacher_embeddings("A-mpnet", texts, lambda: load_mpnet())
    dev_path = QCACHE / "mpnet-dev.json"
    if not dev_path.is_file():
        write_json(dev_path, {"dev": dev_score(load_mpnet(MAX_SEQ_LENGTH))})
    stacked = stack_teacher_embeddings([torch.from_numpy(minilm), torch.from_numpy(mpnet)], [0.5, 0.5]).numpy()
    return stacked, {"components": ["all-MiniLM-L6-v2", "all-mpnet-base-v2"], "weights": [0.5, 0.5],
                     "mpnet_dev": read_json(dev_path)["dev"]}


def run_a(row: str, seed: int, lr: float | None = None, train_only: bool = False) -> dict[str, Any] | None:
    from sentence_transformers import SentenceTransformer

    if not train_only and is_done("A", row, seed):
        return None
    lr = lr or chosen_lr()
    texts = corpus_a(SETTINGS["steps"], SETTINGS["batch_size"])
    base, p_override = split_p("A", row)
    labels, extra = a_labels(base, texts)
    kind, group_p = A_ROWS[base]
    group_p = group_p if p_override is None else p_override
    record = train(run_name("A", row, seed, lr), texts, labels, kind, group_p, seed, lr, pruned_student)
    if not train_only:
        finish_run("A", row, seed, record, SentenceTransformer(record["model_dir"], device="cpu"), extra)
    return record


def teacher_row() -> None:
    """The teacher's STS7 scores: reuse benchmarks/results/minilm_mteb_sts.json (same evaluator) if present."""
    path = run_path("A", "teacher", None)
    if is_done("A", "teacher", None):
        return
    other = RESULTS / "minilm_mteb_sts.json"
    if other.is_file():
        try:
            data = read_json(other)
            scores = {row["task"]: row["ours"] for row in data["rows"]} if "rows" in data else _find_scores(data)
            if scores and set(STS7) <= set(scores):
                sts7 = {t: float(scores[t]) * (100 if float(scores[t]) <= 1 else 1) for t in STS7}
                scores = {t: sts7[t] for t in TASKS["A"]}
                model = load_teacher(MAX_SEQ_LENGTH)
                write_json(path, {"table": "A", "row": "teacher", "label": ROW_LABELS["A"]["teacher"], "seed": None,
                                  "scores": scores, "average": sum(scores.values()) / len(scores),
                                  "sts7_scores": sts7, "sts7_average": sum(sts7.values()) / 7,
                                  "dev": dev_score(model), "source": str(other.relative_to(RESULTS.parent.parent)),
                                  "machine": machine_info()})
                return
        except Exception as error:  # noqa: BLE001
            logger.warning("could not reuse %s: %s", other, error)
    eval_only("A", "teacher", lambda: load_teacher())


def _find_scores(data: Any) -> dict[str, float] | None:
    if isinstance(data, dict):
        for key in ("ours", "scores"):
            value = data.get(key)
            if isinstance(value, dict) and "STS12" in value and not isinstance(value["STS12"], dict):
                return value
        for value in data.values():
            found = _find_scores(value)
            if found:
                return found
    return None


# table B ------------------------------------------------------------------------------------------


def simcse_model(seed: int, lr: float) -> dict[str, Any]:
    texts, _ = corpus_b()
    return train(f"B/simcse-seed{seed}-lr{lr:g}", texts, None, "simcse", None, seed, lr, pruned_student)


def b_teacher_labels(teacher_records: Sequence[dict[str, Any]], keys: Sequence[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from distillcse_st.similarity import stack_teacher_embeddings

    texts, _ = corpus_b()
    arrays = [
        torch.from_numpy(
            teacher_embeddings(key, texts, lambda r=record: SentenceTransformer(r["model_dir"], device="cpu"))
        )
        for key, record in zip(keys, teacher_records)
    ]
    return stack_teacher_embeddings(arrays, [1.0 / len(arrays)] * len(arrays)).numpy()


def b_row_spec(row: str) -> tuple[str, int, float | None]:
    """A table B row's (base row, K, group_p): ``distillcse-K8-devp`` is DistillCSE with K = 8 and the best p
    of ``--p-sweep`` on STS-B dev (``-p0.3``: p = 0.3); without ``-K<n>`` K is the benchmark's, else p is 0.1."""
    row, p_override = split_p("B", row)
    base, _, k = row.partition("-K")
    if base not in ("simcse", "vanilla-kd", "group-p", "components", "distillcse", "round-2"):
        raise ValueError(row)
    group_p = None
    if base in ("group-p", "distillcse", "round-2"):
        group_p = SETTINGS["group_p"] if p_override is None else p_override
    return base, int(k) if k else SETTINGS["K"], group_p


def run_b(row: str, seed: int, lr: float | None = None, train_only: bool = False) -> dict[str, Any] | None:
    from sentence_transformers import SentenceTransformer

    if not train_only and is_done("B", row, seed):
        return None
    lr = lr or chosen_lr()
    texts, stats = corpus_b()
    base, K, group_p = b_row_spec(row)
    extra = {"corpus": stats}
    if row == "simcse":
        record = simcse_model(seed, lr)
    else:
        if base in ("vanilla-kd", "group-p"):
            teachers = [simcse_model(0, lr)]
            keys = [f"B-simcse-seed0-lr{lr:g}"]
        elif base in ("components", "distillcse"):
            teachers = [simcse_model(s, lr) for s in range(K)]
            keys = [f"B-simcse-seed{s}-lr{lr:g}" for s in range(K)]
        elif base == "round-2":
            run_b("distillcse", 0)
            teachers = [read_json(run_path("B", "distillcse", 0))["train"]]
            keys = [f"B-distillcse-seed0-lr{lr:g}"]
        else:
            raise ValueError(row)
        labels = b_teacher_labels(teachers, keys)
        kind = "multi" if base in ("components", "distillcse") else "single"
        record = train(run_name("B", row, seed, lr), texts, labels, kind, group_p, seed, lr, pruned_student)
        extra["teachers"] = [t["name"] for t in teachers]
    if not train_only:
        finish_run("B", row, seed, record, SentenceTransformer(record["model_dir"], device="cpu"), extra)
    return record


def b_initial_row() -> None:
    """Table B's start model: the pruned MiniLM, evaluated on table B's tasks."""
    eval_only("B", "initial-student", pruned_student)


def best_rows_on_dev() -> tuple[str, str]:
    """Table A's best ST built-in and best DistillCSE row at seed 0, chosen on STS-B dev."""
    def dev(row):
        path = run_path("A", row, 0)
        return read_json(path)["train"]["best_dev"] if path.is_file() else -math.inf
    builtin = max(("mse", "embed-distill-cosine"), key=dev)
    ours = max(("vanilla-kd", "group-p", "group-p+embed-distill"), key=dev)
    return builtin, ours


SWEEP_ROWS = {"A": ("embed-distill-cosine", "group-p"), "B": ("simcse",)}


def plan() -> list[tuple[str, Callable[[], None]]]:
    """The run queue as (table, step), most important first; rerunning skips what is finished."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("A", lambda: eval_only("A", "initial-student", pruned_student)),
        ("A", lambda: run_a("group-p", 0)),
        ("A", lambda: run_a("embed-distill-cosine", 0)),
        ("B", lambda: run_b("simcse", 0)),
        ("B", lambda: run_b("simcse", 1)),
        ("B", lambda: run_b("distillcse", 0)),
        ("B", lambda: run_b("vanilla-kd", 0)),
        ("B", b_initial_row),
        ("B", lambda: run_b("group-p", 0)),
        ("B", lambda: run_b("components", 0)),
        ("A", lambda: run_a("mse", 0)),
        ("A", lambda: run_a("vanilla-kd", 0)),
        ("A", teacher_row),
        ("A", lambda: run_a("group-p-no-contrastive", 0)),
    ]
    # then more seeds: the best ST built-in and the best DistillCSE row of A (chosen on dev), B's key rows
    steps += [("A", lambda: [run_a(r, 1) for r in best_rows_on_dev()])]
    steps += [("B", lambda r=r: run_b(r, 1)) for r in ("distillcse", "vanilla-kd")]
    steps += [("A", lambda: run_a("group-p+embed-distill", 0))]
    steps += [("A", lambda: [run_a(r, 2) for r in best_rows_on_dev()])]
    headline_b = ("group-p", "distillcse", "vanilla-kd", "simcse")
    steps += [("B", lambda r=r, s=s: run_b(r, s)) for s in (1, 2) for r in headline_b]
    steps += [("A", lambda r=r, s=s: run_a(r, s)) for s in (1, 2) for r in ("vanilla-kd", "group-p")]
    steps += [("A", lambda s=s: run_a("group-p-no-contrastive", s)) for s in (1, 2)]
    steps += [("A", lambda: run_a("multi-teacher", 0)), ("B", lambda: run_b("simcse", 3)),
              ("B", lambda: run_b("distillcse-K4", 0)), ("B", lambda: run_b("components-K4", 0))]
    steps += [("A", lambda s=s: run_a("multi-teacher", s)) for s in (1, 2)]
    steps += [("B", lambda s=s: run_b("distillcse-K4", s)) for s in (1, 2)]
    steps += [("B", lambda: run_b("components", 1)), ("B", lambda: run_b("round-2", 0))]
    steps += [("B", lambda s=s: run_b("simcse", s)) for s in range(4, 8)]
    steps += [("B", lambda: run_b("distillcse-K8", 0)), ("B", lambda: run_b("components-K8", 0))]
    steps += [("B", lambda: p_sweep("B"))]
    steps += [("B", lambda s=s: [run_b(r, s) for r in ("group-p-devp", "distillcse-K8-devp")]) for s in (0, 1, 2)]
    steps += [("A", lambda: p_sweep("A"))]  # the sweep only: see benchmarks/README.md
    steps += [("A", lambda s=s: [run_a(r, s) for r in A_ROWS]) for s in (1, 2)]
    steps += [("B", lambda s=s: [run_b(r, s) for r in ROW_LABELS["B"] if r not in ("initial-student", "round-2")])
              for s in (1, 2)]
    return steps


# ----------------------------------------------------------------------------------------------- report


def collect() -> dict[str, dict[str, list[dict[str, Any]]]]:
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for table in ("A", "B"):
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in ROW_LABELS[table]:
            found = sorted((RUNS / table).glob(f"{row}.json")) + sorted((RUNS / table).glob(f"{row}-seed*.json"))
            if found:
                rows[row] = [read_json(p) for p in found]
        tables[table] = rows
    return tables


def scored_tasks(table: str, rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The table's tasks that every run was scored on (older runs may predate a longer task list)."""
    return [t for t in TASKS[table] if all(t in r["scores"] for runs in rows.values() for r in runs)]


def summarise(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    averages = np.array([np.mean([r["scores"][t] for t in tasks]) for r in runs])
    per_task = {t: float(np.mean([r["scores"][t] for r in runs])) for t in tasks}
    devs = [r["train"]["best_dev"] if r.get("train") else r.get("dev") for r in runs]
    return {
        "n": len(runs),
        "seeds": [r["seed"] for r in runs],
        "average_mean": float(averages.mean()),
        "average_std": float(averages.std(ddof=1)) if len(runs) > 1 else None,
        "average_min": float(averages.min()),
        "average_max": float(averages.max()),
        "per_task_mean": per_task,
        "dev_mean": float(np.mean([d for d in devs if d is not None])) if any(d is not None for d in devs) else None,
    }


def fmt(summary: dict[str, Any]) -> str:
    if summary["n"] == 1:
        return f"{summary['average_mean']:.2f}"
    return f"{summary['average_mean']:.2f} ± {summary['average_std']:.2f} (n={summary['n']})"


def sweep_table(name: str, values: Sequence[float], rows: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows of a dev sweep: one column per value (``rows[row]`` is keyed by ``f"{value:g}"``)."""
    return ["| row | " + " | ".join(f"{name} {v:g}" for v in values) + " |", "|---|" + "---|" * len(values)] + [
        f"| {row} | " + " | ".join(f"{devs[f'{v:g}']:.2f}" if f"{v:g}" in devs else "" for v in values) + " |"
        for row, devs in rows.items()
    ]


def report() -> None:
    tables = collect()
    out: dict[str, Any] = {"settings": SETTINGS, "paper_bert_base_sts7_avg": PAPER, "tables": {}}
    lr_path = RUNS / "A" / "lr-selection.json"
    if lr_path.is_file():
        out["lr_selection"] = read_json(lr_path)
    md = ["# Quality benchmark results", "",
          f"Steps {SETTINGS['steps']}, batch {SETTINGS['batch_size']}, max length {SETTINGS['max_seq_length']}, "
          f"STS-B dev every {SETTINGS['eval_steps']} steps (best kept), linear decay, no warm-up, "
          f"lr {out.get('lr_selection', {}).get('chosen_lr', '?')} for every trained row "
          f"({out.get('lr_selection', {}).get('note', '?')}). Spearman x100 of cosine similarity (MTEB main score, "
          "`distillcse_st.evaluation.evaluate_sts`, local data); mean ± sample std over seeds; n = number of seeds. "
          "Models are selected on STS-B dev only.", ""]
    for table in ("A", "B"):
        rows = tables[table]
        if not rows:
            continue
        tasks = scored_tasks(table, rows)
        summaries = {row: summarise(runs, tasks) for row, runs in rows.items()}
        out["tables"][table] = {row: {"label": ROW_LABELS[table][row], **summaries[row],
                                      "runs": [{k: r[k] for k in ("seed", "scores", "average")} | {
                                          "best_dev": (r.get("train") or {}).get("best_dev", r.get("dev"))}
                                          for r in runs]}
                                for row, runs in rows.items()}
        title = f"A: compression (MiniLM-L6 -> 3 layers), {', '.join(tasks)}" if table == "A" else \
            f"B: self-training on STS-B train sentences (K = {SETTINGS['K']} unless named), {', '.join(tasks)}"
        paper = " paper, BERT-base, STS7 avg |" if table == "B" else ""
        md += [f"## Table {title}", "",
               "| row | " + " | ".join(tasks) + f" | avg (mean ± std, n) | STS-B dev |{paper}",
               "|---|" + "---|" * len(tasks) + "---|---|" + ("---|" if paper else "")]
        for row, s in summaries.items():
            md.append(f"| {ROW_LABELS[table][row]} | " + " | ".join(f"{s['per_task_mean'][t]:.2f}" for t in tasks)
                      + f" | {fmt(s)} | " + (f"{s['dev_mean']:.2f}" if s["dev_mean"] is not None else "") + " |"
                      + (f" {PAPER[row]:.2f} |" if row in PAPER else " |") * bool(paper))
        md.append("")
        multi = rows.get("multi-teacher", [{}])[0]
        if multi.get("mpnet_dev") is not None:
            md += [f"all-mpnet-base-v2 (the second component) scores {multi['mpnet_dev']:.2f} on STS-B dev "
                   "(max length 32).", ""]
        p_path = RUNS / table / "p-sweep.json"
        if p_path.is_file():
            sweep = read_json(p_path)
            out["tables"][table]["p_sweep"] = sweep
            row = P_SWEEP_ROWS[table]
            md += [f"Group-P's p on STS-B dev ({row}, seed 0, best dev during training):", "",
                   *sweep_table("p", P_SWEEP, {row: sweep[row]}),
                   "", f"Best p on dev: {sweep['best_p_on_dev']}; the table's other rows use {sweep['table_p']}.", ""]
        sweep_path = RUNS / table / "lr-sweep.json"
        if sweep_path.is_file():
            sweep = read_json(sweep_path)
            out["tables"][table]["lr_sweep"] = sweep
            md += ["STS-B dev learning-rate sweep (seed 0, best dev during training):", "",
                   *sweep_table("lr", LR_SWEEP, sweep["rows"])]
            md += ["", f"Best lr on dev (mean over the rows): {sweep['best_lr_on_dev']}; the table used "
                   f"{sweep['table_lr']}.", ""]
    md += [] if not tables["B"] else [
           "The paper's column: BERT-base trained on 1M Wikipedia sentences (SimCSE teachers, 16 components), "
           "average of the seven STS tasks (docs/method.md); only the ordering of the rows is comparable.", ""]
    out["machine"] = machine_info()
    write_json(RESULTS / f"{STEM}.json", out)
    (RESULTS / f"{STEM}.md").write_text("\n".join(md), encoding="utf-8")
    plots(tables)
    print("\n".join(md))


def plots(tables) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for table, rows in tables.items():
        if not rows:
            continue
        tasks = scored_tasks(table, rows)
        names = list(rows)
        s = [summarise(rows[r], tasks) for r in names]
        means = [x["average_mean"] for x in s]
        errs = [x["average_std"] or 0.0 for x in s]
        paper = [PAPER.get(n) for n in names] if table == "B" else []
        side = any(paper)
        fig, axes = plt.subplots(1, 2 if side else 1, figsize=(12 if side else 9, 0.55 * len(names) + 1.5),
                                 sharey=True, squeeze=False, gridspec_kw={"width_ratios": [3, 1]} if side else None)
        ax = axes[0, 0]
        if any(paper):
            side = axes[0, 1]
            side.barh(range(len(names)), [v or 0 for v in paper], color="tab:gray", alpha=0.8)
            for i, v in enumerate(paper):
                if v:
                    side.text(v + 0.1, i, f"{v:.2f}", va="center", fontsize=8)
            side.set_xlim(min(v for v in paper if v) - 2, max(v for v in paper if v) + 1.5)
            side.set_xlabel("paper: BERT-base, STS7 avg")
            side.set_title("DistillCSE paper")
        ax.barh(range(len(names)), means, xerr=errs, color="tab:blue", alpha=0.8, capsize=4)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([f"{ROW_LABELS[table][n]} (n={x['n']})" for n, x in zip(names, s)], fontsize=8)
        ax.invert_yaxis()
        low = min(means) - 3
        ax.set_xlim(low, max(m + e for m, e in zip(means, errs)) + 1.5)
        for i, (m, e) in enumerate(zip(means, errs)):
            ax.text(m + e + 0.1, i, f"{m:.2f}", va="center", fontsize=8)
        ax.set_xlabel(f"Spearman x100, average of {', '.join(tasks)}" if len(tasks) < 7 else "STS avg (7 tasks)")
        ax.set_title(f"Table {table}: mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(RESULTS / f"{STEM}_{table}_bars.png", dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        start = None
        for name, runs in rows.items():
            if not runs[0].get("train") and runs[0].get("dev") is not None and name == "initial-student":
                start = runs[0]["dev"]
        for i, (name, runs) in enumerate(rows.items()):
            hist = [r["train"]["dev_history"] for r in runs if r.get("train")]
            if not hist:
                continue
            steps = [h["step"] for h in hist[0]]
            curve = np.mean([[h["dev"] for h in hh] for hh in hist if len(hh) == len(steps)], axis=0)
            xs, ys = ([0] + steps, [start] + list(curve)) if start is not None else (steps, list(curve))
            # ten colours, then the same colours dashed with square markers: no two rows look alike
            ax.plot(xs, ys, marker="os"[i // 10 % 2], linestyle="-" if i < 10 else "--", color=f"C{i % 10}",
                    label=f"{name} (n={len(hist)})")
        ax.set_xlabel("training step")
        ax.set_ylabel("STS-B dev Spearman x100 (mean over seeds)")
        ax.set_title(f"Table {table}: STS-B dev during training")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{STEM}_{table}_dev_curves.png", dpi=110)
        plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only rebuild results/quality.{json,md} and plots")
    parser.add_argument("--steps", type=int, default=SETTINGS["steps"])
    parser.add_argument("--K", type=int, default=SETTINGS["K"])
    parser.add_argument("--lr", default=f"{DEFAULT_LR:g}",
                        help="learning rate of every trained row, or 'dev': the best of the --sweep on STS-B dev "
                             "(needs exactly one table in --tables); runs other than the default go to their own dir")
    parser.add_argument("--tables", default="AB", help="tables to run: A, B or AB (default)")
    parser.add_argument("--sweep", action="store_true",
                        help=f"only the STS-B dev lr sweep ({', '.join(f'{x:g}' for x in LR_SWEEP)}) of --tables")
    parser.add_argument("--p-sweep", action="store_true",
                        help=f"only the STS-B dev sweep of p ({', '.join(f'{x:g}' for x in P_SWEEP)}) for "
                             "the Group-P row of each of --tables (P_SWEEP_ROWS)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    tables = sorted(set(args.tables.upper()))
    if not tables or not set(tables) <= {"A", "B"}:
        parser.error("--tables takes A, B or AB")
    configure(args.steps, args.K)
    if args.lr == "dev":
        if len(tables) != 1:
            parser.error("--lr dev needs exactly one table in --tables")
        configure(args.steps, args.K, dev_chosen_lr(tables[0]), "chosen on STS-B dev by the lr sweep of the "
                  f"lr-{DEFAULT_LR:g} benchmark")
    elif float(args.lr) != DEFAULT_LR:
        configure(args.steps, args.K, float(args.lr), "set with --lr")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("sentence_transformers", "transformers", "mteb", "datasets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.report:
        report()
        return 0
    if args.p_sweep:
        for table in tables:
            p_sweep(table)
    elif args.sweep:
        for table in tables:
            lr_sweep(table, SWEEP_ROWS[table])
    else:
        for table, step in plan():
            if table in tables:
                step()
                report_quietly()
    report()
    return 0


def report_quietly() -> None:
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            report()
    except Exception as error:  # noqa: BLE001
        logger.warning("report failed: %s", error)


if __name__ == "__main__":
    sys.exit(main())
