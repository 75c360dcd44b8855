"""The losses keep ST's explicit signatures; this checks that they, get_config_dict and the CLI agree (issue 14).

A hyperparameter added to one constructor but not forwarded, given another default, missing from the
configuration of the model card, or offered by the CLI under another default fails here.
"""

from __future__ import annotations

import argparse
import inspect

import pytest
from sentence_transformers.sentence_transformer import losses as st_losses

from distillcse_st.commands.arguments import LOSS_OPTIONS, add_loss_options
from distillcse_st.losses import (
    CachedGroupPDistillLoss,
    CachedMultiTeacherAvgLoss,
    DistillCSELoss,
    GroupPDistillLoss,
    InBatchDistillLoss,
    MultiTeacherAvgLoss,
)

SIMCSE_LOSSES = [
    DistillCSELoss, GroupPDistillLoss, MultiTeacherAvgLoss, CachedGroupPDistillLoss, CachedMultiTeacherAvgLoss
]
NOT_HYPERPARAMETERS = {"self", "model", "loss", "teacher", "teachers", "weights", "show_progress_bar"}
#: A valid value other than the default for every hyperparameter, to see it arrive in get_config_dict.
OTHER_VALUES = {
    "group_p": 0.3,
    "group_size": None,
    "group_temperature": 0.5,
    "contrastive_temperature": 0.07,
    "student_temperature": 0.03,
    "teacher_temperature": 0.02,
    "contrastive_weight": 0.5,
    "distillation_weight": 0.7,
    "divergence": "js",
    "gather_across_devices": True,
    "mini_batch_size": 5,
    "mini_batch_num_tokens": 100,
}


def hyperparameters(loss_class: type) -> dict[str, object]:
    parameters = inspect.signature(loss_class.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in NOT_HYPERPARAMETERS}


def test_every_loss_has_the_same_defaults_for_the_same_hyperparameter():
    reference = hyperparameters(DistillCSELoss)
    for loss_class in [*SIMCSE_LOSSES, InBatchDistillLoss]:
        for name, default in hyperparameters(loss_class).items():
            if name in reference:
                assert default == reference[name], (loss_class.__name__, name)
    shared = set(hyperparameters(InBatchDistillLoss))
    assert shared <= set(reference), "the stacked loss has a hyperparameter the SimCSE losses lack"
    assert set(reference) - shared == {"contrastive_temperature", "contrastive_weight"}


@pytest.mark.parametrize("loss_class", SIMCSE_LOSSES + [InBatchDistillLoss])
def test_every_hyperparameter_is_forwarded_to_the_config(student, loss_class):
    names = hyperparameters(loss_class)
    kwargs = {name: OTHER_VALUES[name] for name in names}
    if loss_class is InBatchDistillLoss:
        kwargs["loss"] = st_losses.MultipleNegativesRankingLoss(student)
    config = loss_class(student, **kwargs).get_config_dict()
    for name in names:
        assert config[name] == OTHER_VALUES[name], (loss_class.__name__, name)


def test_cli_loss_options_are_loss_arguments_with_the_same_defaults():
    parser = argparse.ArgumentParser()
    add_loss_options(parser)
    defaults = vars(parser.parse_args([]))
    reference = hyperparameters(GroupPDistillLoss)
    assert set(LOSS_OPTIONS) <= set(reference)
    for name in LOSS_OPTIONS:
        assert defaults[name] == reference[name], name
