"""Run MTEB STS tasks on a SentenceTransformer with ``mteb.evaluate`` and summarise the main scores."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillcse_st.evaluation.sts_tasks import default_data_dir, resolve_tasks
from distillcse_st.models import load_model

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask
    from sentence_transformers import SentenceTransformer

SUMMARY_FILE = "summary.json"


def _encoder(model: SentenceTransformer, model_name: str | None) -> Any:
    """mteb's SentenceTransformer wrapper; ``model_name`` ("org/name") names the result folder."""
    from mteb.models import SentenceTransformerEncoderWrapper

    wrapper = SentenceTransformerEncoderWrapper(model)
    meta = wrapper.mteb_model_meta
    update = {"revision": meta.revision or "no_revision_available"}
    if model_name:
        update["name"] = model_name
    wrapper.mteb_model_meta = meta.model_copy(update=update)
    return wrapper


def evaluate_sts(
    model_or_path: SentenceTransformer | str | Path,
    tasks: str | Sequence[str | AbsTask] = "sts7",
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    batch_size: int = 64,
    model_name: str | None = None,
    show_progress_bar: bool = True,
) -> dict[str, Any]:
    """Evaluate a model on MTEB tasks (default: the seven STS tasks) with ``mteb.evaluate``.

    ``data_dir`` (default ``$DISTILLCSE_STS_DIR``) holds the tasks' jsonl files; without it mteb's
    own tasks are downloaded from the hub. With ``output_dir``, MTEB's result files are written under
    ``output_dir/results/<model>/<revision>/<task>.json`` and the summary to ``output_dir/summary.json``.
    ``model_name`` ("org/name") names the model in the results; default: the model card's name, or
    ``local/<dir name>`` for a model loaded from a directory.

    Returns the summary: ``scores`` maps each task to MTEB's main score (cosine Spearman for STS,
    on MTEB's 0-1 scale), ``average`` is their mean.
    """
    import mteb
    from mteb.cache import ResultCache

    data_dir = default_data_dir(data_dir)
    task_objects = resolve_tasks(tasks, data_dir)
    if isinstance(model_or_path, (str, Path)):
        model = load_model(model_or_path)
        if model_name is None and not model.model_card_data.model_name:
            model_name = f"local/{Path(model_or_path).resolve().name}"
    else:
        model = model_or_path
    encoder = _encoder(model, model_name)
    result = mteb.evaluate(
        encoder,
        task_objects,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
        cache=ResultCache(Path(output_dir)) if output_dir is not None else None,
        overwrite_strategy="always",
        co2_tracker=False,
        show_progress_bar=show_progress_bar,
    )
    scores = {task_result.task_name: float(task_result.get_score()) for task_result in result.task_results}
    summary: dict[str, Any] = {
        "model": encoder.mteb_model_meta.name,
        "main_score": {task.metadata.name: task.metadata.main_score for task in task_objects},
        "scores": scores,
        "average": sum(scores.values()) / len(scores),
        "data_dir": None if data_dir is None else str(data_dir),
        "mteb_version": mteb.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if output_dir is not None:
        summary["results_dir"] = str(ResultCache(Path(output_dir)).cache_path / "results")
        path = Path(output_dir) / SUMMARY_FILE
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def format_table(scores: Mapping[str, float], title: str = "cos-Spearman x100") -> str:
    """A plain-text table of ``scores`` (0-1 scale) times 100, with their average as the last row."""
    width = max(len("Average"), *(len(name) for name in scores))
    rule = f"{'-' * width}  {'-' * len(title)}"
    lines = [f"{'Task':<{width}}  {title}", rule]
    lines += [f"{name:<{width}}  {100 * value:>{len(title)}.2f}" for name, value in scores.items()]
    average = 100 * sum(scores.values()) / len(scores) if scores else float("nan")
    lines += [rule, f"{'Average':<{width}}  {average:>{len(title)}.2f}"]
    return "\n".join(lines)
