"""Loss weightings: map the task losses ``Tensor[T]`` to one scalar objective."""

from __future__ import annotations

from mtl_tutorial.weightings.base import Weighting
from mtl_tutorial.weightings.equal import Equal
from mtl_tutorial.weightings.static import Static

WEIGHTINGS: dict[str, type[Weighting]] = {"equal": Equal, "static": Static}


def make_weighting(name: str, num_tasks: int, **kwargs) -> Weighting:
    """Build a registered weighting by name; an unknown name lists the valid ones.

    ``make_weighting("equal", 3)``; ``make_weighting("static", 2, weights=[0.9, 0.1])``.
    """
    if name not in WEIGHTINGS:
        raise KeyError(f"unknown weighting {name!r}; valid weightings are: {', '.join(WEIGHTINGS)}")
    if name == "static":
        weighting = Static(**kwargs)
        if weighting.num_tasks != num_tasks:
            raise ValueError(f"static weights have {weighting.num_tasks} entries for {num_tasks} tasks")
        return weighting
    return WEIGHTINGS[name](num_tasks, **kwargs)


__all__ = ["WEIGHTINGS", "Equal", "Static", "Weighting", "make_weighting"]
