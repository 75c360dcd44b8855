"""PNG plots of STS-B dev scores: one bar per stage (or model) and dev over training steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def plot_dev_scores(
    scores: Mapping[str, float], histories: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path, title: str
) -> Path:
    """Save a two-panel PNG: ``scores`` (name -> Spearman x 100) as bars, ``histories`` (name -> [{step, dev}])
    as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, lines) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(scores)
    values = [scores[name] for name in names]
    bars.bar(range(len(names)), values, color="tab:blue")
    bars.set_xticks(range(len(names)), names, rotation=30, ha="right")
    for index, value in enumerate(values):
        bars.annotate(f"{value:.1f}", (index, value), ha="center", va="bottom")
    low = min(values)
    bars.set_ylim(max(0.0, low - 10), max(values) + 5)
    bars.set_ylabel("STS-B dev Spearman x 100")
    bars.set_title("per stage")
    for name, history in histories.items():
        if history:
            lines.plot(
                [point["step"] for point in history], [point["dev"] for point in history], marker="o", label=name
            )
    lines.set_xlabel("training step")
    lines.set_ylabel("STS-B dev Spearman x 100")
    lines.set_title("during training")
    if lines.has_data():
        lines.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
