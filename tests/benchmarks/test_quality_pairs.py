"""Table E's data builder on tiny made-up SICK and STS-B files, and the cached teacher and guide it trains with."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from quality import pairs, runner  # noqa: E402

from tests.helpers import CORPUS  # noqa: E402

SICK = """pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment
1\tA man plays a guitar\tA person plays a guitar\t4.7\tENTAILMENT
2\tA man plays a guitar\tNobody plays a guitar\t3.1\tCONTRADICTION
3\tA dog runs\tA dog is running\t4.9\tENTAILMENT
4\tA dog runs\tA cat sleeps\t1.2\tNEUTRAL
5\tA person plays a guitar\ta man plays a guitar \t4.6\tENTAILMENT
6\tA kid jumps\tA held-out sentence\t4.0\tENTAILMENT
7\tA dog runs\tA held-out sentence\t2.0\tCONTRADICTION
"""
STSB = """main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane takes off.\tAn air plane is taking off.
main-captions\tMSRvid\t2012test\t0002\t3.800\tA man plays a flute.\tA man plays a large flute.
main-news\theadlines\t2016\t0012\t4\tSame text.\tsame text.\tsource\tsource
main-news\theadlines\t2016\t0013\t4.2\tA dog is running\tA dog runs\tsource\tsource
"""


def _data(tmp_path: Path) -> tuple[list[pairs.Triplet], list[pairs.Pair]]:
    (tmp_path / "sick.txt").write_text(SICK, encoding="utf-8")
    (tmp_path / "sts.csv").write_text(STSB, encoding="utf-8")
    return pairs.read_sick(tmp_path / "sick.txt"), pairs.read_stsb(tmp_path / "sts.csv")


def test_stsb_pairs_need_a_score_of_at_least_4_and_rows_may_carry_extra_columns(tmp_path):
    _, stsb = _data(tmp_path)
    assert stsb == [("A plane takes off.", "An air plane is taking off."), ("Same text.", "same text."),
                    ("A dog is running", "A dog runs")]


def test_pairs_are_entailments_then_stsb_once_each_without_identical_or_held_out_sentences(tmp_path):
    sick, stsb = _data(tmp_path)
    built, stats = pairs.build_pairs(sick, stsb, {"a held-out sentence"})
    assert built == [("A man plays a guitar", "A person plays a guitar"), ("A dog runs", "A dog is running"),
                     ("A plane takes off.", "An air plane is taking off.")]
    # pair 5 repeats pair 1 reversed (case and spaces aside), STS-B's last pair repeats SICK's pair 3
    assert stats["dropped"] == {"duplicate": 2, "identical": 1, "held_out": 1}
    assert stats["sick_entailment"] == 4 and stats["stsb_min_score"] == 3 and stats["pairs"] == 3


def test_a_triplet_takes_the_anchors_contradiction_partner_unless_it_is_held_out(tmp_path):
    sick, stsb = _data(tmp_path)
    built, _ = pairs.build_pairs(sick, stsb, set())
    assert pairs.build_triplets(built, sick, {"a held-out sentence"}) == [
        ("A man plays a guitar", "A person plays a guitar", "Nobody plays a guitar")]
    assert ("A dog runs", "A dog is running", "A held-out sentence") in pairs.build_triplets(built, sick, set())


def test_a_cached_teacher_gives_add_teacher_embeddings_one_cached_row_per_text_and_column():
    from datasets import Dataset

    from distillcse_st.teachers import add_teacher_embeddings

    cached = runner.CachedTeacher(["a", "b", "c"], np.diag([1.0, 2.0, 3.0]).astype(np.float32))
    data = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "a"]})
    labels = np.asarray(add_teacher_embeddings(data, [cached], column=["anchor", "positive"],
                                               show_progress_bar=False)["label"])
    np.testing.assert_allclose(labels, [[[1, 0, 0], [0, 0, 1]], [[0, 1, 0], [1, 0, 0]]])  # L2-normalised rows


def test_a_cached_guide_gives_gist_the_loss_of_its_live_guide_of_another_tokenizer(
    tiny_model_dir, other_vocab_teacher_dir
):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    student = SentenceTransformer(str(tiny_model_dir), device="cpu")
    guide = SentenceTransformer(str(other_vocab_teacher_dir), device="cpu")
    anchors, positives = CORPUS[:4], CORPUS[4:8]
    texts = runner.decoded_texts(student, [*anchors, *positives])
    cached = runner.CachedGuide(guide, texts, guide.encode(texts, convert_to_numpy=True))
    features = [student.preprocess(column) for column in (anchors, positives)]
    live_loss = GISTEmbedLoss(student, guide=guide)
    assert live_loss.must_retokenize
    expected = live_loss(features, None)
    assert GISTEmbedLoss(student, guide=cached)(features, None).item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(KeyError):
        cached.preprocess(["a text it never saw"])
