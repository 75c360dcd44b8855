"""The demo (`distillcse demo`, default settings) at several seeds: how much its DistillCSE - SimCSE gain varies.

Each seed trains in ``benchmarks/cache/demo/seed<N>`` (a finished one is only re-read, its wall time kept from
the run that trained it) and the table goes to ``results/demo_seeds.{json,md}``, with the machine and date.

    python benchmarks/demo_seeds.py                # seeds 42 (the demo's default), 43, 44
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from common import CACHE, RESULTS, machine_info, read_json, write_json

from distillcse_st.cli import build_parser
from distillcse_st.commands.arguments import run_options, simcse_training_options
from distillcse_st.training.demo import run_demo

SEEDS = (42, 43, 44)
RUN_FILE = "demo_seed.json"


def run_seed(seed: int, output: Path) -> dict[str, Any]:
    """The demo's rows at ``seed`` and the wall time of the run that trained it."""
    record = output / RUN_FILE
    if record.is_file():
        return read_json(record)
    args = build_parser().parse_args(["demo", "--output", str(output), "--seed", str(seed), "--no-progress"])
    started = time.perf_counter()
    result = run_demo(simcse_training_options=simcse_training_options(args), **run_options(args))
    row = {"seed": seed, "rows": result["rows"], "seconds": time.perf_counter() - started}
    write_json(record, row)
    return row


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample std over seeds of each model's dev and test score, and of DistillCSE minus SimCSE."""
    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    names = list(runs[0]["rows"])
    table = {f"{name} {split}": stats([run["rows"][name][split] for run in runs]) for name in names
             for split in ("dev", "test")}
    for split in ("dev", "test"):
        table[f"DistillCSE - SimCSE {split}"] = stats(
            [run["rows"]["DistillCSE"][split] - run["rows"]["SimCSE"][split] for run in runs]
        )
    return table


def markdown(runs: list[dict[str, Any]], table: dict[str, dict[str, float]], machine: dict[str, Any]) -> str:
    names = list(runs[0]["rows"])
    lines = [
        "# The demo at several seeds (`python benchmarks/demo_seeds.py`)",
        "",
        f"{machine['date']}, {machine.get('cpu_model', machine['processor'])}, {machine['cpu_count']} cores, "
        f"torch {machine['versions']['torch']}, sentence-transformers {machine['versions']['sentence_transformers']}"
        f"; load average at start {machine.get('load_average_at_start')}.",
        "`distillcse demo` with its defaults and `--seed N`: STS-B dev and the packaged STS-B test (625 licensed "
        "pairs), Spearman x 100.",
        "",
        "| seed | " + " | ".join(f"{name} dev | {name} test" for name in names) + " | DistillCSE - SimCSE, test "
        "| wall time (min) |",
        "|---|" + "---:|" * (2 * len(names) + 2),
    ]
    for run in runs:
        rows = run["rows"]
        cells = " | ".join(f"{rows[name]['dev']:.2f} | {rows[name]['test']:.2f}" for name in names)
        gain = rows["DistillCSE"]["test"] - rows["SimCSE"]["test"]
        lines.append(f"| {run['seed']} | {cells} | {gain:+.2f} | {run['seconds'] / 60:.1f} |")
    lines += ["", "| over seeds (mean ± std) | value |", "|---|---:|"]
    lines += [f"| {key} | {value['mean']:.2f} ± {value['std']:.2f} |" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    seeds = parser.parse_args().seeds
    machine = machine_info()
    runs = [run_seed(seed, CACHE / "demo" / f"seed{seed}") for seed in seeds]
    table = summary(runs)
    write_json(RESULTS / "demo_seeds.json", {"machine": machine, "seeds": seeds, "runs": runs, "summary": table})
    report = markdown(runs, table, machine)
    (RESULTS / "demo_seeds.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
