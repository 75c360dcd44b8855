"""The quality benchmark's report: ``results/<stem>.{json,md}`` and plots, rebuilt from the finished run files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from common import RESULTS, machine_info, read_json, write_json

from .rows import (
    E_BLOCKS,
    IN_DOMAIN,
    LR_FLOOR,
    OUT_OF_DOMAIN,
    P_SWEEP,
    P_SWEEP_ROWS,
    PAPER,
    ROWS,
    TASKS,
    TITLES,
    W_LADDER,
    Settings,
)
from .runner import at_chosen_lr

Runs = dict[str, list[dict[str, Any]]]
# table E's averages beside the seven tasks' (its targets name them): JSON key -> (column title, tasks)
E_PARTS = {"out_of_domain": ("STS12-16 avg (out of domain)", OUT_OF_DOMAIN),
           "in_domain": ("STSBenchmark + SICK-R avg (in domain)", IN_DOMAIN)}


def collect(settings: Settings) -> dict[str, Runs]:
    """Every finished run file of the benchmark at the lr its row trains at now, by table and row (in the rows'
    order): a run at the lr of a sweep that has grown since is left out until the queue redoes it."""
    tables: dict[str, Runs] = {}
    for table, rows in ROWS.items():
        found = {row: sorted((settings.runs / table).glob(f"{row}.json"))
                 + sorted((settings.runs / table).glob(f"{row}-seed*.json")) for row in rows}
        runs = {row: [run for run in map(read_json, paths) if at_chosen_lr(settings, table, row, run)]
                for row, paths in found.items()}
        tables[table] = {row: row_runs for row, row_runs in runs.items() if row_runs}
    return tables


def scored_tasks(table: str, rows: Runs) -> list[str]:
    """The table's tasks that every run was scored on (older runs may predate a longer task list)."""
    return [t for t in TASKS[table] if all(t in r["scores"] for runs in rows.values() for r in runs)]


def best_dev(run: dict[str, Any]) -> float | None:
    return run["train"]["best_dev"] if run.get("train") else run.get("dev")


def summarise(runs: list[dict[str, Any]], tasks: Sequence[str]) -> dict[str, Any]:
    averages = np.array([np.mean([r["scores"][t] for t in tasks]) for r in runs])
    devs = [d for d in map(best_dev, runs) if d is not None]
    return {
        "n": len(runs),
        "seeds": [r["seed"] for r in runs],
        "lrs": sorted({r["train"]["lr"] for r in runs if r.get("train")}),
        "average_mean": float(averages.mean()),
        "average_std": float(averages.std(ddof=1)) if len(runs) > 1 else None,
        "average_min": float(averages.min()),
        "average_max": float(averages.max()),
        "per_task_mean": {t: float(np.mean([r["scores"][t] for r in runs])) for t in tasks},
        "dev_mean": float(np.mean(devs)) if devs else None,
    }


def fmt(summary: dict[str, Any]) -> str:
    if summary["n"] == 1:
        return f"{summary['average_mean']:.2f}"
    return f"{summary['average_mean']:.2f} ± {summary['average_std']:.2f} (n={summary['n']})"


def sweep_table(name: str, values: Sequence[float], rows: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows of a dev sweep: one column per value (``rows[row]`` is keyed by ``f"{value:g}"``)."""
    return ["| row | " + " | ".join(f"{name} {v:g}" for v in values) + " |", "|---|" + "---|" * len(values)] + [
        f"| {row} | " + " | ".join(f"{devs[f'{v:g}']:.2f}" if f"{v:g}" in devs else "" for v in values) + " |"
        for row, devs in rows.items()
    ]


def lr_sweep_lines(settings: Settings, sweep: dict[str, Any]) -> list[str]:
    lrs = sorted({float(lr) for devs in sweep["rows"].values() for lr in devs})
    lines = ["STS-B dev learning-rate sweep (seed 0, best dev during training):", "",
             *sweep_table("lr", lrs, sweep["rows"]), ""]
    if settings.lr is None:
        why = sweep.get("chosen_because", {})
        chosen = ", ".join(
            f"{row} not yet (best at the grid's edge or grid unfinished)" if not lr
            else f"{row} {lr:g}" + (f" ({why[row]})" if why.get(row, "interior") != "interior" else "")
            for row, lr in sweep.get("best_lr", {}).items())
        return lines + [f"Best lr on dev per row (the grid is extended until its best point is interior, or down to "
                        f"{LR_FLOOR:g} while its lowest lr is best): {chosen}; every other row takes the lr of its "
                        "family's row.", ""]
    return lines + [f"Best lr on dev (mean over the rows): {sweep['best_lr_on_dev']}; the table used "
                    f"{sweep['table_lr']}.", ""]


def knob_sweep_lines(sweep: dict[str, Any]) -> list[str]:
    """Markdown of table E's knob sweep: best STS-B dev per group_p (weight 1), then per weight, as far as run."""
    best = sweep.get("best")
    chosen = (f"group_p {best['group_p']}, distillation_weight {best['distillation_weight']:g}" if best
              else "not yet (sweep unfinished)")
    if best and best["distillation_weight"] == W_LADDER[-1]:
        chosen += (f" (the ladder's top: under Adam the base loss then weighs 1/{W_LADDER[-1]:g} of the term, "
                   "which trains nearly alone; the last points show whether dev has levelled off)")
    lines = [f"The in-batch term on STS-B dev ({sweep['row']}, seed {sweep['seed']}, lr {sweep['lr']:g}, best dev "
             "during training):", ""]
    for knob, scores in (("group_p (weight 1)", sweep["group_p"]),
                         ("distillation_weight (best group_p)", sweep["distillation_weight"])):
        keys = sorted(scores, key=lambda key: -1.0 if key == "none" else float(key))
        if keys:
            lines += [f"| {knob} | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
                      "| dev | " + " | ".join(f"{scores[key]:.2f}" for key in keys) + " |", ""]
    return lines + [f"Chosen: {chosen}.", ""]


def mean_dev_curve(runs: Sequence[dict[str, Any]]) -> tuple[list[int], list[float], int] | None:
    """(steps, mean STS-B dev, n) over the trained runs of a row whose evaluations fell at the same steps; step 0
    is left to the start row (runs trained since the stages score their start hold it, older ones do not)."""
    hist = [[h for h in r["train"]["dev_history"] if h["step"] > 0] for r in runs if r.get("train")]
    if not hist:
        return None
    steps = [h["step"] for h in hist[0]]
    same = [[h["dev"] for h in hh] for hh in hist if [h["step"] for h in hh] == steps]
    return steps, [float(v) for v in np.mean(same, axis=0)], len(same)


def lr_note(settings: Settings) -> str:
    if settings.lr is None:
        return ("each trained row at the best lr on STS-B dev of its family's sweep (below; the lr of every run is "
                "in the JSON)")
    selection = read_json(settings.runs / "A" / "lr-selection.json") if (
        settings.runs / "A" / "lr-selection.json").is_file() else {}
    return f"lr {selection.get('chosen_lr', settings.lr)} for every trained row ({selection.get('note', '?')})"


def report(settings: Settings) -> str:
    """Write ``results/<stem>.{json,md}`` and the plots; returns the Markdown."""
    tables = collect(settings)
    out: dict[str, Any] = {"settings": settings.record(), "paper_bert_base_sts7_avg": PAPER, "tables": {}}
    md = ["# Quality benchmark results", "",
          f"Steps {settings.steps}, batch {settings.batch_size}, max length {settings.max_seq_length}, "
          f"STS-B dev every {settings.eval_steps} steps (best kept), linear decay, no warm-up, "
          f"{lr_note(settings)}. Spearman x100 of cosine similarity (MTEB main score, "
          "`distillcse_st.evaluation.evaluate_sts`, local data); mean ± sample std over seeds; n = number of seeds. "
          "Models are selected on STS-B dev only.", ""]
    for table, rows in tables.items():
        p_path, sweep_path = settings.runs / table / "p-sweep.json", settings.runs / table / "lr-sweep.json"
        if not rows and not sweep_path.is_file():
            continue
        tasks = scored_tasks(table, rows)
        summaries = {row: summarise(runs, tasks) for row, runs in rows.items()}
        parts = {key: {row: summarise(runs, part_tasks) for row, runs in rows.items()}
                 for key, (_, part_tasks) in E_PARTS.items()} if table in E_BLOCKS else {}
        out["tables"][table] = {row: {"label": ROWS[table][row].label, **summaries[row],
                                      **{key: part[row] for key, part in parts.items()},
                                      "runs": [{k: r[k] for k in ("seed", "scores", "average")}
                                               | {"best_dev": best_dev(r)} for r in runs]}
                                for row, runs in rows.items()}
        title = TITLES[table] + (f" (K = {settings.K} unless named)" if table == "B" else "")
        paper = " paper, BERT-base, STS7 avg |" if table == "B" else ""
        md += [f"## Table {title}, {', '.join(tasks)}", ""]
        if rows:
            e_columns = "".join(f" {E_PARTS[key][0]} |" for key in parts)
            md += ["| row | " + " | ".join(tasks) + f" | avg (mean ± std, n) |{e_columns} STS-B dev |{paper}",
                   "|---|" + "---|" * (len(tasks) + 2 + bool(paper) + len(parts))]
        for row, s in summaries.items():
            md.append(f"| {ROWS[table][row].label} | " + " | ".join(f"{s['per_task_mean'][t]:.2f}" for t in tasks)
                      + f" | {fmt(s)} | " + "".join(f"{fmt(part[row])} | " for part in parts.values())
                      + (f"{s['dev_mean']:.2f}" if s["dev_mean"] is not None else "") + " |"
                      + (f" {PAPER[row]:.2f} |" if row in PAPER else " |") * bool(paper))
        md += [""] if rows else []
        data = next((run["data"] for runs in rows.values() for run in runs if run.get("data")), None)
        if data:  # table E: the supervised pairs (pairs.py)
            md += [f"Data: {data['pairs']:,} (anchor, positive) pairs from {data['sick_entailment']:,} SICK train "
                   f"entailments and {data['stsb_min_score']:,} STS-B train pairs scored >= 4, after dropping "
                   + ", ".join(f"{count:,} {why.replace('_', '-')}" for why, count in data["dropped"].items())
                   + f" (held out: a sentence of {', '.join(data['held_out_tasks'])}); {data['triplets']} of them "
                   "with a SICK contradiction as hard negative.", ""]
        multi = rows.get("multi-teacher", [{}])[0]
        if multi.get("mpnet_dev") is not None:
            md += [f"all-mpnet-base-v2 (the second component) scores {multi['mpnet_dev']:.2f} on STS-B dev "
                   "(max length 32).", ""]
        if p_path.is_file():
            sweep = read_json(p_path)
            out["tables"][table]["p_sweep"] = sweep
            row = P_SWEEP_ROWS[table]
            seeds = sweep.get("seeds", [0])  # the 150-step sweeps ran seed 0 only
            over = f"mean over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"seed {seeds[0]}"
            md += [f"Group-P's p on STS-B dev ({row}, {over}, best dev during training):", "",
                   *sweep_table("p", P_SWEEP, {row: sweep.get(row, {})}), "",
                   f"Best p on dev: {sweep['best_p_on_dev'] or 'not yet (sweep unfinished)'}; the table's other "
                   f"rows use {sweep['table_p']}.", ""]
        if sweep_path.is_file():
            sweep = read_json(sweep_path)
            out["tables"][table]["lr_sweep"] = sweep
            md += lr_sweep_lines(settings, sweep)
        knob_path = settings.runs / table / "knob-sweep.json"
        if knob_path.is_file():
            sweep = read_json(knob_path)
            out["tables"][table]["knob_sweep"] = sweep
            md += knob_sweep_lines(sweep)
    if tables["B"]:
        md += ["The paper's column: BERT-base trained on 1M Wikipedia sentences (SimCSE teachers, 16 components), "
               "average of the seven STS tasks (docs/method.md); only the ordering of the rows is comparable.", ""]
    out["machine"] = machine_info()
    write_json(RESULTS / f"{settings.stem}.json", out)
    (RESULTS / f"{settings.stem}.md").write_text("\n".join(md), encoding="utf-8")
    plots(settings, tables)
    return "\n".join(md)


def plots(settings: Settings, tables: dict[str, Runs]) -> None:
    """Per table: final scores (mean ± std over seeds, the paper beside table B) and STS-B dev during training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for table, rows in tables.items():
        if not rows:
            continue
        tasks = scored_tasks(table, rows)
        names = list(rows)
        s = [summarise(rows[r], tasks) for r in names]
        means = [x["average_mean"] for x in s]
        errs = [x["average_std"] or 0.0 for x in s]
        paper = [PAPER.get(n) for n in names] if table == "B" else []
        side = any(paper)
        fig, axes = plt.subplots(1, 2 if side else 1, figsize=(12 if side else 9, 0.55 * len(names) + 1.5),
                                 sharey=True, squeeze=False, gridspec_kw={"width_ratios": [3, 1]} if side else None)
        ax = axes[0, 0]
        if side:
            right = axes[0, 1]
            right.barh(range(len(names)), [v or 0 for v in paper], color="tab:gray", alpha=0.8)
            for i, v in enumerate(paper):
                if v:
                    right.text(v + 0.1, i, f"{v:.2f}", va="center", fontsize=8)
            right.set_xlim(min(v for v in paper if v) - 2, max(v for v in paper if v) + 1.5)
            right.set_xlabel("paper: BERT-base, STS7 avg")
            right.set_title("DistillCSE paper")
        ax.barh(range(len(names)), means, xerr=errs, color="tab:blue", alpha=0.8, capsize=4)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([f"{ROWS[table][n].label} (n={x['n']})" for n, x in zip(names, s)], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(min(means) - 3, max(m + e for m, e in zip(means, errs)) + 1.5)
        for i, (m, e) in enumerate(zip(means, errs)):
            ax.text(m + e + 0.1, i, f"{m:.2f}", va="center", fontsize=8)
        ax.set_xlabel(f"Spearman x100, average of {', '.join(tasks)}" if len(tasks) < 7 else "STS avg (7 tasks)")
        ax.set_title(f"Table {table}: mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(RESULTS / f"{settings.stem}_{table}_bars.png", dpi=110)
        plt.close(fig)

        curves = {name: curve for name, runs in rows.items() if (curve := mean_dev_curve(runs)) is not None}
        if not curves:  # only untrained rows so far: nothing to draw
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        start = next((runs[0]["dev"] for name, runs in rows.items()
                      if name == "initial-student" and runs[0].get("dev") is not None), None)
        for i, (name, (steps, devs, n)) in enumerate(curves.items()):
            xs, ys = ([0] + steps, [start] + devs) if start is not None else (steps, devs)
            # ten colours, then the same colours dashed with square markers: no two rows look alike
            ax.plot(xs, ys, marker="os"[i // 10 % 2], linestyle="-" if i < 10 else "--", color=f"C{i % 10}",
                    label=f"{name} (n={n})")
        ax.set_xlabel("training step")
        ax.set_ylabel("STS-B dev Spearman x100 (mean over seeds)")
        ax.set_title(f"Table {table}: STS-B dev during training")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{settings.stem}_{table}_dev_curves.png", dpi=110)
        plt.close(fig)
