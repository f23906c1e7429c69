r"""First-order MAML: MAML without the second-order terms (Finn et al., 2017, §5.2)."""

from __future__ import annotations

from typing import ClassVar

from mtl_tutorial.meta.maml import MAML


class FOMAML(MAML):
    r"""MAML with the inner gradients treated as constants.

    Detaching $\nabla_\theta \mathcal L_i^{s}$ makes every Jacobian $\partial\theta'_i/\partial\theta$
    the identity, so the meta-gradient is the query gradient taken *at the adapted weights*:

    $$d = \frac1B \sum_{i=1}^B \nabla \mathcal L_i^{q}(\theta'_i).$$

    It costs one backward pass per inner step instead of a Hessian-vector product, and equals
    MAML's exact gradient whenever the inner loss is linear in the parameters (its Hessian is
    zero). Finn et al. report nearly the same accuracy on miniImageNet. The reported loss is the
    mean post-adaptation query loss, as for MAML.

    >>> import torch.nn.functional as F
    >>> FOMAML(F.cross_entropy, inner_steps=5, inner_lr=0.4)
    FOMAML(inner_steps=5, inner_lr=0.4)
    """

    first_order: ClassVar[bool] = True
