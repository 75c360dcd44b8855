"""Peak memory and step time of the cached DistillCSE loss against the plain one, by batch size.

For every batch size and every loss (plain ``GroupPDistillLoss``; ``CachedGroupPDistillLoss`` with
mini-batch 32) a fresh subprocess runs training steps (forward + backward + AdamW step) of the 3-layer
pruned all-MiniLM-L6-v2 student, max length 32, on Wikipedia sentences, Group-P p = 0.1, SimCSE + KD.

The teacher is *precomputed*: the ``label`` column holds random unit vectors (384-d, seeded). A real
teacher's embeddings would give other loss values but the same memory and time: the loss only reads
their ``(B, B)`` similarity, whatever the numbers in it.

Memory is measured per process from ``/proc/self/status``:

- ``step_peak_mb``: the peak resident memory *during* a training step, above the resident memory just
  before it (after a warm-up step, with the gradients freed, so the AdamW state is already resident and
  excluded). This is what grows with the batch: activations, gradients, loss temporaries. The peak
  (``VmHWM``) is reset before every step by writing ``5`` to ``/proc/self/clear_refs``.
- ``process_peak_mb``: the process's peak resident memory over its whole life (Python, torch, model,
  AdamW state, data, everything).

The workers run with ``MALLOC_MMAP_THRESHOLD_=65536``, so that glibc returns every freed tensor of 64 kB
or more to the OS at once and the resident memory follows the live tensors (otherwise freed memory stays
in malloc's arenas and a second step's peak is invisible). Time is the median of the timed steps.

    python benchmarks/gradcache_memory.py            # all sizes, ~10 minutes on 2 cores
    python benchmarks/gradcache_memory.py --sizes 32 64 --steps 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MAX_SEQ_LENGTH, RESULTS, STUDENT_LAYERS, machine_info, pruned_student, wiki_sentences  # noqa: E402

MEMORY_LIMIT_MB = 16_000  # plain runs estimated above this are skipped


def status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(mode: str, batch_size: int, mini_batch_size: int, steps: int, threads: int) -> dict:
    import torch

    from distillcse_st import CachedGroupPDistillLoss, GroupPDistillLoss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = pruned_student()
    model.train()
    if mode == "plain":
        loss = GroupPDistillLoss(model, teacher=None, group_p=0.1)
    else:
        loss = CachedGroupPDistillLoss(model, teacher=None, group_p=0.1, mini_batch_size=mini_batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    features = model.preprocess(wiki_sentences(batch_size))
    labels = torch.nn.functional.normalize(torch.randn(batch_size, 384, generator=torch.Generator().manual_seed(0)),
                                           dim=-1)
    tokens = int(features["attention_mask"].sum())

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        value = loss([dict(features)], labels)
        value.backward()
        optimizer.step()
        return value.item()

    gc.collect()
    rss_setup = status_kb("VmRSS")
    start = time.perf_counter()
    first_loss = step()  # warm-up: also allocates the AdamW state
    warmup_seconds = time.perf_counter() - start
    process_peak = status_kb("VmHWM")
    times, step_peaks = [], []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        gc.collect()
        rss_before = status_kb("VmRSS")
        reset_peak()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        step_peaks.append(status_kb("VmHWM") - rss_before)
        process_peak = max(process_peak, status_kb("VmHWM"))
    step_time = statistics.median(times)
    return {
        "mode": mode,
        "batch_size": batch_size,
        "mini_batch_size": mini_batch_size if mode == "cached" else None,
        "tokens": tokens,
        "first_loss": first_loss,
        "rss_after_setup_mb": rss_setup / 1024,
        "step_peak_mb": max(step_peaks) / 1024,
        "step_peaks_mb": [peak / 1024 for peak in step_peaks],
        "process_peak_mb": process_peak / 1024,
        "warmup_seconds": warmup_seconds,
        "step_seconds": step_time,
        "step_seconds_all": times,
        "ms_per_example": 1000 * step_time / batch_size,
    }


def run_worker(args, mode: str, batch_size: int) -> dict | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    command = [sys.executable, __file__, "--worker", mode, "--batch-size", str(batch_size),
               "--mini-batch-size", str(args.mini_batch_size), "--steps", str(args.steps),
               "--threads", str(args.threads)]
    process = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        print(f"  {mode} {batch_size} failed:\n{process.stderr[-2000:]}", flush=True)
        return None
    return json.loads(process.stdout.strip().splitlines()[-1])


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a / b:.2f}"


def markdown(result: dict) -> str:
    rows = {(run["mode"], run["batch_size"]): run for run in result["runs"]}
    info, config = result["machine"], result["config"]
    lines = [
        "# GradCache: peak memory and step time, plain vs cached DistillCSE loss",
        "",
        (
            f"{info['date']}, {info.get('cpu_model', info['processor'])}, {info['cpu_count']} cores "
            f"({config['threads']} torch thread(s) used), torch {info['versions']['torch']}, "
            f"sentence-transformers {info['versions']['sentence_transformers']}."
        ),
        (
            f"Student: all-MiniLM-L6-v2 pruned to layers {config['student_layers']}, max length "
            f"{config['max_seq_length']}, dropout on; SimCSE + KD with Group-P p = 0.1; precomputed teacher = random "
            f"unit vectors; AdamW. Cached: mini-batch {config['mini_batch_size']}. One fresh process per row; "
            f"time = median of {config['steps']} steps after a warm-up."
        ),
        "",
        (
            "| batch | plain step peak (MB) | cached step peak (MB) | plain process peak (MB) "
            "| cached process peak (MB) | plain ms/example | cached ms/example | time cached/plain |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in config["sizes"]:
        plain, cached = rows.get(("plain", size)), rows.get(("cached", size))

        def cell(run, key, fmt="{:.0f}"):
            return fmt.format(run[key]) if run else "skipped"

        lines.append(
            f"| {size} | {cell(plain, 'step_peak_mb')} | {cell(cached, 'step_peak_mb')} | "
            f"{cell(plain, 'process_peak_mb')} | {cell(cached, 'process_peak_mb')} | "
            f"{cell(plain, 'ms_per_example', '{:.1f}')} | {cell(cached, 'ms_per_example', '{:.1f}')} | "
            f"{ratio(cached and cached['ms_per_example'], plain and plain['ms_per_example'])} |"
        )
    targets = result["targets"]
    lines += [
        "",
        (
            "Step peak: resident memory during a step above the resident memory before it (activations, gradients, "
            "loss temporaries; the AdamW state excluded). Process peak: the whole process's peak resident memory."
        ),
        "",
        "Targets:",
        (
            f"- cached peak(512) / peak(32) <= 1.3: step peak {targets['step_peak_ratio_512_32']}, "
            f"process peak {targets['process_peak_ratio_512_32']}."
        ),
        f"- cached / plain time per example <= 1.3: {targets['time_ratios']}.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("plain", "o-"), ("cached", "s-")):
        runs = sorted((run for run in result["runs"] if run["mode"] == mode), key=lambda run: run["batch_size"])
        sizes = [run["batch_size"] for run in runs]
        label = mode if mode == "plain" else f"cached (mini-batch {result['config']['mini_batch_size']})"
        memory_ax.plot(sizes, [run["step_peak_mb"] for run in runs], style, label=f"{label}, step peak")
        memory_ax.plot(sizes, [run["process_peak_mb"] for run in runs], style, alpha=0.4,
                       label=f"{label}, process peak")
        time_ax.plot(sizes, [run["ms_per_example"] for run in runs], style, label=label)
    for ax in (memory_ax, time_ax):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    memory_ax.set_yscale("log")
    memory_ax.set_ylabel("peak resident memory (MB)")
    time_ax.set_ylabel("step time per example (ms)")
    fig.suptitle("DistillCSE loss with and without GradCache (3-layer MiniLM, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=["plain", "cached"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 256, 512, 1024])
    parser.add_argument("--mini-batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULTS / "gradcache_memory")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch_size, args.mini_batch_size, args.steps, args.threads)))
        return

    import torch

    torch.set_num_threads(args.threads)
    result = {
        "machine": machine_info(),
        "config": {"sizes": args.sizes, "mini_batch_size": args.mini_batch_size, "steps": args.steps,
                   "threads": args.threads, "student_layers": STUDENT_LAYERS, "max_seq_length": MAX_SEQ_LENGTH,
                   "group_p": 0.1, "teacher": "precomputed, random unit vectors (384-d)",
                   "malloc": "MALLOC_MMAP_THRESHOLD_=65536", "memory_limit_mb": MEMORY_LIMIT_MB},
        "runs": [],
        "skipped": [],
    }
    plain_mb_per_example = None
    for size in sorted(args.sizes):
        for mode in ("plain", "cached"):
            if mode == "plain" and plain_mb_per_example is not None:
                estimate = plain_mb_per_example * size
                available = _mem_available_mb()
                if estimate > MEMORY_LIMIT_MB or estimate > 0.7 * available:
                    print(f"skip plain {size}: estimated {estimate:.0f} MB (available {available:.0f} MB)", flush=True)
                    result["skipped"].append({"mode": mode, "batch_size": size, "estimated_mb": estimate})
                    continue
            print(f"{mode} batch {size} ...", flush=True)
            run = run_worker(args, mode, size)
            if run is None:
                result["skipped"].append({"mode": mode, "batch_size": size, "error": True})
                continue
            print(f"  step peak {run['step_peak_mb']:.0f} MB, process peak {run['process_peak_mb']:.0f} MB, "
                  f"{run['step_seconds']:.2f} s/step ({run['ms_per_example']:.1f} ms/example)", flush=True)
            result["runs"].append(run)
            if mode == "plain":
                plain_mb_per_example = run["step_peak_mb"] / size

    rows = {(run["mode"], run["batch_size"]): run for run in result["runs"]}

    def peak_ratio(key: str) -> float | None:
        if ("cached", 512) in rows and ("cached", 32) in rows:
            return round(rows[("cached", 512)][key] / rows[("cached", 32)][key], 3)
        return None

    time_ratios = {
        size: round(rows[("cached", size)]["ms_per_example"] / rows[("plain", size)]["ms_per_example"], 3)
        for size in args.sizes if ("cached", size) in rows and ("plain", size) in rows
    }
    result["targets"] = {
        "step_peak_ratio_512_32": peak_ratio("step_peak_mb"),
        "process_peak_ratio_512_32": peak_ratio("process_peak_mb"),
        "time_ratios": time_ratios,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(result))
    plot(result, args.output.with_suffix(".png"))
    print(f"saved {args.output}.json/.md/.png")
    print(markdown(result))


def _mem_available_mb() -> float:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.MULTILINE).group(1)) / 1024


if __name__ == "__main__":
    main()
