"""Evaluation: MTEB STS tasks from local jsonl files, ``mteb.evaluate`` runs, and the STS-B dev evaluator.

The modules import mteb, datasets and sentence-transformers only inside the functions that need them.
"""

from distillcse_st.evaluation.dev_evaluator import dev_file, metric_for_best_model, sts_dev_evaluator
from distillcse_st.evaluation.mteb_eval import evaluate_sts, format_table
from distillcse_st.evaluation.sts_tasks import (
    STS7,
    local_sts_task,
    mteb_task,
    read_sts_jsonl,
    resolve_tasks,
)

__all__ = [
    "STS7",
    "dev_file",
    "evaluate_sts",
    "format_table",
    "local_sts_task",
    "metric_for_best_model",
    "mteb_task",
    "read_sts_jsonl",
    "resolve_tasks",
    "sts_dev_evaluator",
]
