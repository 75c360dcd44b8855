"""Peak memory and time of add_teacher_embeddings before and after streaming, and of the CLI's cache (issue 26).

K = 4 teachers of width 384 (stacked width 1536) label N Wikipedia sentences (one column) or N pairs (two
columns). "before" is ``distillcse_st/teachers.py`` as of commit :data:`BEFORE` (every row held several
times, pairs through ``.tolist()``), loaded into a temporary module; "after" is the working tree's streaming
version, in float32 and float16; "cache" is the CLI's float16 memory-mapped
``distillcse_st.training.teacher_cache.cached_teacher_embeddings`` as it is. Each (configuration, N) runs
in a fresh subprocess; the baseline is taken after the imports, the teachers, the texts and a warm-up call
on 256 texts. Reported: the growth of the peak anonymous memory (sampled every 2 ms; what the process
cannot give back) and of the peak resident set (``VmHWM`` reset by ``/proc/self/clear_refs``: it also
counts pages of memory-mapped files, which the kernel can drop), and the wall time.

The teachers are cheap on purpose: random StaticEmbedding models (a token-embedding bag, ST's own module)
with one WordPiece vocabulary, so that the run measures the memory of the labelling and not of BERT. The
cost of real teachers comes from a separate measurement: sentences per second of random-weight BERT-base and
BERT-large encoders (the FLOPs of SimCSE's teachers, max_seq_length 32) on this machine, from which the cost
of wiki1m is extrapolated.

    python benchmarks/teacher_memory.py                      # 10k, 40k, 160k (30 minutes on 2 busy cores)
    python benchmarks/teacher_memory.py --report             # the Markdown and plot again, from the JSON
    python benchmarks/teacher_memory.py --sizes 2000 8000    # a quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, RESULTS, machine_info, read_json, wiki_sentences, write_json  # noqa: E402

from distillcse_st.teachers import CHUNK_SIZE  # noqa: E402

BEFORE = "c8c9818"
REPOSITORY = Path(__file__).resolve().parents[1]
WORK = CACHE / "teacher_memory"
RUNS = WORK / "runs.json"
TEACHERS = 4
WIDTH = 384
VOCAB = 8000
BATCH = 256
MAX_SEQ_LENGTH = 32  # of the BERT-base/large throughput
CACHE_SEQ_LENGTH = 8  # of the cache's cheap teachers
WARMUP_TEXTS = 256
TEXT_CHARS = 48
SIZES = (10_000, 40_000, 160_000)
#: (implementation, text columns, dtype of the label column), most important first
CONFIGS = (
    ("after", 1, "float32"), ("before", 1, "float32"), ("after", 2, "float32"), ("before", 2, "float32"),
    ("cache", 1, "float16"), ("after", 1, "float16"),
)
#: A run is skipped when its peak, extrapolated linearly from the largest measured N, exceeds this share of
#: the memory available at the start.
MEMORY_SHARE = 0.6
#: Sentences timed for each BERT size (after a warm-up batch), and the paper's teachers.
THROUGHPUT_TEXTS = {"bert-base": 32, "bert-large": 16}
BERT_SIZES = {
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
WIKI1M = 1_000_000
ENSEMBLES = {"K = 4 BERT-base": {"bert-base": 4}, "8 BERT-base + 4 BERT-large": {"bert-base": 8, "bert-large": 4}}
#: Not measured here (no GPU in this run): BERT-base sentences per second on one data-centre GPU at
#: max_seq_length 32, to turn the measured per-sentence cost ratios into GPU hours.
ASSUMED_GPU_BASE_PER_SECOND = 5000.0


def parse_status(text: str) -> dict[str, int]:
    """The memory fields of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``, ...), in bytes."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def column_bytes(rows: int, width: int, columns: int, dtype: str) -> int:
    """The bytes of a label column's values: ``rows x columns x width`` numbers of ``dtype``."""
    return rows * columns * width * {"float32": 4, "float16": 2}[dtype]


def predicted_peak(measured: Mapping[int, float], size: int) -> float:
    """A peak at ``size`` rows, extrapolated proportionally from the largest measured size (0 if none)."""
    if not measured:
        return 0.0
    largest = max(measured)
    return measured[largest] * size / largest


def ensemble_cost(seconds_per_sentence: Mapping[str, float], teachers: Mapping[str, int], rows: int) -> float:
    """Seconds to encode ``rows`` sentences with ``teachers`` (count per kind), from per-sentence costs."""
    return rows * sum(count * seconds_per_sentence[kind] for kind, count in teachers.items())


def ensemble_width(teachers: Mapping[str, int]) -> int:
    return sum(count * BERT_SIZES[kind]["hidden_size"] for kind, count in teachers.items())


def layer_flops(kind: str) -> int:
    """Layers x hidden size squared: proportional to a BERT's multiply-adds per token (short inputs)."""
    return BERT_SIZES[kind]["num_hidden_layers"] * BERT_SIZES[kind]["hidden_size"] ** 2


def measure(function: Callable[[], Any]) -> dict[str, float]:
    """Wall time and the growth of the peak anonymous and resident memory of this process during ``function``."""
    status = Path("/proc/self/status")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = parse_status(status.read_text())
    peak_anon = start["RssAnon"]
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_anon
        while not done.wait(0.002):
            peak_anon = max(peak_anon, parse_status(status.read_text())["RssAnon"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    output = function()
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    end = parse_status(status.read_text())
    del output
    return {
        "seconds": seconds,
        "peak_anon_growth": max(peak_anon, end["RssAnon"]) - start["RssAnon"],
        "peak_rss_growth": end["VmHWM"] - start["VmRSS"],
    }


def teacher_dirs(kind: str) -> list[Path]:
    """K random teachers of width :data:`WIDTH` sharing one WordPiece vocabulary, built once.

    ``kind`` "static": StaticEmbedding (a token-embedding bag); "bert0": BERT without encoder layers (embeddings,
    LayerNorm, mean pooling), for the CLI's cache, which needs teachers with a settable ``max_seq_length``.
    """
    dirs = [WORK / f"{kind}-teacher-{k}" for k in range(TEACHERS)]
    if all((path / "modules.json").is_file() for path in dirs):
        return dirs
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    tokenizer = wordpiece(wiki_sentences(20_000), VOCAB)
    for seed, path in enumerate(dirs):
        if kind == "bert0":
            save_bert(path, tokenizer, seed, hidden_size=WIDTH, num_hidden_layers=0, num_attention_heads=1)
        else:
            torch.manual_seed(seed)
            model = SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=WIDTH)], device="cpu")
            model.save(str(path))
    return dirs


def texts(rows: int, offset: int = 0) -> list[str]:
    """``rows`` Wikipedia sentences cut at :data:`TEXT_CHARS` characters (cheap to tokenize)."""
    return [sentence[:TEXT_CHARS] for sentence in wiki_sentences(rows, offset)]


def save_bert(path: Path, tokenizer: Any, seed: int, **config: int) -> Path:
    """A random BERT with mean pooling, saved in SentenceTransformer format under ``path``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast(tokenizer_object=tokenizer)
    with tempfile.TemporaryDirectory(dir=WORK) as raw:
        BertModel(BertConfig(vocab_size=len(tokenizer), **config)).save_pretrained(raw)
        tokenizer.save_pretrained(raw)
        transformer = Transformer(raw, max_seq_length=MAX_SEQ_LENGTH)
        model = SentenceTransformer(modules=[transformer, Pooling(config["hidden_size"], "mean")], device="cpu")
        model.save(str(path))
    return path


def wordpiece(texts: Sequence[str], vocab_size: int) -> Any:
    """A BERT-style WordPiece tokenizer trained on ``texts`` (as ``tests/helpers.py`` builds its tokenizers)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    return tokenizer


def before_module() -> Any:
    """``distillcse_st/teachers.py`` as of :data:`BEFORE`, imported as the module ``teachers_before``."""
    source = subprocess.run(["git", "-C", str(REPOSITORY), "show", f"{BEFORE}:distillcse_st/teachers.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="teachers_before-")) / "teachers_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("teachers_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelling(implementation: str, columns: int, dtype: str, scratch: Path) -> Callable[[int], Callable]:
    """For a number of rows, the call to measure (its inputs built beforehand, outside the measurement)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    if implementation == "cache":
        from accelerate import PartialState

        from distillcse_st.training.teacher_cache import cached_teacher_embeddings

        dirs = teacher_dirs("bert0")

        def cache_call(rows: int) -> Callable:
            sentences, cache_dir = texts(rows), scratch / f"cache-{rows}"
            return lambda: cached_teacher_embeddings(sentences, dirs, None, cache_dir, CACHE_SEQ_LENGTH,
                                                     PartialState(cpu=True), BATCH, show_progress_bar=False)
        return cache_call

    teachers = [SentenceTransformer(str(path), device="cpu") for path in teacher_dirs("static")]
    if implementation == "before":
        function, options = before_module().add_teacher_embeddings, {}
    else:
        from distillcse_st.teachers import add_teacher_embeddings as function
        options = {"dtype": dtype}
    names = ["anchor", "positive"][:columns]

    def call(rows: int) -> Callable:
        sentences = texts(rows * columns)
        dataset = Dataset.from_dict({name: sentences[i * rows:(i + 1) * rows] for i, name in enumerate(names)})
        column = names[0] if columns == 1 else names
        return lambda: function(dataset, teachers, column=column, batch_size=BATCH, show_progress_bar=False, **options)
    return call


def run_worker(spec: dict[str, Any]) -> dict[str, float]:
    """One measurement, in this (fresh) process: warm up on a few texts, then label ``spec["rows"]`` rows."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(dir=WORK) as scratch:
        call = labelling(spec["implementation"], spec["columns"], spec["dtype"], Path(scratch))
        call(WARMUP_TEXTS)()
        return measure(call(spec["rows"]))


def bert_throughput(kind: str) -> float:
    """Seconds per sentence of a random-weight BERT of size ``kind`` (mean pooling) on wiki sentences."""
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory(dir=WORK) as directory:
        tokenizer = wordpiece(wiki_sentences(20_000), 30_522)
        model = SentenceTransformer(str(save_bert(Path(directory), tokenizer, 0, **BERT_SIZES[kind])), device="cpu")
        model.max_seq_length = MAX_SEQ_LENGTH
    sentences = wiki_sentences(THROUGHPUT_TEXTS[kind] + 16, offset=WIKI_OFFSET)
    model.encode(sentences[:16], batch_size=16)
    began = time.perf_counter()
    model.encode(sentences[16:], batch_size=32)
    return (time.perf_counter() - began) / THROUGHPUT_TEXTS[kind]


WIKI_OFFSET = 300_000  # the throughput texts: not the labelled ones


def in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``spec`` with ``--worker`` in a fresh interpreter; its last line of output is the JSON result."""
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"worker {spec} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def available_memory() -> int:
    return parse_status(Path("/proc/meminfo").read_text())["MemAvailable"]


def measure_all(sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Every configuration at every size, smallest first, each in a fresh process (skipped if it cannot fit).

    Finished runs are kept in :data:`RUNS`, and a rerun of the script measures only the missing ones.
    """
    available = available_memory()
    done = {key(run): run for run in read_json(RUNS)} if RUNS.is_file() else {}
    runs = []
    for implementation, columns, dtype in CONFIGS:
        peaks: dict[int, float] = {}
        for rows in sorted(sizes):
            run = {"implementation": implementation, "columns": columns, "dtype": dtype, "rows": rows,
                   "column_bytes": column_bytes(rows, TEACHERS * WIDTH, columns, dtype)}
            predicted = predicted_peak(peaks, rows)
            if key(run) in done:
                run = done[key(run)]
            elif predicted > MEMORY_SHARE * available:
                run["skipped"] = f"predicted peak {predicted / 2**30:.1f} GiB > {MEMORY_SHARE} x available memory"
            else:
                run.update(in_subprocess(run))
            if "skipped" not in run:
                peaks[rows] = max(run["peak_anon_growth"], run["peak_rss_growth"])
            print(json.dumps(run), flush=True)
            runs.append(run)
            write_json(RUNS, [*runs, *(run for name, run in done.items() if name not in map(key, runs))])
    return runs


def key(run: Mapping[str, Any]) -> str:
    return f"{run['implementation']}-{run['columns']}-{run['dtype']}-{run['rows']}"


def label(run: Mapping[str, Any]) -> str:
    columns = "1 column" if run["columns"] == 1 else f"{run['columns']} columns"
    return f"{run['implementation']} {run['dtype']}, {columns}"


def series(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The measured runs grouped by configuration, in order of size."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in sorted(runs, key=lambda run: run["rows"]):
        if "skipped" not in run:
            grouped.setdefault(label(run), []).append(run)
    return grouped


def target(points: Sequence[Mapping[str, Any]], chunk_size: int) -> dict[str, Any]:
    """Peak-memory growth from the smallest to the largest size against the column plus one float32 chunk."""
    first, last = points[0], points[-1]
    growth = last["peak_anon_growth"] - first["peak_anon_growth"]
    limit = last["column_bytes"] + column_bytes(chunk_size, TEACHERS * WIDTH, last["columns"], "float32")
    per_row = [point["seconds"] / point["rows"] for point in points]
    rss_growth = last["peak_rss_growth"] - first["peak_rss_growth"]
    return {"from_rows": first["rows"], "to_rows": last["rows"], "peak_growth": growth, "rss_growth": rss_growth,
            "limit": limit, "met": growth <= limit, "met_by_rss": rss_growth <= limit,
            "seconds_per_row_last_over_previous": per_row[-1] / per_row[-2]}


def extrapolate(runs: Sequence[Mapping[str, Any]], seconds_per_sentence: Mapping[str, float]) -> dict[str, Any]:
    """wiki1m with K = 4 BERT-base and with 8 BERT-base + 4 BERT-large: time, memory and disk."""
    grouped = series(runs)
    largest = grouped["after float32, 1 column"][-1]
    overhead = largest["seconds"] / largest["rows"]  # per row, the 4 cheap teachers included: an upper bound
    after_ratio = largest["peak_anon_growth"] / column_bytes(CHUNK_SIZE, TEACHERS * WIDTH, 1, "float32")
    before = grouped["before float32, 1 column"][-1]
    before_ratio = before["peak_anon_growth"] / before["column_bytes"]
    large_over_base = seconds_per_sentence["bert-large"] / seconds_per_sentence["bert-base"]
    result = {"rows": WIKI1M, "labelling_overhead_seconds_per_row": overhead, "before_peak_over_column": before_ratio,
              "after_peak_over_chunk": after_ratio, "large_over_base_cost": large_over_base,
              "assumed_gpu_base_sentences_per_second": ASSUMED_GPU_BASE_PER_SECOND, "ensembles": {}}
    for name, ensemble in ENSEMBLES.items():
        width = ensemble_width(ensemble)
        base_equivalents = ensemble.get("bert-base", 0) + large_over_base * ensemble.get("bert-large", 0)
        result["ensembles"][name] = {
            "width": width,
            "cpu_hours_here": (ensemble_cost(seconds_per_sentence, ensemble, WIKI1M) + WIKI1M * overhead) / 3600,
            "gpu_hours_assumed": WIKI1M * base_equivalents / ASSUMED_GPU_BASE_PER_SECOND / 3600,
            "column_float32_bytes": column_bytes(WIKI1M, width, 1, "float32"),
            "column_float16_bytes": column_bytes(WIKI1M, width, 1, "float16"),
            "after_peak_bytes": after_ratio * column_bytes(CHUNK_SIZE, width, 1, "float32"),
            "before_peak_bytes": before_ratio * column_bytes(WIKI1M, width, 1, "float32"),
        }
    return result


def gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def markdown(runs: Sequence[Mapping[str, Any]], targets: Mapping[str, Any], wiki1m: Mapping[str, Any],
             seconds_per_sentence: Mapping[str, float], machine: Mapping[str, Any]) -> str:
    sizes = sorted({run["rows"] for run in runs})
    lines = [
        "# add_teacher_embeddings: peak memory and time, before and after streaming (issue 26)", "",
        f"{machine['date']}, {machine.get('cpu_model', machine['processor'])}, {machine['cpu_count']} cores "
        f"(load average at start {machine.get('load_average_at_start', ['?'])[0]:.1f}), torch "
        f"{machine['versions']['torch']}, sentence-transformers {machine['versions']['sentence_transformers']}, "
        f"datasets {machine['versions'].get('datasets')}.", "",
        f"K = {TEACHERS} cheap random teachers of width {WIDTH} (stacked width {TEACHERS * WIDTH}), batch {BATCH}, "
        f"Wikipedia sentences cut at {TEXT_CHARS} characters; rows = sentences (1 column) or pairs (2 columns). "
        f"before = `teachers.py` at {BEFORE}; cache = the CLI's `cached_teacher_embeddings` (float16 .npy, "
        "0-layer BERT teachers). Peak growth over the baseline after loading everything: anonymous memory "
        "(sampled, what cannot be reclaimed) / resident set incl. mapped files (VmHWM), in GiB; time in seconds.", "",
        "| configuration | " + " | ".join(f"{rows:,} rows: anon / RSS GiB, s" for rows in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    by_config: dict[str, dict[int, Mapping[str, Any]]] = {}
    for run in runs:
        by_config.setdefault(label(run), {})[run["rows"]] = run
    for name, by_rows in by_config.items():
        cells = []
        for rows in sizes:
            run = by_rows.get(rows)
            if run is None or "skipped" in run:
                cells.append("skipped" if run else "-")
            else:
                cells.append(f"{gib(run['peak_anon_growth'])} / {gib(run['peak_rss_growth'])}, {run['seconds']:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Label column (values): " + ", ".join(
        f"{rows:,} rows {gib(column_bytes(rows, TEACHERS * WIDTH, 1, 'float32'))} GiB float32 per column"
        for rows in sizes) + ".", ""]
    skipped = [run for run in runs if "skipped" in run]
    lines += [f"Skipped: {label(run)} at {run['rows']:,} rows ({run['skipped']})." for run in skipped]
    lines += ["", "## Target: peak growth, smallest to largest N, <= the column + one chunk; time linear", "",
              "| configuration | peak growth, anon / RSS (GiB) | column + chunk (GiB) | met, anon / RSS | "
              "time per row, last / previous N |",
              "|---|---:|---:|---|---:|"]
    lines += [f"| {name} | {gib(t['peak_growth'])} / {gib(t['rss_growth'])} | {gib(t['limit'])} | "
              f"{'yes' if t['met'] else 'no'} / {'yes' if t['met_by_rss'] else 'no'} | "
              f"{t['seconds_per_row_last_over_previous']:.2f} |" for name, t in targets.items()]
    lines += [
        "", "## Extrapolation to wiki1m (1,000,000 sentences, one column)", "",
        f"Measured here: random-weight BERT-base {seconds_per_sentence['bert-base'] * 1000:.0f} ms and BERT-large "
        f"{seconds_per_sentence['bert-large'] * 1000:.0f} ms per sentence (max_seq_length {MAX_SEQ_LENGTH}, CPU), so "
        f"a large teacher costs {wiki1m['large_over_base_cost']:.2f} base teachers (their ratio of layers x "
        f"hidden^2, the FLOPs per token, is {layer_flops('bert-large') / layer_flops('bert-base'):.2f}: the GPU hours "
        "of large teachers may be understated by up to that factor); the labelling itself (after, "
        f"cheap teachers included) {wiki1m['labelling_overhead_seconds_per_row'] * 1e6:.0f} us per row. GPU hours "
        f"assume {ASSUMED_GPU_BASE_PER_SECOND:,.0f} BERT-base sentences/s per GPU (an assumption, not measured) "
        "times the measured large/base ratio. Peak memory scaled from the largest N measured: after "
        f"{wiki1m['after_peak_over_chunk']:.1f}x a float32 chunk of {CHUNK_SIZE:,} rows, before "
        f"{wiki1m['before_peak_over_column']:.1f}x the float32 column. Disk (after): a temporary .npy of the "
        "distinct texts' rows, deleted when the call returns, and the Arrow file of the new dataset in datasets' "
        "temporary cache directory (until Python exits), each the size of the column, under TMPDIR.", "",
        "| teachers | width | CPU hours here | GPU hours (assumed rate) | label column float32 / float16 (GB) | "
        "after: peak RAM (GB) | after: disk, float16 (GB) | before: peak RAM (GB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cost in wiki1m["ensembles"].items():
        lines.append(
            f"| {name} | {cost['width']:,} | {cost['cpu_hours_here']:,.0f} | {cost['gpu_hours_assumed']:.1f} | "
            f"{cost['column_float32_bytes'] / 1e9:.1f} / {cost['column_float16_bytes'] / 1e9:.1f} | "
            f"{cost['after_peak_bytes'] / 1e9:.1f} | {2 * cost['column_float16_bytes'] / 1e9:.1f} | "
            f"{cost['before_peak_bytes'] / 1e9:.0f} |")
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({run["rows"] for run in runs})
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for position, columns in enumerate((1, 2)):
        memory, seconds = axes[0][position], axes[1][position]
        for name, points in series(runs).items():
            if points[0]["columns"] != columns:
                continue
            rows = [point["rows"] for point in points]
            style = "-o" if name.startswith("before") else "--s" if name.startswith("after") else ":^"
            memory.plot(rows, [point["peak_anon_growth"] / 2**30 for point in points], style, label=name)
            seconds.plot(rows, [point["seconds"] for point in points], style, label=name)
        for dtype, color in (("float32", "black"), ("float16", "grey")):
            memory.plot(sizes, [column_bytes(rows, TEACHERS * WIDTH, columns, dtype) / 2**30 for rows in sizes],
                        color=color, linewidth=0.8, label=f"label column, {dtype}")
        memory.set_title(f"{columns} text column{'s' if columns > 1 else ''}: peak anonymous memory growth")
        memory.set_ylabel("GiB")
        seconds.set_title("time")
        seconds.set_ylabel("seconds")
        seconds.set_xlabel("rows")
        memory.legend(fontsize=7)
        for axis in (memory, seconds):
            axis.set_xscale("log")
            axis.set_yscale("log")
    figure.suptitle(f"add_teacher_embeddings, K = {TEACHERS} teachers, stacked width {TEACHERS * WIDTH}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--report", action="store_true", help="rebuild the Markdown and plot from the JSON results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(bert_throughput(spec["bert"]) if "bert" in spec else run_worker(spec)))
        return 0
    if args.report:
        results = read_json(RESULTS / "teacher_memory.json")
        write_results(results["machine"], results["config"], results["runs"], results["seconds_per_sentence"])
        return 0
    machine = machine_info()
    for kind in ("static", "bert0"):
        teacher_dirs(kind)
    runs = measure_all(args.sizes)
    seconds_per_sentence = {kind: in_subprocess({"bert": kind}) for kind in BERT_SIZES}
    print(json.dumps(seconds_per_sentence), flush=True)
    config = {"sizes": args.sizes, "teachers": TEACHERS, "width": WIDTH, "vocab": VOCAB, "batch_size": BATCH,
              "text_chars": TEXT_CHARS, "cache_max_seq_length": CACHE_SEQ_LENGTH, "chunk_size": CHUNK_SIZE,
              "before": BEFORE, "configs": CONFIGS, "memory_share": MEMORY_SHARE}
    write_results(machine, config, runs, seconds_per_sentence)
    return 0


def write_results(machine: Mapping[str, Any], config: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                  seconds_per_sentence: Mapping[str, float]) -> None:
    """The JSON, Markdown and plot of a run, with the targets and the wiki1m extrapolation computed from it."""
    from distillcse_st.training.teacher_cache import CHUNK

    chunks = {"after": CHUNK_SIZE, "cache": CHUNK}
    targets = {name: target(points, chunks[points[0]["implementation"]]) for name, points in series(runs).items()
               if points[0]["implementation"] in chunks and len(points) > 1}
    wiki1m = extrapolate(runs, seconds_per_sentence)
    write_json(RESULTS / "teacher_memory.json", {
        "machine": machine, "config": config, "runs": runs, "targets": targets,
        "seconds_per_sentence": seconds_per_sentence, "wiki1m": wiki1m,
    })
    report = markdown(runs, targets, wiki1m, seconds_per_sentence, machine)
    (RESULTS / "teacher_memory.md").write_text(report, encoding="utf-8")
    plot(runs, RESULTS / "teacher_memory.png")
    print(report)


if __name__ == "__main__":
    raise SystemExit(main())
