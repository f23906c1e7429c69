"""Models: shared trunks (causal Transformer, the article's LSTM) and task heads."""

from mtl_tutorial.models.heads import ClassificationHead, LanguageModelHead
from mtl_tutorial.models.inspect import attention_maps
from mtl_tutorial.models.lstm import LSTMTrunk
from mtl_tutorial.models.multitask import TRUNKS, MultiTaskModel
from mtl_tutorial.models.transformer import TransformerTrunk

__all__ = ["TRUNKS", "ClassificationHead", "LSTMTrunk", "LanguageModelHead", "MultiTaskModel", "TransformerTrunk", "attention_maps"]
