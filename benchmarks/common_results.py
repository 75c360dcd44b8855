"""Machine description and result saving shared by the benchmark scripts."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where and when a benchmark ran: CPU, cores, library versions, date."""
    import sentence_transformers
    import transformers

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
    }


def save_results(result: dict, output_stem: str | Path, markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` and say where."""
    output_stem = Path(output_stem)
    output_stem.parent.mkdir(parents=True, exist_ok=True)
    output_stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    output_stem.with_suffix(".md").write_text(markdown)
    print(f"saved {output_stem.with_suffix('.json')} and {output_stem.with_suffix('.md')}")
