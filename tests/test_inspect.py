"""attention_maps: probability rows, causality, and agreement with what the trunk computes."""

import pytest
import torch

from mtl_tutorial.config import ModelConfig
from mtl_tutorial.models import LSTMTrunk, TransformerTrunk
from mtl_tutorial.models.inspect import attention_maps

VOCAB = 300
CONFIG = ModelConfig(d_model=32, num_layers=2, num_heads=4, d_ff=64, max_length=32)


def sharp_trunk(seed: int = 0) -> TransformerTrunk:
    """A trunk whose attention is far from uniform (the N(0, 0.02) initialisation gives nearly
    uniform rows, against which a wrong scale or mask would go unnoticed)."""
    torch.manual_seed(seed)
    trunk = TransformerTrunk(CONFIG, VOCAB)
    for block in trunk.blocks:
        torch.nn.init.normal_(block.attention.qkv.weight, std=0.5)
        torch.nn.init.normal_(block.attention.proj.weight, std=0.2)
    return trunk.eval()


def token_ids(batch: int = 3, length: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(7, VOCAB, (batch, length), generator=generator)  # (B, L)


def uniform_causal(length: int) -> torch.Tensor:
    """Each position attends equally to itself and every earlier position: (L, L)."""
    mask = torch.tril(torch.ones(length, length))
    return mask / mask.sum(-1, keepdim=True)


@pytest.mark.parametrize("trunk", [sharp_trunk(), TransformerTrunk(CONFIG, VOCAB).eval()], ids=["sharp", "default-init"])
def test_rows_are_distributions_over_the_past(trunk):
    maps = attention_maps(trunk, token_ids())
    assert maps.shape == (CONFIG.num_layers, 3, CONFIG.num_heads, 12, 12)  # (layers, B, H, L, L)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    future = torch.triu(torch.ones(12, 12, dtype=torch.bool), diagonal=1)
    assert (maps[..., future] == 0).all()  # exactly zero, not merely small
    torch.testing.assert_close(maps[..., 0, 0], torch.ones(maps.shape[:3]))  # the first token sees only itself


def test_sharp_trunk_is_far_from_uniform():
    """Guard for the next test: with uniform rows any averaging would pass it."""
    maps = attention_maps(sharp_trunk(), token_ids())
    assert (maps - uniform_causal(12)).abs().amax() > 0.5


def test_maps_times_values_reproduce_the_attention_output():
    """P_h V_h, concatenated over heads and projected, is what each attention layer returned."""
    trunk = sharp_trunk()
    ids = token_ids()
    seen = []  # (input, output) of every attention layer
    hooks = [b.attention.register_forward_hook(lambda m, args, out: seen.append((args[0], out))) for b in trunk.blocks]
    maps = attention_maps(trunk, ids)
    for hook in hooks:
        hook.remove()
    assert len(seen) == CONFIG.num_layers
    B, L, D = seen[0][0].shape
    H = CONFIG.num_heads
    for layer, (block, (x, output)) in enumerate(zip(trunk.blocks, seen)):
        v = block.attention.qkv(x).split(D, dim=-1)[2]  # (B, L, D)
        v = v.view(B, L, H, D // H).transpose(1, 2)  # (B, H, L, D/H)
        heads = maps[layer] @ v  # (B, H, L, D/H)
        recomputed = block.attention.proj(heads.transpose(1, 2).reshape(B, L, D))  # (B, L, D)
        torch.testing.assert_close(recomputed, output)  # float32 tolerances
        uniform = block.attention.proj((uniform_causal(L) @ v).transpose(1, 2).reshape(B, L, D))
        assert not torch.allclose(uniform, output, rtol=1e-3, atol=1e-4)  # the check can fail


def test_maps_ignore_later_tokens():
    trunk = sharp_trunk()
    ids = token_ids()
    changed = ids.clone()
    changed[:, 7:] = 8
    a, b = attention_maps(trunk, ids), attention_maps(trunk, changed)
    torch.testing.assert_close(a[..., :7, :7], b[..., :7, :7])
    assert not torch.allclose(a[..., 7:, :], b[..., 7:, :])


def test_each_sequence_gets_its_own_maps():
    trunk = sharp_trunk()
    ids = token_ids(batch=3)
    batch = attention_maps(trunk, ids)
    for b in range(3):
        torch.testing.assert_close(batch[:, b], attention_maps(trunk, ids[b:b + 1])[:, 0])


def test_hooks_are_removed_even_after_an_error():
    trunk = sharp_trunk()
    with pytest.raises(ValueError, match="max_length"):
        attention_maps(trunk, token_ids(length=CONFIG.max_length + 1))
    attention_maps(trunk, token_ids())
    assert all(not block.attention._forward_pre_hooks for block in trunk.blocks)


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match=r"trunk.eval\(\)"):
        attention_maps(TransformerTrunk(CONFIG, VOCAB).train(), token_ids())
    with pytest.raises(TypeError, match="TransformerTrunk"):
        attention_maps(LSTMTrunk(ModelConfig.article(), VOCAB).eval(), token_ids())
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        attention_maps(sharp_trunk(), token_ids()[0])
