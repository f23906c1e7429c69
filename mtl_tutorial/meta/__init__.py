"""Meta-learning: MAML, first-order MAML, Reptile, the joint-training baseline, episodic sampling.

The few-shot data lives in :mod:`mtl_tutorial.meta.wordnet` (WordNet's lexicographer categories,
texts featurised by :mod:`mtl_tutorial.meta.features`); the pre-training then fine-tuning
baseline in :mod:`mtl_tutorial.meta.transfer`; scoring in :mod:`mtl_tutorial.meta.evaluation`.
The book's runs are studies: :mod:`mtl_tutorial.studies.sine` (sine-wave regression of the MAML
paper) and :mod:`mtl_tutorial.studies.fewshot` (the WordNet comparison of every learner).
"""

from __future__ import annotations

import inspect

from mtl_tutorial.meta.adaptation import LossFn, Params, accuracy, adapt, adaptation_curve, sgd_step
from mtl_tutorial.meta.base import MetaGradient, MetaLearner
from mtl_tutorial.meta.episodes import Episode, EpisodeSampler, stack_episodes
from mtl_tutorial.meta.fomaml import FOMAML
from mtl_tutorial.meta.joint import JointTraining
from mtl_tutorial.meta.maml import MAML
from mtl_tutorial.meta.reptile import Reptile
from mtl_tutorial.meta.step import meta_train_step

META_LEARNERS: dict[str, type[MetaLearner]] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "reptile": Reptile,
    "joint": JointTraining,
}


def make_meta_learner(name: str, loss_fn: LossFn, **kwargs) -> MetaLearner:
    """Build a registered meta-learner by name; an unknown name or option lists the valid ones.

    ``make_meta_learner("maml", F.mse_loss, inner_steps=1, inner_lr=0.01)``;
    ``make_meta_learner("reptile", F.cross_entropy, inner_steps=5, inner_lr=0.1)``.
    """
    if name not in META_LEARNERS:
        raise KeyError(
            f"unknown meta-learning method {name!r}; valid methods are: {', '.join(META_LEARNERS)}"
        )
    cls = META_LEARNERS[name]
    options = [p for p in inspect.signature(cls).parameters if p != "loss_fn"]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"meta-learner {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options)}"
        )
    return cls(loss_fn, **kwargs)


__all__ = [
    "FOMAML",
    "MAML",
    "META_LEARNERS",
    "Episode",
    "EpisodeSampler",
    "JointTraining",
    "LossFn",
    "MetaGradient",
    "MetaLearner",
    "Params",
    "Reptile",
    "accuracy",
    "adapt",
    "adaptation_curve",
    "make_meta_learner",
    "meta_train_step",
    "sgd_step",
    "stack_episodes",
]
