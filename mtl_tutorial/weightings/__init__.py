"""Loss weightings: map the task losses ``Tensor[T]`` to one scalar objective."""

from __future__ import annotations

import inspect

from mtl_tutorial.weightings.base import Weighting
from mtl_tutorial.weightings.dwa import DWA
from mtl_tutorial.weightings.equal import Equal
from mtl_tutorial.weightings.gradnorm import GradNorm
from mtl_tutorial.weightings.rlw import RLW
from mtl_tutorial.weightings.static import Static
from mtl_tutorial.weightings.uncertainty import Uncertainty

WEIGHTINGS: dict[str, type[Weighting]] = {
    "equal": Equal,
    "static": Static,
    "uncertainty": Uncertainty,
    "dwa": DWA,
    "gradnorm": GradNorm,
    "rlw": RLW,
}


def make_weighting(name: str, num_tasks: int, **kwargs) -> Weighting:
    """Build a registered weighting by name; an unknown name or option lists the valid ones.

    ``make_weighting("equal", 3)``; ``make_weighting("static", 2, weights=[0.9, 0.1])``;
    ``make_weighting("dwa", 3, steps_per_epoch=500)``;
    ``make_weighting("gradnorm", 3, shared_parameters=model.trunk.norm.parameters(), alpha=1.5)``.
    """
    if name not in WEIGHTINGS:
        raise KeyError(f"unknown weighting {name!r}; valid weightings are: {', '.join(WEIGHTINGS)}")
    cls = WEIGHTINGS[name]
    options = [p for p in inspect.signature(cls).parameters if p != "num_tasks"]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"weighting {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}"
        )
    if name == "static":
        weighting = Static(**kwargs)
        if weighting.num_tasks != num_tasks:
            raise ValueError(f"static weights have {weighting.num_tasks} entries for {num_tasks} tasks")
        return weighting
    required = [p.name for p in inspect.signature(cls).parameters.values()
                if p.default is inspect.Parameter.empty and p.name != "num_tasks" and p.name not in kwargs]
    if required:
        raise TypeError(f"weighting {name!r} needs the option(s) {', '.join(required)}; see help({cls.__name__})")
    return cls(num_tasks, **kwargs)


__all__ = ["DWA", "RLW", "WEIGHTINGS", "Equal", "GradNorm", "Static", "Uncertainty", "Weighting", "make_weighting"]
