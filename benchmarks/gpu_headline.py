"""The headline rows of quality tables A, B and C at >= 2,000 steps on one GPU (issue 15, item 4).

Most important first (``QUEUE``), within a time budget (default 450 s of a 10-minute call on one H100):
each run starts only if the mean time of the runs so far still fits, and the results file is rewritten
after every run, so a call cut short keeps what finished. bf16 forward passes (the losses in float32), batch 64
(``--batch-size``).

The GPU machine has sentence-transformers 6.0.1 and neither ``datasets`` nor ``mteb``, and takes at most
64 MiB of files along. Hence:

- ``--make-bundle`` (here, once) writes ``benchmarks/cache/gpu_bundle/`` (about 55 MB): all-MiniLM-L6-v2 in
  float16, the STS files (gzip), the Wikipedia sentences the runs use (gzip) and sentence-transformers
  6.2's source (the package needs >= 6.2; it runs on the machine's transformers 5.17). The device call
  carries that folder. all-mpnet-base-v2 (420 MB) does not fit: table C runs only where ``--mpnet DIR``
  names a copy of it.
- Training is a plain loop over the benchmark's own losses (``quality.rows.build_loss``): the Trainer
  needs ``datasets``. STS-B dev every ``eval_steps``, the best state kept (selected on dev only).
- Scores are ST's ``EmbeddingSimilarityEvaluator`` (cosine Spearman x 100, MTEB's main score for these
  tasks) on each task's test file, through the package's ``sts_dev_evaluator``; max length 256.

    python benchmarks/gpu_headline.py --make-bundle      # here: benchmarks/cache/gpu_bundle
    python benchmarks/gpu_headline.py --smoke            # here, CPU: 3 steps of every row, 64 pairs per task
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_headline.py --out $OUT   # on the GPU, carrying the bundle
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
BUNDLE = BENCHMARKS / "cache" / "gpu_bundle"
sys.path[:0] = [str(BENCHMARKS), str(BENCHMARKS.parent)]  # the package from this checkout: the GPU machine lacks it

STS_FILES = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "STSBenchmark-dev", "STSBenchmark-train",
             "SICK-R", "SICK-R-test")
ST_SOURCE = "sentence_transformers.tar.xz"


@dataclass(frozen=True)
class Job:
    """One run of the queue: a row of a quality table at one seed (``lr=None``: an untrained row)."""

    table: str
    row: str
    seed: int | None = 0
    lr: float | None = None


# Each table's lrs and p come from its CPU sweeps on STS-B dev at the table's own steps, where they have chosen
# (``quality.runner.chosen_lr``: an interior best, or a lowest point under the untrained start); the lrs in
# QUEUE are the fallback for rows no sweep has chosen yet. Table B's Group-P runs at the 600-step sweep's best p
# once that sweep has finished (3 seeds per point), else at the 150-step sweep's (0.5).
RESULTS = BENCHMARKS / "results"
LR_SWEEP_RUNS = {"A": RESULTS / "quality_runs-steps1000-K2-lrdev",
                 "B": RESULTS / "quality_runs-steps600-K4-lrdev",
                 "C": RESULTS / "quality_runs-steps1000-K2-lrdev"}
P_SWEEP_RUNS = (RESULTS / "quality_runs-steps600-K4-lrdev", RESULTS / "quality_runs-steps150-K2")
QUEUE: tuple[Job, ...] = (
    Job("A", "initial-student", None),
    Job("A", "teacher", None),
    Job("A", "embed-distill+group-p", 0, 4e-4),
    Job("A", "embed-distill-cosine", 0, 4e-4),
    Job("A", "embed-distill+group-p-balanced", 0, 4e-4),
    Job("B", "simcse", 0, 1e-4),
    Job("B", "group-p-devp", 0, 1e-4),
    Job("C", "embed-distill+group-p", 0, 1e-4),
    Job("C", "embed-distill-cosine", 0, 1e-4),
    Job("A", "embed-distill+vanilla-kd", 0, 4e-4),
    Job("A", "group-p-no-contrastive", 0, 4e-4),
    Job("C", "group-p-no-contrastive", 0, 1e-4),
    Job("A", "embed-distill+group-p", 1, 4e-4),
    Job("A", "embed-distill-cosine", 1, 4e-4),
    Job("B", "simcse", 1, 1e-4),
    Job("B", "group-p-devp", 1, 1e-4),
    Job("A", "mse", 0, 4e-4),
)


def make_bundle(steps: int, batch_size: int, target: Path = BUNDLE) -> int:
    """Write what the GPU run reads into ``target``; returns its size in bytes."""
    import sentence_transformers
    from common import STS_DIR, load_teacher, wiki_sentences

    shutil.rmtree(target, ignore_errors=True)
    (target / "sts").mkdir(parents=True)
    for name in STS_FILES:
        (target / "sts" / f"{name}.jsonl.gz").write_bytes(gzip.compress((STS_DIR / f"{name}.jsonl").read_bytes()))
    with gzip.open(target / "wiki_sentences.txt.gz", "wt", encoding="utf-8") as out:
        out.write("\n".join(wiki_sentences(steps * batch_size)) + "\n")
    load_teacher().half().save(str(target / "all-MiniLM-L6-v2"))
    with tarfile.open(target / ST_SOURCE, "w:xz") as tar:
        tar.add(Path(sentence_transformers.__file__).parent, "sentence_transformers",
                filter=lambda info: None if "__pycache__" in info.name else info)
    return sum(path.stat().st_size for path in target.rglob("*") if path.is_file())


def use_bundle(bundle: Path) -> None:
    """Point the benchmarks at the bundle's data and put its sentence-transformers first on the path.

    Must run before ``common`` (which reads the data paths) and sentence-transformers are imported.
    """
    os.environ["DISTILLCSE_STS_DIR"] = str(bundle / "sts")
    os.environ["DISTILLCSE_WIKI_CORPUS"] = str(bundle / "wiki_sentences.txt.gz")
    site = Path("/tmp/gpu_headline_site")
    if not (site / "sentence_transformers").is_dir():
        with tarfile.open(bundle / ST_SOURCE) as tar:
            tar.extractall(site, filter="data")
    sys.path.insert(0, str(site))


def chosen_lrs(sweep_runs: Mapping[str, Path]) -> dict[str, dict[str, float]]:
    """``{table: {sweep row: lr}}`` of each table's lr sweep in its runs folder (the rows whose sweep has chosen)."""
    from quality.rows import read_best_lrs

    return {table: lrs for table, runs in sweep_runs.items() if (lrs := read_best_lrs(runs, table))}


def sweep_p(table: str) -> float | None:
    """The table's best p on STS-B dev: from the first sweep of ``P_SWEEP_RUNS`` that has finished."""
    from quality.rows import read_best_p

    return next((p for runs in P_SWEEP_RUNS if (p := read_best_p(runs, table)) is not None), None)


def job_spec(job: Job):
    """(base row, Row at its p, K) of a job; ``-devp`` rows take :func:`sweep_p`."""
    from quality.rows import row_spec

    return row_spec(job.table, job.row, 2, sweep_p(job.table))


def job_lr(job: Job, lrs: Mapping[str, Mapping[str, float]]) -> tuple[float | None, str]:
    """The lr of a job and where it came from: its table's dev sweep of its family if it chose, else QUEUE's."""
    if job.lr is None:
        return None, "untrained"
    base, spec, _ = job_spec(job)
    family = spec.lr_row or base
    if family in lrs.get(job.table, {}):
        return lrs[job.table][family], f"STS-B dev sweep of table {job.table} ({family})"
    return job.lr, "fixed (see QUEUE)"


def fits(elapsed: float, durations: Sequence[float], budget: float) -> bool:
    """Whether one more run fits the budget, judged by the mean duration of the trained runs so far."""
    expected = sum(durations) / len(durations) if durations else 0.0
    return elapsed + expected <= budget


def batches(count: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of indices into ``count`` texts: epochs of a seeded shuffle, last partial batch dropped."""
    import random

    rng, order, out = random.Random(seed), [], []
    while len(out) < steps:
        if len(order) < batch_size:
            order = list(range(count))
            rng.shuffle(order)
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def bf16_forward(model) -> None:
    """Run the student's forward pass under bf16 autocast and hand float32 embeddings to the loss: the
    similarities and the teacher's sharpened distribution (temperature 0.0125) stay in float32."""
    import torch

    forward, device_type = model.forward, model.device.type

    def autocast_forward(features, *args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            output = forward(features, *args, **kwargs)
        output["sentence_embedding"] = output["sentence_embedding"].float()
        return output

    model.forward = autocast_forward


class Runner:
    """Trains and scores the queue's jobs on one device, keeping every model a later job needs as teacher."""

    def __init__(self, steps: int, batch_size: int, device: str, pairs: int | None, mpnet: Path | None,
                 minilm: Path) -> None:
        from quality.rows import Settings

        self.settings = Settings(steps=steps, batch_size=batch_size, lr=None)
        self.device, self.pairs, self.models = device, pairs, {"minilm": minilm, "mpnet": mpnet}
        self.embeddings: dict[tuple[str, str], Any] = {}
        self.simcse_teacher = None  # table B's SimCSE seed 0, the teacher of its distilled rows

    def load(self, name: str):
        import torch
        from sentence_transformers import SentenceTransformer

        from distillcse_st.training.pruning import prune_layers

        path = self.models[name.removeprefix("pruned-")]
        if path is None:
            raise FileNotFoundError("all-mpnet-base-v2 is not on this machine (--mpnet)")
        model = SentenceTransformer(str(path), device=self.device, local_files_only=True,
                                    model_kwargs={"dtype": torch.float32})
        model.max_seq_length = self.settings.max_seq_length
        if name.startswith("pruned-"):
            from common import STUDENT_LAYERS

            prune_layers(model, STUDENT_LAYERS)
        return model

    def texts(self, table: str) -> list[str]:
        from quality.rows import corpus_stsb, corpus_wiki

        return corpus_wiki(self.settings) if table in ("A", "C") else corpus_stsb(self.settings)[0]

    def teacher_labels(self, table: str, key: str, model_factory: Callable[[], Any]):
        """Normalised teacher embeddings of the table's corpus, on the device (computed once per teacher)."""
        from distillcse_st.teachers import encode_stacked

        if (table, key) not in self.embeddings:
            self.embeddings[table, key] = encode_stacked(self.texts(table), [model_factory()], batch_size=512,
                                                         show_progress_bar=False).to(self.device)
        return self.embeddings[table, key]

    def setup(self, job: Job):
        """(student, labels or None) of a job."""
        base = job_spec(job)[0]
        if job.table == "A":
            return self.load("pruned-minilm"), self.teacher_labels("A", "minilm", lambda: self.load("minilm"))
        if job.table == "C":
            return self.load("minilm"), self.teacher_labels("C", "mpnet", lambda: self.load("mpnet"))
        if base == "simcse":
            return self.load("pruned-minilm"), None
        return self.load("pruned-minilm"), self.teacher_labels("B", "simcse-0", lambda: self.simcse_teacher)

    def evaluate(self, model, tasks: Sequence[str]) -> dict[str, float]:
        """Cosine Spearman x 100 on each task's test file (the first ``pairs`` pairs with ``--smoke``)."""
        from quality.rows import EVAL_MAX_SEQ_LENGTH, sts_file

        from distillcse_st.evaluation import sts_dev_evaluator

        model.eval()
        length, model.max_seq_length = model.max_seq_length, EVAL_MAX_SEQ_LENGTH
        scores = {}
        for task in tasks:
            evaluator = sts_dev_evaluator(sts_file(f"{task}.jsonl"), name=task, batch_size=256)
            if self.pairs:
                for column in ("sentences1", "sentences2", "scores"):
                    setattr(evaluator, column, getattr(evaluator, column)[: self.pairs])
            scores[task] = 100 * evaluator(model)[evaluator.primary_metric]
        model.max_seq_length = length
        return scores

    def dev(self, model) -> float:
        return self.evaluate(model, ["STSBenchmark-dev"])["STSBenchmark-dev"]

    def train(self, job: Job, lr: float) -> tuple[Any, dict[str, Any]]:
        """The plain training loop: AdamW, linear decay, bf16 forward passes on CUDA, best dev state kept."""
        import torch
        from common import set_seed
        from quality.rows import build_loss
        from sentence_transformers.util import batch_to_device

        set_seed(job.seed)
        model, labels = self.setup(job)
        _, spec, _ = job_spec(job)
        loss = build_loss(spec, model, None if labels is None else labels.shape[1]).to(self.device)
        bf16_forward(model)
        texts = self.texts(job.table)
        params = list({id(p): p for p in [*model.parameters(), *loss.parameters()]}.values())
        optimizer = torch.optim.AdamW(params, lr=lr)
        steps = self.settings.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
        best, best_step, history, state = -1.0, 0, [], None
        start = time.perf_counter()
        model.train()
        for step, batch in enumerate(batches(len(texts), self.settings.batch_size, steps, job.seed), start=1):
            features = batch_to_device(model.preprocess([texts[i] for i in batch]), self.device)
            target = None if labels is None else labels[batch]
            value = loss([features], target)
            value.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if step % self.settings.eval_steps == 0 or step == steps:
                score = self.dev(model)
                model.train()
                history.append({"step": step, "dev": score})
                if score > best:
                    best, best_step = score, step
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        return model, {"best_dev": best, "best_step": best_step, "dev_history": history,
                       "train_seconds": time.perf_counter() - start}

    def run(self, job: Job, lr: float | None) -> dict[str, Any]:
        from quality.rows import EVAL_MODELS, TASKS

        if lr is None:
            model, record = self.load(EVAL_MODELS[job.table, job.row]), {}
            record["best_dev"] = self.dev(model)
        else:
            model, record = self.train(job, lr)
            if (job.table, job.row, job.seed) == ("B", "simcse", 0):
                self.simcse_teacher = model
        scores = self.evaluate(model, TASKS[job.table])
        return {**record, "scores": scores, "average": sum(scores.values()) / len(scores)}


def markdown(result: dict[str, Any]) -> str:
    from quality.rows import ROWS

    lines = [f"# GPU headline runs ({result['machine'].get('gpu', 'no GPU')}, {result['machine']['date']})", "",
             f"{result['settings']['steps']} steps of batch {result['settings']['batch_size']}, bf16 forward passes, "
             f"STS-B dev every {result['settings']['eval_steps']} steps (best kept); cosine Spearman x 100 on "
             "each task's test file (ST's EmbeddingSimilarityEvaluator), max length 256; one seed per line.", "",
             "| table | row | seed | lr | avg | STS-B dev | tasks |", "|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        seed = "" if run["seed"] is None else run["seed"]
        tasks = ", ".join(f"{task} {score:.2f}" for task, score in run["scores"].items())
        lines.append(f"| {run['table']} | {ROWS[run['table']][run['row']].label} | {seed} | {run['lr'] or ''} | "
                     f"{run['average']:.2f} | {run['best_dev']:.2f} | {tasks} |")
    lines += ["", "Skipped: " + ("; ".join(f"{s['table']}/{s['row']} seed {s['seed']}: {s['reason']}"
                                           for s in result["skipped"]) or "none") + ".", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-bundle", action="store_true", help="write benchmarks/cache/gpu_bundle and stop")
    parser.add_argument("--smoke", action="store_true", help="CPU check: 3 steps of batch 8, 64 pairs per task")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no run that would end after this")
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    parser.add_argument("--mpnet", type=Path, default=None, help="all-mpnet-base-v2 in ST format (table C)")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results")
    args = parser.parse_args()
    if args.make_bundle:
        size = make_bundle(args.steps, args.batch_size, args.bundle)
        print(f"{args.bundle}: {size / 2**20:.1f} MiB")
        return 0
    if args.smoke:
        args.steps, args.batch_size, args.budget_s = 3, 8, float("inf")
    if args.bundle.is_dir():
        use_bundle(args.bundle)

    import torch
    from common import machine_info, teacher_path

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_float32_matmul_precision("high")
    minilm = args.bundle / "all-MiniLM-L6-v2" if args.bundle.is_dir() else Path(teacher_path())
    runner = Runner(args.steps, args.batch_size, device, 64 if args.smoke else None, args.mpnet, minilm)
    lrs = chosen_lrs(LR_SWEEP_RUNS)
    result: dict[str, Any] = {"machine": machine_info(), "device": device,
                              "settings": runner.settings.record() | {"lr": "per row"}, "runs": [], "skipped": []}
    started, durations = time.perf_counter(), []
    stem = "gpu_headline-smoke" if args.smoke else f"gpu_headline-steps{args.steps}"
    for job in QUEUE:
        lr, source = job_lr(job, lrs)
        reason = None
        if job.table == "C" and args.mpnet is None:
            reason = "all-mpnet-base-v2 not on this machine (--mpnet)"
        elif job.table == "B" and job.row != "simcse" and runner.simcse_teacher is None:
            reason = "its teacher, B/simcse seed 0, did not run"
        elif not fits(time.perf_counter() - started, durations if lr else [], args.budget_s):
            reason = f"time budget of {args.budget_s:.0f} s"
        if reason:
            result["skipped"].append({"table": job.table, "row": job.row, "seed": job.seed, "reason": reason})
            continue
        begin = time.perf_counter()
        run = runner.run(job, lr)
        if lr:
            durations.append(time.perf_counter() - begin)
        result["runs"].append({"table": job.table, "row": job.row, "seed": job.seed, "lr": lr, "lr_source": source,
                               "seconds": time.perf_counter() - begin, **run})
        print(f"{job.table}/{job.row} seed {job.seed}: avg {run['average']:.2f}, dev {run['best_dev']:.2f} "
              f"({time.perf_counter() - begin:.0f} s)", flush=True)
        result["elapsed_s"] = time.perf_counter() - started
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (args.out / f"{stem}.md").write_text(markdown(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
