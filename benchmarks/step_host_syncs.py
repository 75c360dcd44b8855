"""Training-step time before and after the sync-free loss path (issue 13), step by step in one process.

"before" is the package as of commit 93d8456 (value checks, duplicate detection and off-diagonal masks that
read tensors on the host at every step), imported under the name ``distillcse_st_before``; "after" is the
working tree. One student trains with both versions' GroupPDistillLoss (precomputed labels) in alternating
steps on the same batches, so both see the same machine load, the same model and the same data. Reported:
the median step time of each (version, loss), after/before per loss, and Group-P's share of a step
(Group-P vs vanilla KD) in each version.

    python benchmarks/step_host_syncs.py                     # CPU: 3-layer MiniLM student, batch 64
    python benchmarks/step_host_syncs.py --device cuda --student mpnet --batch-size 256 --bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, MAX_SEQ_LENGTH, RESULTS, machine_info, wiki_sentences, write_json  # noqa: E402

BEFORE = "93d8456"
REPOSITORY = Path(__file__).resolve().parents[1]
LOSSES = {"vanilla KD": None, "Group-P 0.1": 0.1}
WARMUP_STEPS = 3


def import_before() -> object:
    """The package as of :data:`BEFORE`, extracted once under the cache as ``distillcse_st_before``."""
    root = CACHE / f"package-{BEFORE}"
    package = root / "distillcse_st_before"
    if not (package / "__init__.py").is_file():
        archive = subprocess.run(
            ["git", "-C", str(REPOSITORY), "archive", "--prefix=extract/", BEFORE, "distillcse_st"],
            check=True, capture_output=True,
        ).stdout
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
        (root / "extract" / "distillcse_st").rename(package)
        for path in package.rglob("*.py"):
            path.write_text(path.read_text(encoding="utf-8").replace("distillcse_st", "distillcse_st_before"))
    sys.path.insert(0, str(root))
    return importlib.import_module("distillcse_st_before")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per (version, loss)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--student", choices=["minilm3", "mpnet"], default="minilm3")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from common import load_mpnet, pruned_student
    from sentence_transformers.util import batch_to_device

    import distillcse_st

    versions = {"before": import_before(), "after": distillcse_st}
    student = load_mpnet(MAX_SEQ_LENGTH) if args.student == "mpnet" else pruned_student(MAX_SEQ_LENGTH)
    student.to(args.device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-6)
    losses = {
        (version, name): package.GroupPDistillLoss(student, teacher=None, group_p=group_p)
        for version, package in versions.items() for name, group_p in LOSSES.items()
    }
    steps = WARMUP_STEPS + args.steps
    texts = wiki_sentences(args.batch_size * steps)
    labels = F.normalize(torch.randn(len(texts), 384, generator=torch.Generator().manual_seed(0)), dim=-1)
    batches = [
        (texts[start:start + args.batch_size], labels[start:start + args.batch_size].to(args.device))
        for start in range(0, len(texts), args.batch_size)
    ]

    def timed_step(loss: torch.nn.Module, texts_batch: list[str], batch_labels: torch.Tensor) -> float:
        features = batch_to_device(student.preprocess(texts_batch), args.device)  # fresh dicts, as the Trainer's
        if args.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.bf16):
            value = loss([features], batch_labels)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    samples: dict[str, dict[str, list[float]]] = {version: {name: [] for name in LOSSES} for version in versions}
    for step, (texts_batch, batch_labels) in enumerate(batches):
        for (version, name), loss in losses.items():
            seconds = timed_step(loss, texts_batch, batch_labels)
            if step >= WARMUP_STEPS:
                samples[version][name].append(seconds)
        print(f"step {step + 1}/{len(batches)}", flush=True)
    median = {version: {name: statistics.median(times) for name, times in by_loss.items()}
              for version, by_loss in samples.items()}
    summary = {
        "after_over_before": {name: median["after"][name] / median["before"][name] for name in LOSSES},
        "group_p_share": {
            version: by_loss["Group-P 0.1"] / by_loss["vanilla KD"] - 1 for version, by_loss in median.items()
        },
    }
    tag = f"{args.device}-{args.student}-b{args.batch_size}{'-bf16' if args.bf16 else ''}"
    write_json(RESULTS / f"step_host_syncs-{tag}.json", {
        "machine": machine_info(), "config": {**vars(args), "before": BEFORE, "warmup_steps": WARMUP_STEPS},
        "samples": samples, "median_step_seconds": median, **summary,
    })
    lines = [
        f"# Step time before ({BEFORE}) and after the sync-free loss path: {tag}", "",
        f"One process, the four losses in turn on each batch; median of {args.steps} steps (after "
        f"{WARMUP_STEPS} warm-up steps). Step = loss forward (student included) + backward + AdamW.", "",
        "| loss | before (ms) | after (ms) | after / before |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {1000 * median['before'][name]:.1f} | {1000 * median['after'][name]:.1f} | "
              f"{summary['after_over_before'][name]:.3f} |" for name in LOSSES]
    lines += ["", "Group-P's share of a step (Group-P / vanilla KD - 1): "
              + ", ".join(f"{version} {100 * share:+.1f} %" for version, share in summary["group_p_share"].items())]
    (RESULTS / f"step_host_syncs-{tag}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
