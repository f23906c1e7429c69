import pytest
import torch
from torch import nn

from mtl_tutorial.jacobian import representation_jacobian, task_jacobian


def shared_trunk_problem(seed: int = 0):
    """A trunk and three heads on one batch: losses (3,) through one forward pass."""
    torch.manual_seed(seed)
    trunk, heads = nn.Sequential(nn.Linear(5, 8), nn.Tanh()), nn.ModuleList(nn.Linear(8, 1) for _ in range(3))
    x = torch.randn(16, 5)
    hidden = trunk(x)  # (B, 8)
    losses = torch.stack([h(hidden).pow(2).mean() for h in heads])  # (3,)
    return trunk, heads, x, hidden, losses


def test_pinned_values():
    # L1 = w1 + w2 -> (1, 1); L2 = w1^2 + w2^2 -> 2w = (2, 4); L3 = w1 w2 -> (w2, w1) = (2, 1)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    losses = torch.stack([w.sum(), (w**2).sum(), w.prod()])
    expected = torch.tensor([[1.0, 1.0], [2.0, 4.0], [2.0, 1.0]])
    for method in ("loop", "vmap"):
        torch.testing.assert_close(task_jacobian(losses, [w], method=method, retain_graph=True), expected)


@pytest.mark.parametrize("as_list", [False, True])
def test_both_routes_equal_torch_func_jacrev(as_list):
    trunk, heads, x, _, losses = shared_trunk_problem()
    params = list(trunk.parameters())
    names = [n for n, _ in trunk.named_parameters()]

    def loss_vector(*values):  # the same losses as a pure function of the trunk's parameters
        hidden = torch.func.functional_call(trunk, dict(zip(names, values)), (x,))
        return torch.stack([h(hidden).pow(2).mean() for h in heads])

    reference = torch.cat([j.reshape(3, -1) for j in torch.func.jacrev(loss_vector, argnums=tuple(range(len(params))))(*params)], dim=1)
    given = list(losses) if as_list else losses
    loop = task_jacobian(given, params, method="loop", retain_graph=True)
    vmap = task_jacobian(given, params, method="vmap")
    assert loop.shape == (3, sum(p.numel() for p in params))
    torch.testing.assert_close(loop, reference)
    torch.testing.assert_close(vmap, reference)


def test_separate_graphs_and_constant_losses():
    """Per-task forward passes given as a list, plus a task that sat out (a constant zero loss)."""
    torch.manual_seed(1)
    trunk = nn.Linear(4, 4)
    losses = [trunk(torch.randn(3, 4)).sum(), torch.zeros(()), trunk(torch.randn(2, 4)).pow(2).sum()]
    params = list(trunk.parameters())
    for method in ("loop", "vmap"):
        J = task_jacobian(losses, params, method=method, retain_graph=True)
        assert (J[1] == 0).all()
        for t in (0, 2):
            grads = torch.autograd.grad(losses[t], params, retain_graph=True)
            torch.testing.assert_close(J[t], torch.cat([g.flatten() for g in grads]))
    unused = nn.Parameter(torch.ones(3))
    J = task_jacobian(losses, params + [unused], retain_graph=True)
    assert (J[:, -3:] == 0).all()  # a parameter no loss uses: zero columns


def test_representation_jacobian_is_the_gradient_with_respect_to_the_features():
    _, _, _, hidden, losses = shared_trunk_problem()
    for method in ("loop", "vmap"):
        J = representation_jacobian(losses, hidden, method=method, retain_graph=True)
        assert J.shape == (3, hidden.numel())
        for t in range(3):
            (g,) = torch.autograd.grad(losses[t], hidden, retain_graph=True)
            torch.testing.assert_close(J[t].view_as(hidden), g)
    with pytest.raises(ValueError, match="does not require grad"):
        representation_jacobian(losses, hidden.detach())


def test_bad_input():
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="valid methods are: loop, vmap"):
        task_jacobian(w * 2, [w], method="jacfwd")
    with pytest.raises(ValueError, match="at least one parameter"):
        task_jacobian(w * 2, [])
    with pytest.raises(ValueError, match=r"vector \(T,\)"):
        task_jacobian(torch.ones(2, 2), [w])
