"""Speed benchmark (issue 8, part 1): training-step time, teacher precompute throughput, peak memory.

All numbers are ratios measured side by side in one run, so that load from other processes hits every
configuration alike: the configurations are timed in interleaved rounds and the median per
configuration is kept.

1. Training step = forward + backward + AdamW step of the 3-layer pruned all-MiniLM-L6-v2 student,
   batch 64 Wikipedia sentences, max length 32 (tokenized once, outside the timing):
     - ``simcse``: SimCSE alone (``GroupPDistillLoss(distillation_weight=0)``);
     - ``live-1``: Group-P distillation from 1 live teacher (the full all-MiniLM-L6-v2);
     - ``live-16``: 16 live teachers, the authors' design where every teacher runs on every batch
       (16 copies of the full all-MiniLM-L6-v2 as stand-ins for 16 SimCSE components);
     - ``precomputed-1`` / ``precomputed-16``: the same teachers precomputed into the ``label`` column
       (``add_teacher_embeddings`` / ``encode_stacked``): one matmul a step whatever K.
2. Teacher precompute throughput: ``encode_stacked`` and ``add_teacher_embeddings`` against plain
   ``model.encode`` of the same sentences, same batch size and max length (alternating order).
3. Peak memory: each configuration in a fresh subprocess (load the models, 1 training step); peak RSS.

    python benchmarks/speed.py            # ~5 min on 2 busy cores; writes results/speed.{json,md,png}
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import RESULTS, load_teacher, machine_info, pruned_student, set_seed, wiki_sentences, write_json  # noqa: E402

CONFIGS = ["simcse", "live-1", "live-16", "precomputed-1", "precomputed-16"]
BATCH = 64
K = 16
TARGET_PRE16_VS_SIMCSE = 1.10
TARGET_LIVE16_VS_PRE16 = 3.0
TARGET_PRECOMPUTE = 0.9


def build(config: str, texts: list[str], teacher, teachers16):
    """(student, loss, optimizer, features, labels) for one configuration."""
    from distillcse_st import GroupPDistillLoss, MultiTeacherAvgLoss
    from distillcse_st.teachers import encode_stacked

    student = pruned_student()
    student.train()
    labels = None
    if config == "simcse":
        loss = GroupPDistillLoss(student, teacher=None, distillation_weight=0.0)
    elif config == "live-1":
        loss = GroupPDistillLoss(student, teacher=teacher, group_p=0.1)
    elif config == "live-16":
        loss = MultiTeacherAvgLoss(student, teachers=teachers16, group_p=0.1)
    elif config == "precomputed-1":
        loss = GroupPDistillLoss(student, teacher=None, group_p=0.1)
        labels = encode_stacked(texts, [teacher], batch_size=BATCH, show_progress_bar=False)
    elif config == "precomputed-16":
        loss = MultiTeacherAvgLoss(student, teachers=None, group_p=0.1)
        labels = encode_stacked(texts, teachers16, batch_size=BATCH, show_progress_bar=False)
    else:
        raise ValueError(config)
    features = student.preprocess(texts)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    return student, loss, optimizer, features, labels


def step(loss, optimizer, features, labels) -> float:
    start = time.perf_counter()
    value = loss([dict(features)], labels)
    value.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def teachers(live16: bool, max_seq_length: int = 256):
    teacher = load_teacher()
    teacher.max_seq_length = max_seq_length
    copies = [teacher] + [copy.deepcopy(teacher) for _ in range(K - 1)] if live16 else None
    return teacher, copies


def memory_worker(config: str, texts: list[str]) -> None:
    """Peak RSS of a fresh process that loads what ``config`` needs and takes 1 training step.

    The precomputed configurations get random unit-norm labels of the real shape: their teachers ran
    once, before training, and are not in memory while training.
    """
    from distillcse_st import GroupPDistillLoss, MultiTeacherAvgLoss

    set_seed(0)
    if config.startswith("live"):
        teacher, copies = teachers(config == "live-16")
        _, loss, optimizer, features, labels = build(config, texts, teacher, copies)
    else:
        student = pruned_student()
        student.train()
        labels = None
        if config == "simcse":
            loss = GroupPDistillLoss(student, teacher=None, distillation_weight=0.0)
        else:
            k = 1 if config == "precomputed-1" else K
            loss = (GroupPDistillLoss(student, teacher=None, group_p=0.1) if k == 1
                    else MultiTeacherAvgLoss(student, teachers=None, group_p=0.1))
            labels = torch.nn.functional.normalize(torch.randn(len(texts), k * 384), dim=-1)
        features = student.preprocess(texts)
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    step(loss, optimizer, features, labels)  # one step allocates everything: activations, grads, AdamW state
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over fork + exec."""
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(texts: list[str], rounds: int) -> dict:
    teacher, copies = teachers(True)
    setups = {config: build(config, texts, teacher, copies) for config in CONFIGS}
    times: dict[str, list[float]] = {config: [] for config in CONFIGS}
    for config, (_, loss, optimizer, features, labels) in setups.items():  # warm-up
        step(loss, optimizer, features, labels)
    for round_ in range(rounds):
        order = CONFIGS if round_ % 2 == 0 else CONFIGS[::-1]
        for config in order:
            _, loss, optimizer, features, labels = setups[config]
            times[config].append(step(loss, optimizer, features, labels))
        print(f"round {round_}: " + ", ".join(f"{c} {times[c][-1]:.2f}s" for c in CONFIGS), flush=True)
    return {config: {"median_s": statistics.median(t), "all_s": t} for config, t in times.items()}


def time_precompute(texts: list[str], repeats: int) -> dict:
    from datasets import Dataset

    from distillcse_st.teachers import add_teacher_embeddings, encode_stacked

    teacher = load_teacher(32)
    dataset = Dataset.from_dict({"text": texts})
    methods = {
        "model.encode": lambda: teacher.encode(texts, batch_size=BATCH, show_progress_bar=False),
        "encode_stacked": lambda: encode_stacked(texts, [teacher], batch_size=BATCH, show_progress_bar=False),
        "add_teacher_embeddings": lambda: add_teacher_embeddings(dataset, [teacher], batch_size=BATCH,
                                                                 show_progress_bar=False),
    }
    teacher.encode(texts[:128], batch_size=BATCH, show_progress_bar=False)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for repeat in range(repeats):
        for name in (list(methods) if repeat % 2 == 0 else list(methods)[::-1]):
            start = time.perf_counter()
            methods[name]()
            seconds[name].append(time.perf_counter() - start)
        print(f"precompute repeat {repeat}: " + ", ".join(f"{n} {s[-1]:.2f}s" for n, s in seconds.items()), flush=True)
    best = {name: min(s) for name, s in seconds.items()}
    return {
        name: {"best_s": best[name], "all_s": seconds[name], "sentences_per_s": len(texts) / best[name],
               "throughput_vs_encode": best["model.encode"] / best[name]}
        for name in methods
    }


CHEAP = ["simcse", "precomputed-1", "precomputed-16"]


def recheck(texts: list[str], rounds: int) -> dict:
    """Interleaved re-timing of the configurations without live teachers.

    The 16 stand-in teachers are identical copies, so the 16-teacher label column is the 1-teacher
    embedding repeated 16 times with weight 1/16 each: same shape and values as encoding 16 times.
    """
    from distillcse_st.teachers import encode_stacked

    set_seed(0)
    teacher = load_teacher()
    one = encode_stacked(texts, [teacher], batch_size=BATCH, show_progress_bar=False)
    setups = {config: build(config, texts, None, None) for config in ["simcse"]}
    for config, k in (("precomputed-1", 1), ("precomputed-16", K)):
        student, loss, optimizer, features, _ = build("simcse", texts, None, None)
        from distillcse_st import GroupPDistillLoss, MultiTeacherAvgLoss

        loss = (GroupPDistillLoss(student, teacher=None, group_p=0.1) if k == 1
                else MultiTeacherAvgLoss(student, teachers=None, group_p=0.1))
        setups[config] = (student, loss, optimizer, features, one.repeat(1, k) / k ** 0.5)
    times: dict[str, list[float]] = {config: [] for config in CHEAP}
    for config in CHEAP:
        step(*setups[config][1:])
    for round_ in range(rounds):
        for config in (CHEAP if round_ % 2 == 0 else CHEAP[::-1]):
            times[config].append(step(*setups[config][1:]))
        print(f"recheck round {round_}: " + ", ".join(f"{c} {times[c][-1]:.2f}s" for c in CHEAP), flush=True)
    simcse = statistics.median(times["simcse"])
    return {config: {"median_s": statistics.median(t), "all_s": t, "vs_simcse": statistics.median(t) / simcse}
            for config, t in times.items()}


def update_targets(result: dict) -> None:
    recheck_ = result.get("training_step_recheck")
    if recheck_:
        value = recheck_["precomputed-16"]["vs_simcse"]
        result["targets"]["precomputed-16 step <= 1.10x SimCSE step (recheck, more rounds)"] = {
            "value": value, "met": value <= TARGET_PRE16_VS_SIMCSE}


def measure_memory() -> dict:
    memory = {}
    for config in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--memory-worker", config], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        memory[config] = json.loads(lines[-1]) if lines else {"error": out.stderr[-500:]}
        print(config, memory[config], flush=True)
    return memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of training steps (after 1 warm-up)")
    parser.add_argument("--precompute-sentences", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--recheck-rounds", type=int, default=0,
                        help="re-time only simcse / precomputed-1 / precomputed-16 for this many interleaved rounds "
                             "and add them to the last run's results (cheap: no live teachers)")
    parser.add_argument("--memory-only", action="store_true",
                        help="re-measure only the peak memory and rewrite the results of the last run")
    parser.add_argument("--memory-worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    texts = wiki_sentences(BATCH, offset=300_000)
    if args.memory_worker:
        memory_worker(args.memory_worker, texts)
        return 0

    if args.recheck_rounds:
        result = json.loads((RESULTS / "speed.json").read_text(encoding="utf-8"))
        result["training_step_recheck"] = recheck(texts, args.recheck_rounds)
        update_targets(result)
        write_outputs(result)
        return 0
    if args.memory_only:
        result = json.loads((RESULTS / "speed.json").read_text(encoding="utf-8"))
        result["peak_memory"] = measure_memory()
        write_outputs(result)
        return 0

    set_seed(0)
    machine = machine_info()
    steps = time_steps(texts, args.rounds)
    simcse = steps["simcse"]["median_s"]
    for config in CONFIGS:
        steps[config]["vs_simcse"] = steps[config]["median_s"] / simcse
    live16_vs_pre16 = steps["live-16"]["median_s"] / steps["precomputed-16"]["median_s"]

    precompute = time_precompute(wiki_sentences(args.precompute_sentences, offset=310_000), args.repeats)

    memory = {} if args.skip_memory else measure_memory()
    pre16_vs_simcse = steps["precomputed-16"]["vs_simcse"]
    targets = {
        "precomputed-16 step <= 1.10x SimCSE step": {
            "value": pre16_vs_simcse, "met": pre16_vs_simcse <= TARGET_PRE16_VS_SIMCSE},
        "live-16 step >= 3x precomputed-16 step": {
            "value": live16_vs_pre16, "met": live16_vs_pre16 >= TARGET_LIVE16_VS_PRE16},
        "encode_stacked throughput >= 0.9x model.encode": {
            "value": precompute["encode_stacked"]["throughput_vs_encode"],
            "met": precompute["encode_stacked"]["throughput_vs_encode"] >= TARGET_PRECOMPUTE},
        "add_teacher_embeddings throughput >= 0.9x model.encode": {
            "value": precompute["add_teacher_embeddings"]["throughput_vs_encode"],
            "met": precompute["add_teacher_embeddings"]["throughput_vs_encode"] >= TARGET_PRECOMPUTE},
    }
    result = {
        "config": {"batch_size": BATCH, "max_seq_length": 32, "student": "all-MiniLM-L6-v2, first 3 layers",
                   "teacher": "all-MiniLM-L6-v2 (6 layers); live-16 = 16 copies of it as stand-ins for 16 components",
                   "optimizer": "AdamW", "group_p": 0.1, "timed_rounds": args.rounds, "warmup_steps": 1,
                   "precompute_sentences": args.precompute_sentences, "precompute_batch_size": BATCH,
                   "precompute_max_seq_length": 32, "precompute_repeats": args.repeats},
        "training_step": steps,
        "live16_vs_precomputed16": live16_vs_pre16,
        "precompute": precompute,
        "peak_memory": memory,
        "targets": targets,
        "machine": machine,
    }
    write_outputs(result)
    return 0


def write_outputs(result: dict) -> None:
    machine, steps, precompute = result["machine"], result["training_step"], result["precompute"]
    memory, targets, live16_vs_pre16 = result["peak_memory"], result["targets"], result["live16_vs_precomputed16"]
    write_json(RESULTS / "speed.json", result)
    md = ["# Speed benchmark", "",
          f"Machine: {machine.get('cpu_model', machine['processor'])}, {machine['cpu_count']} cores (shared, "
          f"load average at start {', '.join(f'{x:.1f}' for x in machine.get('load_average_at_start', []))}); "
          f"torch {machine['versions']['torch']}, "
          f"sentence-transformers {machine['versions']['sentence_transformers']}. "
          f"Date {machine['date']}.", "",
          "## Training step (forward + backward + AdamW; batch 64, max length 32, 3-layer MiniLM student)", "",
          "| configuration | median step (s) | vs SimCSE | peak RSS (MB) |", "|---|---|---|---|"]
    for config in CONFIGS:
        rss = memory.get(config, {}).get("peak_rss_mb")
        md.append(f"| {config} | {steps[config]['median_s']:.3f} | {steps[config]['vs_simcse']:.2f}x | "
                  + (f"{rss:.0f}" if rss else "n/a") + " |")
    recheck_ = result.get("training_step_recheck")
    if recheck_:
        md += ["", f"Re-timing of the configurations without live teachers, "
               f"{len(recheck_['simcse']['all_s'])} interleaved rounds (less noise than the 2 rounds above):", "",
               "| configuration | median step (s) | vs SimCSE |", "|---|---|---|"]
        md += [f"| {c} | {r['median_s']:.3f} | {r['vs_simcse']:.2f}x |" for c, r in recheck_.items()]
    md += ["", f"16 live teachers / 16 precomputed: **{live16_vs_pre16:.1f}x**.", "",
           "## Teacher precompute throughput (all-MiniLM-L6-v2, batch 64, max length 32)", "",
           "| method | best time (s) | sentences/s | vs model.encode |", "|---|---|---|---|"]
    for name, p in precompute.items():
        md.append(f"| {name} | {p['best_s']:.2f} | {p['sentences_per_s']:.0f} | {p['throughput_vs_encode']:.2f}x |")
    md += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    md += [f"| {name} | {t['value']:.2f} | {'yes' if t['met'] else 'NO'} |" for name, t in targets.items()]
    (RESULTS / "speed.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    plot(result)
    print("\n".join(md))


def plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["training_step"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(steps)
    axes[0].bar(names, [steps[n]["median_s"] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        axes[0].text(i, steps[n]["median_s"], f"{steps[n]['vs_simcse']:.2f}x", ha="center", va="bottom", fontsize=8)
    axes[0].set_ylabel("median training step (s)")
    axes[0].set_title("Training step, batch 64 (ratio vs SimCSE)")
    axes[0].tick_params(axis="x", rotation=20)
    memory = result["peak_memory"]
    if memory:
        axes[1].bar(names, [memory.get(n, {}).get("peak_rss_mb", 0) for n in names], color="tab:orange")
        axes[1].set_ylabel("peak RSS (MB), fresh process")
        axes[1].set_title("Peak memory: load models + 1 step")
        axes[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(RESULTS / "speed.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
