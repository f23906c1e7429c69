"""Gradient aggregators: map a task Jacobian ``Tensor[T, n]`` to one update direction ``Tensor[n]``."""

from __future__ import annotations

import inspect

from mtl_tutorial.aggregators.base import Aggregator
from mtl_tutorial.aggregators.cagrad import CAGrad
from mtl_tutorial.aggregators.graddrop import GradDrop
from mtl_tutorial.aggregators.imtl_g import IMTLG
from mtl_tutorial.aggregators.mean import Mean
from mtl_tutorial.aggregators.mgda import MGDA
from mtl_tutorial.aggregators.nash_mtl import NashMTL
from mtl_tutorial.aggregators.pcgrad import PCGrad
from mtl_tutorial.aggregators.upgrad import UPGrad

AGGREGATORS: dict[str, type[Aggregator]] = {
    "mean": Mean,
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "graddrop": GradDrop,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "upgrad": UPGrad,
}


def make_aggregator(name: str, **kwargs) -> Aggregator:
    """Build a registered aggregator by name; an unknown name or option lists the valid ones.

    ``make_aggregator("mgda")``; ``make_aggregator("cagrad", c=0.4)``.
    """
    if name not in AGGREGATORS:
        raise KeyError(f"unknown aggregator {name!r}; valid aggregators are: {', '.join(AGGREGATORS)}")
    cls = AGGREGATORS[name]
    options = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"aggregator {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    return cls(**kwargs)


__all__ = [
    "AGGREGATORS",
    "IMTLG",
    "MGDA",
    "Aggregator",
    "CAGrad",
    "GradDrop",
    "Mean",
    "NashMTL",
    "PCGrad",
    "UPGrad",
    "make_aggregator",
]
