"""Baselines the multi-task model has to beat: TF-IDF + LR, NB-LR, Kneser-Ney n-grams."""

from mtl_tutorial.baselines.kneser_ney import KneserNeyLM
from mtl_tutorial.baselines.nblr import (
    NBLRResult,
    log_count_ratio,
    nb_features,
    nb_logistic_regression,
)
from mtl_tutorial.baselines.tfidf import TfidfResult, tfidf_logistic_regression

__all__ = [
    "KneserNeyLM",
    "NBLRResult",
    "TfidfResult",
    "log_count_ratio",
    "nb_features",
    "nb_logistic_regression",
    "tfidf_logistic_regression",
]
