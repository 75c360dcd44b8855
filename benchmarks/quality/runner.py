"""The quality benchmark's runs: train a row on ``SentenceTransformerTrainer`` (the package's stage runner),
score it on its table's STS tasks, write its run file; the lr and p sweeps on STS-B dev.

Training goes through :func:`distillcse_st.training.stages.run_stage`: STS-B dev every ``eval_steps`` with
the best checkpoint kept, checkpoints in ``<model>.partial/`` so that an interrupted run resumes where it
stopped. The package's ``train_simcse``/``train_distill`` take only its own two losses; the rows here
also train with ST's and with ``InBatchDistillLoss``, so the loss is built here and handed to the stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    CACHE,
    MAX_SEQ_LENGTH,
    STS_DIR,
    load_mpnet,
    load_teacher,
    machine_info,
    pruned_student,
    read_json,
    set_seed,
    write_json,
)

from .pairs import Pair, Triplet, table_e_data
from .rows import (
    E_BLOCKS,
    EVAL_MAX_SEQ_LENGTH,
    EVAL_MODELS,
    KNOB_ROW,
    LR_FLOOR,
    LR_GRID,
    P_CHOICES,
    P_GRID,
    P_SWEEP,
    P_SWEEP_ROWS,
    P_SWEEP_SEEDS,
    ROWS,
    TABLE_P,
    TASKS,
    W_GRID,
    W_LADDER,
    Knobs,
    Row,
    Settings,
    build_loss,
    corpus_stsb,
    corpus_wiki,
    read_best_lrs,
    read_best_p,
    read_knobs,
    row_spec,
    run_name,
)

logger = logging.getLogger("quality")

TEACHER_EMBEDDINGS = CACHE / "teacher_embeddings"  # Wikipedia prefixes, shared by every benchmark
PCA_FIT_ROWS = 20_000  # the sentences ST's model_distillation.py fits its PCA on


def teacher_embeddings(path: Path, texts: Sequence[str], model_factory: Callable[[], Any]) -> np.ndarray:
    """L2-normalised teacher embeddings of ``texts`` (max length 32), cached as float32 .npy.

    ``texts`` are always a prefix of the same ordered corpus, so a longer cached array serves a shorter run.
    """
    from distillcse_st.teachers import encode_stacked

    if path.is_file():
        array = np.load(path)
        if len(array) >= len(texts):
            return array[: len(texts)]
    model = model_factory()
    start = time.perf_counter()
    array = encode_stacked(list(texts), [model], batch_size=128, show_progress_bar=False).numpy().astype(np.float32)
    logger.info("teacher embeddings %s: %d texts in %.1f s", path.name, len(texts), time.perf_counter() - start)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return array


def stacked(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """K teachers' embeddings as one label (uniform weights), see ``stack_teacher_embeddings``."""
    from distillcse_st.similarity import stack_teacher_embeddings

    return stack_teacher_embeddings([torch.from_numpy(a) for a in arrays], [1.0 / len(arrays)] * len(arrays)).numpy()


def pca_reduced(array: np.ndarray, width: int, fit_rows: int = PCA_FIT_ROWS) -> np.ndarray:
    """``array`` through its top ``width`` principal components, fitted on its first ``fit_rows`` rows: ST's
    model_distillation.py route to a narrower student (a bias-free Dense layer with ``PCA.components_``, which
    projects without centring)."""
    fit = array[:fit_rows].astype(np.float64)
    _, _, components = np.linalg.svd(fit - fit.mean(axis=0), full_matrices=False)
    return (array @ components[:width].T).astype(np.float32)


def dev_evaluator():
    from distillcse_st.evaluation import sts_dev_evaluator

    return sts_dev_evaluator(STS_DIR / "STSBenchmark-dev.jsonl", batch_size=128)


def dev_score(model) -> float:
    evaluator = dev_evaluator()
    return 100 * evaluator(model)[evaluator.primary_metric]


# ----------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Training:
    """What a run trains on: its dataset (a ``DatasetDict`` for ST's multi-objective rows), the student factory,
    the fields it adds to the run file, the label width, the live teacher factory of the rows that run one and
    the Trainer's batch sampler (pairs: ``no_duplicates``, so that no text is another pair's in-batch negative)."""

    data: Any
    init: Callable[[], Any]
    extra: dict[str, Any]
    teacher_dim: int | None = None
    teacher: Callable[[], Any] | None = None
    batch_sampler: str | None = None


@contextlib.contextmanager
def run_lock(model_dir: Path) -> Iterator[None]:
    """Hold ``<model>.lock`` while a run trains: a second process (``--runs`` beside the queue) that reaches the
    same run waits for it, then reads it back, instead of training the same model at once."""
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(model_dir.with_name(f"{model_dir.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def train(settings: Settings, name: str, training: Training, spec: Row, seed: int, lr: float) -> dict[str, Any]:
    """Train one run with the package's stage runner (or read it back when finished); resumes a partial run;
    one process at a time per run (:func:`run_lock`).

    A row with its own batch size runs as many steps fewer (and evaluates as much more rarely) as its batch is
    larger, so that it sees the same texts as the other rows."""
    from distillcse_st.training.outputs import start
    from distillcse_st.training.stages import STAGE_FILE, run_stage, training_arguments

    model_dir = settings.cache / "models" / name
    batch = spec.batch_size or settings.batch_size
    steps, eval_steps = (max(1, value * settings.batch_size // batch) for value in (settings.steps,
                                                                                   settings.eval_steps))
    shaping = ("steps", "batch_size", "max_seq_length", "eval_steps", "warmup_ratio", "scheduler")
    config = {"name": name, "loss_kind": spec.loss, "group_p": spec.group_p,
              "distillation_weight": spec.distillation_weight, "seed": seed, "lr": lr,
              "settings": {key: settings.record()[key] for key in shaping} | {
                  "steps": steps, "batch_size": batch, "eval_steps": eval_steps}}
    with run_lock(model_dir):
        if not (model_dir / STAGE_FILE).is_file():
            set_seed(seed)
            model = training.init()
            teacher = training.teacher() if training.teacher else None
            loss = build_loss(spec, model, training.teacher_dim, teacher)
            options = {"max_steps": steps, "per_device_train_batch_size": batch,
                       "learning_rate": lr, "warmup_steps": settings.warmup_ratio,  # a float: a ratio (transformers 5)
                       "lr_scheduler_type": settings.scheduler, "eval_steps": eval_steps,
                       "save_steps": eval_steps, "save_total_limit": 1, "seed": seed, "data_seed": seed,
                       "disable_tqdm": True}
            if training.batch_sampler:
                options["batch_sampler"] = training.batch_sampler
            start(model_dir, config, overwrite=False)
            run_stage(model, training.data, loss, training_arguments(model_dir, options), dev_evaluator(),
                      model_dir, config, settings.max_seq_length)
    stage = read_json(model_dir / STAGE_FILE)
    best = stage["best_checkpoint"]
    record = {**{k: config[k] for k in ("name", "loss_kind", "group_p", "distillation_weight", "seed", "lr",
                                        "settings")},
              "best_dev": stage["dev"], "best_step": int(best.rsplit("-", 1)[1]) if best else stage["steps"],
              "dev_history": stage["history"], "train_seconds": stage["train_runtime"], "model_dir": str(model_dir)}
    logger.info("%s: best dev %.2f at step %d", name, record["best_dev"], record["best_step"])
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


# ----------------------------------------------------------------------------------------------- run files


def run_path(settings: Settings, table: str, row: str, seed: int | None) -> Path:
    return settings.runs / table / (f"{row}.json" if seed is None else f"{row}-seed{seed}.json")


def is_done(settings: Settings, table: str, row: str, seed: int | None) -> bool:
    """Finished and scored on every task of its table (runs scored on fewer tasks are re-scored, not retrained),
    a ``-dev`` row with the knobs the knob sweep chooses now, and :func:`at_chosen_lr` (a sweep grown since
    redoes it)."""
    path = run_path(settings, table, row, seed)
    if not path.is_file():
        return False
    run = read_json(path)
    return (set(TASKS[table]) <= set(run["scores"])
            and (not row.endswith("-dev") or knobs_of(run) == read_knobs(settings.runs, table))
            and at_chosen_lr(settings, table, row, run))


def at_chosen_lr(settings: Settings, table: str, row: str, run: dict[str, Any]) -> bool:
    """A run trained at the lr its row trains at now: always under a fixed ``--lr`` and for an untrained row;
    under ``--lr dev`` not once its family's sweep has grown to another lr, or is growing (no choice yet)."""
    if settings.lr is not None or not run.get("train"):
        return True
    try:
        return run["train"]["lr"] == row_lr(settings, table, row)
    except LookupError:
        return False


def knobs_of(run: dict[str, Any]) -> Knobs:
    """The in-batch term a run trained with (its train record)."""
    return Knobs(run["train"]["group_p"], run["train"]["distillation_weight"])


def write_run(settings: Settings, table: str, row: str, seed: int | None, scores: dict[str, float],
              extra: dict[str, Any]) -> None:
    result = {"table": table, "row": row, "label": ROWS[table][row].label if row in ROWS[table] else row,
              "seed": seed, "scores": scores, "average": sum(scores.values()) / len(scores), **extra,
              "settings": settings.record(), "machine": machine_info()}
    write_json(run_path(settings, table, row, seed), result)
    logger.info("DONE %s/%s seed %s: avg %.2f %s", table, row, seed, result["average"],
                {k: round(v, 2) for k, v in scores.items()})


def minilm_student():
    """The full all-MiniLM-L6-v2 at the training max length: table C and D's student, table A's teacher."""
    return load_teacher(MAX_SEQ_LENGTH)


MODELS: dict[str, Callable[[], Any]] = {"pruned-minilm": pruned_student, "minilm": minilm_student,
                                        "mpnet": lambda: load_mpnet(MAX_SEQ_LENGTH)}


def eval_only(settings: Settings, table: str, row: str) -> None:
    """An untrained row: its model scored once per task list (cached across benchmarks), dev at max length 32."""
    if is_done(settings, table, row, None):
        return
    key = EVAL_MODELS[table, row]
    path = CACHE / "scores" / f"{key}-{'-'.join(TASKS[table])}.json"
    if not path.is_file():
        model = MODELS[key]()
        dev = dev_score(model)
        write_json(path, {"dev": dev, "scores": final_scores(model, TASKS[table])})
    cached = read_json(path)
    write_run(settings, table, row, None, cached["scores"], {"train": None, "dev": cached["dev"]})


# ----------------------------------------------------------------------------------------------- rows


def training_data(settings: Settings, table: str, base: str, K: int) -> Training:
    """What a row of ``table`` trains on."""
    from datasets import Dataset

    if table in E_BLOCKS:
        return pairs_training(table, ROWS[table][base])
    texts, labels, init, extra = corpus_data(settings, table, base, K)
    data = {"text": list(texts)} | ({} if labels is None else {"label": list(labels)})
    return Training(Dataset.from_dict(data), init, extra, None if labels is None else labels.shape[1])


def corpus_data(settings: Settings, table: str, base: str, K: int) -> tuple[list[str], np.ndarray | None,
                                                                          Callable[[], Any], dict[str, Any]]:
    """(texts, labels, student factory, extra run fields) of a row of ``table``."""
    if table in ("A", "C"):
        texts = corpus_wiki(settings)
        minilm = teacher_embeddings(TEACHER_EMBEDDINGS / "wiki-all-minilm-l6-v2.npy", texts, minilm_student)
        needs_mpnet = table == "C" or base == "multi-teacher"
        mpnet = teacher_embeddings(TEACHER_EMBEDDINGS / "wiki-all-mpnet-base-v2.npy", texts,
                                   MODELS["mpnet"]) if needs_mpnet else None
        if base == "multi-teacher":
            return texts, stacked([minilm, mpnet]), pruned_student if table == "A" else minilm_student, {
                "components": ["all-MiniLM-L6-v2", "all-mpnet-base-v2"], "weights": [0.5, 0.5]}
        if base == "embed-distill-pca":
            width = minilm.shape[1]
            return texts, pca_reduced(mpnet, width), minilm_student, {
                "teacher_reduction": f"PCA to {width}-d, fitted on the first {PCA_FIT_ROWS:,} training sentences"}
        return (texts, minilm, pruned_student, {}) if table == "A" else (texts, mpnet, minilm_student, {})
    texts, stats = corpus_stsb(settings)
    extra: dict[str, Any] = {"corpus": stats}
    if table == "D":
        labels = None if base == "simcse" else teacher_embeddings(
            settings.cache / "teacher_embeddings" / "D-all-minilm-l6-v2.npy", texts, minilm_student)
        return texts, labels, minilm_student, extra
    if base == "simcse":
        return texts, None, pruned_student, extra
    simcse_lr = sweep_lr(settings, "B", "simcse")
    if base == "round-2":
        teachers = [run_row(settings, "B", "distillcse", 0, train_only=True)]
    else:
        teachers = [run_row(settings, "B", "simcse", seed, lr=simcse_lr, train_only=True)
                    for seed in range(K if base in ("components", "distillcse") else 1)]
    arrays = [teacher_embeddings(settings.cache / "teacher_embeddings" / f"{t['name'].replace('/', '-')}.npy", texts,
                                 lambda t=t: load_student(t["model_dir"])) for t in teachers]
    return texts, stacked(arrays), pruned_student, extra | {"teachers": [t["name"] for t in teachers]}


class CachedTeacher:
    """A teacher for ``add_teacher_embeddings`` that serves each text's cached embedding (a label path shared
    with the package, each text encoded once per teacher)."""

    def __init__(self, texts: Sequence[str], array: np.ndarray) -> None:
        self.rows = dict(zip(texts, array))
        self.width = array.shape[1]

    def get_embedding_dimension(self) -> int:
        return self.width

    def encode(self, texts: Sequence[str], **_: Any) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.rows[text] for text in texts]))


def digest(texts: Sequence[str]) -> str:
    """A short digest of ``texts`` (in order), naming the cache of their embeddings."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]


class CachedGuide(torch.nn.Module):
    """GISTEmbedLoss's guide of another tokenizer, served from a cache. GISTEmbedLoss decodes the student's
    tokens and has the guide embed that text at every step; this guide looks the text up in ``array``, the
    guide's embeddings of :func:`decoded_texts`, computed once (the loss compares them by cosine only)."""

    def __init__(self, guide, texts: Sequence[str], array: np.ndarray) -> None:
        super().__init__()
        self.tokenizer, self.max_seq_length = guide.tokenizer, guide.max_seq_length
        self.rows = {text: row for row, text in enumerate(texts)}
        self.register_buffer("table", torch.from_numpy(array))

    @property
    def device(self) -> torch.device:
        return self.table.device

    def preprocess(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"row": torch.tensor([self.rows[text] for text in texts])}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**features, "sentence_embedding": self.table[features["row"]]}


def decoded_texts(student, texts: Sequence[str]) -> list[str]:
    """``texts`` as GISTEmbedLoss hands them to a guide of another tokenizer: the student's tokens, decoded."""
    input_ids = student.preprocess(list(texts))["input_ids"]
    return student.tokenizer.batch_decode(input_ids, skip_special_tokens=True)


def cached_guide(student: str, teacher: str, pairs: Sequence[Pair]) -> Callable[[], CachedGuide]:
    """The factory of ``teacher`` as a :class:`CachedGuide` over the pairs' texts, cached under their digest."""
    texts = sorted(set(decoded_texts(MODELS[student](), list({text for pair in pairs for text in pair}))))
    array = teacher_embeddings(TEACHER_EMBEDDINGS / f"guide-{digest(texts)}-{teacher}.npy", texts, MODELS[teacher])
    return lambda: CachedGuide(MODELS[teacher](), texts, array)


def cached_teacher(teacher: str, pairs: Sequence[Pair], triplets: Sequence[Triplet]) -> CachedTeacher:
    """``teacher``'s embeddings of every text of table E's data, cached under the texts' digest."""
    texts = sorted({text for row in [*pairs, *triplets] for text in row})
    path = TEACHER_EMBEDDINGS / f"pairs-{digest(texts)}-{teacher}.npy"
    return CachedTeacher(texts, teacher_embeddings(path, texts, MODELS[teacher]))


def columns(rows: Sequence[tuple[str, ...]], names: Sequence[str]) -> dict[str, list[str]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def pairs_training(table: str, spec: Row) -> Training:
    """A table E row: (anchor, positive) pairs, with precomputed teacher labels where its loss reads them
    (``add_teacher_embeddings`` over both columns), triplets with the teacher's margin for MarginMSELoss, or
    the pairs beside their texts with teacher embeddings for ST's multi-objective training."""
    from datasets import Dataset, DatasetDict

    from distillcse_st.teachers import add_teacher_embeddings

    student, teacher = E_BLOCKS[table]
    pairs, triplets, stats = table_e_data()
    cached = cached_teacher(teacher, pairs, triplets)
    names = ["anchor", "positive"]
    data = Dataset.from_dict(columns(pairs, names))
    if spec.loss in ("mnrl+kd", "gist+kd", "cached-mnrl+kd", "mnrl+kd|embed-distill"):
        data = add_teacher_embeddings(data, [cached], column=names, show_progress_bar=False)
    if spec.loss == "margin-mse":
        anchor, positive, negative = (cached.encode(column) for column in zip(*triplets))
        margins = ((anchor * positive).sum(-1) - (anchor * negative).sum(-1)).tolist()
        data = Dataset.from_dict(columns(triplets, [*names, "negative"]) | {"label": margins})
    elif spec.loss.endswith("|embed-distill"):
        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        distill = add_teacher_embeddings(Dataset.from_dict({"text": texts}), [cached], show_progress_bar=False)
        data = DatasetDict({"pairs": data, "distill": distill})
    extra = {"data": stats, "teacher": teacher}
    live = MODELS[teacher] if spec.loss in ("mnrl+kd-live", "gist", "gist+kd") else None
    if spec.loss in ("gist", "gist+kd") and teacher == "mpnet":  # another tokenizer: the guide embeds decoded text
        live, extra["guide"] = cached_guide(student, teacher, pairs), "cached: CachedGuide"
    return Training(data, MODELS[student], extra, cached.get_embedding_dimension(), live, "no_duplicates")


def load_student(model_dir: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_dir, device="cpu")


def sweep_lr(settings: Settings, table: str, sweep_row: str) -> float:
    """The benchmark's lr, or under ``--lr dev`` the lr its sweep chose for ``sweep_row`` (see :func:`chosen_lr`)."""
    if settings.lr is not None:
        return settings.lr
    best = read_best_lrs(settings.runs, table).get(sweep_row)
    if best is None:
        raise LookupError(f"table {table}: no chosen lr for {sweep_row} yet (run --sweep --tables {table})")
    return best


def row_lr(settings: Settings, table: str, row: str) -> float:
    """The lr a row trains at: the benchmark's, or under ``--lr dev`` its family's choice (:func:`sweep_lr`);
    a ``-dev`` row's is its base row's, whatever the knobs."""
    base, spec, _ = row_spec(table, row.removesuffix("-dev"), settings.K, read_best_p(settings.runs, table))
    return sweep_lr(settings, table, spec.lr_row or base)


def run_row(settings: Settings, table: str, row: str, seed: int, lr: float | None = None,
            train_only: bool = False, knobs: Knobs | None = None) -> dict[str, Any] | None:
    """Train (or read back) one row at one seed, then score it unless ``train_only``; None when already done.
    ``knobs`` sets a ``-dev`` row's in-batch term (default: the knob sweep's choice)."""
    if not train_only and is_done(settings, table, row, seed):
        return None
    best_p, knobs = read_best_p(settings.runs, table), knobs or read_knobs(settings.runs, table)
    base, spec, K = row_spec(table, row, settings.K, best_p, knobs)
    lr = lr or row_lr(settings, table, row)
    training = training_data(settings, table, base, K)
    record = train(settings, run_name(table, row, seed, lr, best_p, knobs), training, spec, seed, lr)
    if not train_only:
        write_run(settings, table, row, seed, final_scores(load_student(record["model_dir"]), TASKS[table]),
                  {"train": record, **training.extra})
    return record


# ----------------------------------------------------------------------------------------------- sweeps


def grown_grid(first: Sequence[float], scores: dict[str, float], above: Callable[[float], float | None],
               below: Callable[[float], float | None]) -> list[float]:
    """``first`` plus the points already scored (``scores`` keyed by ``f"{x:g}"``); once all are scored, plus the
    next point beyond the edge where the best sits: ``above(best)`` / ``below(best)``, None where the grid stops."""
    grid = sorted({*first, *map(float, scores)})
    if all(f"{x:g}" in scores for x in grid):
        best = max(grid, key=lambda x: scores[f"{x:g}"])
        step = above(best) if best == grid[-1] else below(best) if best == grid[0] else None
        if step is not None:
            grid = sorted({*grid, step})
    return grid


def lr_grid(table: str, devs: dict[str, float]) -> list[float]:
    """The table's :data:`LR_GRID` plus x2 / /2 steps while the best point found so far sits at the grid's edge,
    not below :data:`LR_FLOOR`. A grid whose every point scores under the untrained start still extends down:
    a smaller lr can end above the start (MNRL in table E2: 86.53 at 2.5e-5, 86.68 at 1.25e-5, start 86.61)."""
    return grown_grid(LR_GRID[table], devs, lambda lr: lr * 2, lambda lr: lr / 2 if lr / 2 >= LR_FLOOR else None)


def chosen_lr(table: str, devs: dict[str, float]) -> tuple[str, str] | None:
    """``(lr, why)``: the best lr on dev once the grid is done, interior or the lowest point when the grid has
    reached :data:`LR_FLOOR` with its best point there; None while the grid is unfinished."""
    grid = lr_grid(table, devs)
    if any(f"{lr:g}" not in devs for lr in grid):
        return None
    best = max(grid, key=lambda lr: devs[f"{lr:g}"])
    if grid[0] < best < grid[-1]:
        return f"{best:g}", "interior"
    if best == grid[0]:
        return f"{best:g}", f"lowest lr: the grid stops at {LR_FLOOR:g}, where the model barely moves"
    return None


def lr_sweep_step(settings: Settings, table: str, row: str) -> bool:
    """Train ``row`` (seed 0) at the next lr of its grid (the middle first) and record its best STS-B dev;
    False when the grid is done (see :func:`chosen_lr`). No test task is read."""
    path = settings.runs / table / "lr-sweep.json"
    sweep = read_json(path) if path.is_file() else {"rows": {}}
    devs = sweep["rows"].setdefault(row, {})
    todo = [lr for lr in lr_grid(table, devs) if f"{lr:g}" not in devs]
    if not todo:
        return False
    lr = todo[len(todo) // 2]
    devs[f"{lr:g}"] = run_row(settings, table, row, 0, lr=lr, train_only=True)["best_dev"]
    choice = chosen_lr(table, devs)
    sweep.setdefault("best_lr", {})[row] = choice and float(choice[0])
    sweep.setdefault("chosen_because", {})[row] = choice and choice[1]
    sweep.update(rule=f"best STS-B dev (seed 0) over a grid extended until the best point is interior, or down to "
                      f"{LR_FLOOR:g} while the lowest lr is best", machine=machine_info())
    write_json(path, sweep)
    return True


def ladder_grid(first: Sequence[float], ladder: Sequence[float], scores: dict[str, float]) -> list[float]:
    """``first`` plus the points already scored, extended by the next ``ladder`` value beyond an edge while the
    best score sits there (``scores`` keyed by ``f"{x:g}"``)."""
    return grown_grid(first, scores, lambda x: min((v for v in ladder if v > x), default=None),
                      lambda x: max((v for v in ladder if v < x), default=None))


def p_grid(means: dict[str, float]) -> list[float]:
    """:data:`P_GRID` plus the points already swept, extended by the next :data:`P_SWEEP` value beyond an edge
    while the best mean dev sits there (``means`` keyed by ``f"{p:g}"``)."""
    return ladder_grid(P_GRID, P_SWEEP, means)


def chosen_p(means: dict[str, float]) -> str | None:
    """The best p on mean dev once :func:`p_grid` is done (interior, or at an end of :data:`P_SWEEP`)."""
    grid = p_grid(means)
    if any(f"{p:g}" not in means for p in grid):
        return None
    return f"{max(grid, key=lambda p: means[f'{p:g}']):g}"


def p_sweep(settings: Settings, table: str) -> None:
    """``P_SWEEP_ROWS[table]`` at each p of :func:`p_grid`, seeds :data:`P_SWEEP_SEEDS`: the best STS-B dev of
    every run, their mean per p (no test task is read). Resumable run by run."""
    path = settings.runs / table / "p-sweep.json"
    sweep = read_json(path) if path.is_file() else {}
    row = P_SWEEP_ROWS[table]
    per_seed: dict[str, dict[str, float]] = sweep.setdefault("per_seed", {})
    while todo := [p for p in p_grid(sweep.get(row, {}))
                   if len(per_seed.get(f"{p:g}", {})) < len(P_SWEEP_SEEDS)]:
        group_p = f"{todo[len(todo) // 2]:g}"
        devs = per_seed.setdefault(group_p, {})
        seed = next(s for s in P_SWEEP_SEEDS if str(s) not in devs)
        devs[str(seed)] = run_row(settings, table, f"{row}-p{group_p}", seed, train_only=True)["best_dev"]
        sweep[row] = {p: float(np.mean(list(d.values()))) for p, d in per_seed.items()
                      if len(d) == len(P_SWEEP_SEEDS)}
        sweep.update(best_p_on_dev=chosen_p(sweep[row]), seeds=list(P_SWEEP_SEEDS), table_p=f"{TABLE_P:g}",
                     lr=f"{sweep_lr(settings, table, row):g}", machine=machine_info())
        write_json(path, sweep)


def knob_sweep(settings: Settings, table: str) -> None:
    """Table E's in-batch term on STS-B dev (seed 0, at vanilla KD's lr): every group_p of :data:`P_CHOICES`
    (``None``: vanilla KD) at weight 1, then the weight of the best along :data:`W_LADDER` until the best point
    is interior; writes the choice as ``best`` (see ``read_knobs``). Resumable run by run; no test task is read."""
    path = settings.runs / table / "knob-sweep.json"
    lr = row_lr(settings, table, KNOB_ROW)
    sweep = read_json(path) if path.is_file() else {}
    if sweep.get("lr") != lr:  # the lr sweep grown since: its scores are of another lr
        sweep = {"group_p": {}, "distillation_weight": {}}
    sweep.update(row=KNOB_ROW, lr=lr, seed=0)

    def record(scores: dict[str, float], key: str, knobs: Knobs) -> None:
        scores[key] = run_row(settings, table, KNOB_ROW, 0, lr=lr, train_only=True, knobs=knobs)["best_dev"]
        write_json(path, sweep | {"machine": machine_info()})

    by_p, by_weight = sweep["group_p"], sweep["distillation_weight"]
    for p in P_CHOICES:
        key = "none" if p is None else f"{p:g}"
        if key not in by_p:
            record(by_p, key, Knobs(p, 1.0))
    best_key = max(by_p, key=by_p.__getitem__)
    group_p = None if best_key == "none" else float(best_key)
    by_weight["1"] = by_p[best_key]
    while todo := [w for w in ladder_grid(W_GRID, W_LADDER, by_weight) if f"{w:g}" not in by_weight]:
        record(by_weight, f"{todo[0]:g}", Knobs(group_p, todo[0]))
    weight = max(ladder_grid(W_GRID, W_LADDER, by_weight), key=lambda w: by_weight[f"{w:g}"])
    best = {"group_p": group_p, "distillation_weight": weight}
    if sweep.get("best") != best:  # a finished sweep rereads its file without rewriting it
        sweep["best"] = best
        write_json(path, sweep | {"machine": machine_info()})
