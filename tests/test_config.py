"""The configuration dataclasses: the registries' names they check against, and their validation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mtl_tutorial import config
from mtl_tutorial.architectures import ARCHITECTURES
from mtl_tutorial.config import ModelConfig, TrainConfig
from mtl_tutorial.tasks import TASKS


def test_the_names_config_checks_are_the_registries():
    assert config.ARCHITECTURE_NAMES == tuple(ARCHITECTURES)
    assert config.TASK_NAMES == tuple(TASKS)


def test_unknown_names_are_refused_at_construction():
    with pytest.raises(ValueError, match="valid choices are: hard, cross_stitch"):
        ModelConfig(architecture="hard_sharing")
    with pytest.raises(ValueError, match="unknown tasks \\['sentiments'\\]"):
        TrainConfig(tasks=("sentiments",))


def test_config_imports_nothing_of_the_package_at_module_level():
    """config is the leaf every other module builds on: importing the package from it would make
    a circle (architectures, tasks -> data -> config)."""
    tree = ast.parse(Path(config.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in top]
    assert not [n for n in names if n and n.startswith("mtl_tutorial")]
