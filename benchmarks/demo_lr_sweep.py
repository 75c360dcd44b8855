"""The demo's learning rates on STS-B dev, on the demo's own corpus and settings (seed 42).

SimCSE from the demo's start; DistillCSE from the same start with the SimCSE model at the demo's SimCSE lr as
teacher. Each grid starts around table B's choices (SimCSE 5e-5, DistillCSE 1e-4) and grows by x2 or /2 until
its best point is interior. Only STS-B dev is read. Runs go to ``benchmarks/cache/demo-lr/``, results to
``results/demo_lr_sweep.{json,md}``.

    python benchmarks/demo_lr_sweep.py
"""

from __future__ import annotations

from pathlib import Path

from common import CACHE, RESULTS, machine_info, read_json, write_json
from quality.runner import grown_grid

from distillcse_st.commands.demo import DEMO_LOSS, DEMO_TRAINING, SIMCSE_LEARNING_RATE
from distillcse_st.training.corpus import load_corpus
from distillcse_st.training.demo import CORPUS_FILE, START_DIR, STUDENT_LAYERS, minilm_dir
from distillcse_st.training.pruning import prune_model_dir
from distillcse_st.training.stages import STAGE_FILE, train_distill, train_simcse

SEED = 42
RUNS = CACHE / "demo-lr"
SWEEPS = {"SimCSE": (2.5e-5, 5e-5, 1e-4), "DistillCSE": (5e-5, 1e-4, 2e-4)}


def run_dir(method: str, lr: float) -> Path:
    return RUNS / f"{method.lower()}-lr{lr:g}"


def best_dev(method: str, lr: float) -> float:
    """Best STS-B dev of one run, trained once."""
    output = run_dir(method, lr)
    if not (output / STAGE_FILE).is_file():
        training = {**DEMO_TRAINING, "learning_rate": lr, "seed": SEED, "disable_tqdm": True}
        corpus = load_corpus(CORPUS_FILE)
        start = RUNS / START_DIR
        if not (start / "modules.json").is_file():
            prune_model_dir(minilm_dir(), STUDENT_LAYERS, start, overwrite=True)
        if method == "SimCSE":
            train_simcse(start, corpus, output, training_options=training, overwrite=True)
        else:
            best_dev("SimCSE", SIMCSE_LEARNING_RATE)  # the teacher
            train_distill(start, [run_dir("SimCSE", SIMCSE_LEARNING_RATE)], corpus, output,
                          loss_options=dict(DEMO_LOSS), training_options=training, overwrite=True)
    return read_json(output / STAGE_FILE)["dev"]


def sweep(method: str) -> dict[str, float]:
    """Dev score per lr (keyed ``f"{lr:g}"``), the grid grown by x2 or /2 while its best point sits at an edge."""
    scores: dict[str, float] = {}
    while missing := [lr for lr in grown_grid(SWEEPS[method], scores, lambda lr: lr * 2, lambda lr: lr / 2)
                      if f"{lr:g}" not in scores]:
        scores.update({f"{lr:g}": best_dev(method, lr) for lr in missing})
    return dict(sorted(scores.items(), key=lambda item: float(item[0])))


def main() -> int:
    machine = machine_info()
    results = {method: sweep(method) for method in SWEEPS}
    every_lr = sorted({lr for scores in results.values() for lr in scores}, key=float)
    lines = ["# The demo's learning rates on STS-B dev (`python benchmarks/demo_lr_sweep.py`)", "",
             f"{machine['date']}, {machine['cpu_count']} cores, torch {machine['versions']['torch']}; seed {SEED}, "
             "the demo's settings otherwise; best STS-B dev (Spearman x 100) during training.", "",
             "| run | " + " | ".join(f"lr {lr}" for lr in every_lr) + " | best lr | the demo's |",
             "|---|" + "---:|" * (len(every_lr) + 2)]
    for method, scores in results.items():
        cells = " | ".join(f"{scores[lr]:.2f}" if lr in scores else "" for lr in every_lr)
        demo_lr = SIMCSE_LEARNING_RATE if method == "SimCSE" else DEMO_TRAINING["learning_rate"]
        lines.append(f"| {method} | {cells} | {max(scores, key=scores.get)} | {demo_lr:g} |")
    report = "\n".join(lines) + "\n"
    write_json(RESULTS / "demo_lr_sweep.json", {"machine": machine, "seed": SEED, "dev": results})
    (RESULTS / "demo_lr_sweep.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
