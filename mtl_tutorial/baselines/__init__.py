"""Baselines the multi-task model has to beat: TF-IDF + logistic regression, Kneser-Ney n-grams."""

from mtl_tutorial.baselines.kneser_ney import KneserNeyLM
from mtl_tutorial.baselines.tfidf import TfidfResult, tfidf_logistic_regression

__all__ = ["KneserNeyLM", "TfidfResult", "tfidf_logistic_regression"]
