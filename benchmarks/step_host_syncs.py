"""Training-step time before and after the sync-free loss path (issue 13), side by side.

"before" is the package as of commit 93d8456 (value checks, duplicate detection and off-diagonal masks that
read tensors on the host at every step); "after" is the working tree. Each (version, loss) pair trains
``--steps`` steps of a GroupPDistillLoss with precomputed labels in a fresh process, and the pairs run in
interleaved rounds, so that both versions see the same machine load. Reported: the median step time of each
pair, after/before per loss, and Group-P's share of a step (Group-P vs vanilla KD) in each version.

    python benchmarks/step_host_syncs.py                     # CPU: 3-layer MiniLM student, batch 64
    python benchmarks/step_host_syncs.py --device cuda --student mpnet --batch-size 256 --bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
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


def before_root() -> Path:
    """The package as of :data:`BEFORE`, extracted once under the cache."""
    root = CACHE / f"package-{BEFORE}"
    if not (root / "distillcse_st" / "__init__.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPOSITORY), "archive", BEFORE, "distillcse_st"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Time ``args.steps`` training steps (after 3 warm-up steps) in this process."""
    import torch
    import torch.nn.functional as F
    from sentence_transformers.util import batch_to_device

    import distillcse_st
    from distillcse_st import GroupPDistillLoss

    if args.student == "mpnet":
        from common import load_mpnet

        student = load_mpnet(MAX_SEQ_LENGTH)
    else:
        from common import pruned_student

        student = pruned_student(MAX_SEQ_LENGTH)
    student.to(args.device).train()
    loss = GroupPDistillLoss(student, teacher=None, group_p=LOSSES[args.loss])
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    texts = wiki_sentences(args.batch_size * (args.steps + 3))
    generator = torch.Generator().manual_seed(0)
    labels = F.normalize(torch.randn(len(texts), 384, generator=generator), dim=-1)
    batches = [
        (
            batch_to_device(student.preprocess(texts[start:start + args.batch_size]), args.device),
            labels[start:start + args.batch_size].to(args.device),
        )
        for start in range(0, len(texts), args.batch_size)
    ]
    times = []
    for step, (features, batch_labels) in enumerate(batches):
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
        if step >= 3:
            times.append(time.perf_counter() - started)
    return {"step_seconds": statistics.median(times), "package": str(Path(distillcse_st.__file__).parent)}


def run_worker(root: Path, loss: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", "--loss", loss, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--device", args.device, "--student", args.student]
    command += ["--bf16"] if args.bf16 else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--student", choices=["minilm3", "mpnet"], default="minilm3")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loss", choices=list(LOSSES), default="Group-P 0.1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    roots = {"before": before_root(), "after": REPOSITORY}
    samples: dict[str, dict[str, list[float]]] = {version: {loss: [] for loss in LOSSES} for version in roots}
    for round_ in range(args.rounds):
        for loss in LOSSES:
            for version, root in roots.items():
                result = run_worker(root, loss, args)
                if Path(result["package"]).resolve() != (root / "distillcse_st").resolve():
                    raise RuntimeError(f"the {version} worker imported {result['package']}")
                samples[version][loss].append(result["step_seconds"])
                print(f"round {round_}: {version:6s} {loss:12s} {1000 * result['step_seconds']:.1f} ms", flush=True)
    median = {version: {loss: statistics.median(times) for loss, times in by_loss.items()}
              for version, by_loss in samples.items()}
    summary = {
        "after_over_before": {loss: median["after"][loss] / median["before"][loss] for loss in LOSSES},
        "group_p_share": {
            version: by_loss["Group-P 0.1"] / by_loss["vanilla KD"] - 1 for version, by_loss in median.items()
        },
    }
    tag = f"{args.device}-{args.student}-b{args.batch_size}{'-bf16' if args.bf16 else ''}"
    write_json(RESULTS / f"step_host_syncs-{tag}.json", {
        "machine": machine_info(), "config": {**vars(args), "before": BEFORE}, "samples": samples,
        "median_step_seconds": median, **summary,
    })
    lines = [
        f"# Step time before ({BEFORE}) and after the sync-free loss path: {tag}", "",
        f"{args.rounds} interleaved rounds, median of {args.steps} steps each (after 3 warm-up steps).", "",
        "| loss | before (ms) | after (ms) | after / before |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {loss} | {1000 * median['before'][loss]:.1f} | {1000 * median['after'][loss]:.1f} | "
              f"{summary['after_over_before'][loss]:.3f} |" for loss in LOSSES]
    lines += ["", "Group-P's share of a step (Group-P / vanilla KD - 1): "
              + ", ".join(f"{version} {100 * share:+.1f} %" for version, share in summary["group_p_share"].items())]
    (RESULTS / f"step_host_syncs-{tag}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
