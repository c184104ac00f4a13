import pytest
import torch
from tenfold import nets
from tenfold.nets.vit import gather_tokens, sincos_pos_embed_2d


@pytest.mark.parametrize("pos", ["learned", "sincos"])
def test_token_api_equals_forward(pos):
    torch.manual_seed(0)
    m = nets.create("vit_tiny_patch4", num_classes=5, depth=2, pos_embed=pos).eval()
    x = torch.randn(2, 3, 32, 32)
    tok = m.embed(x)
    assert tok.shape == (2, 64, 192)
    enc = m.encode(tok)
    assert enc.shape == (2, 65, 192)
    assert torch.allclose(m.forward_head(enc), m(x), atol=1e-6)
    logits, feat = m(x, return_features=True)
    assert feat.shape == (2, 192) and logits.shape == (2, 5)


def test_subset_and_no_cls():
    m = nets.create("vit_tiny_patch4", depth=1, cls_token=False).eval()
    tok = m.embed(torch.randn(3, 3, 32, 32))
    idx = torch.stack([torch.randperm(64)[:16] for _ in range(3)])
    kept = gather_tokens(tok, idx)
    assert torch.equal(kept[1, 5], tok[1, idx[1, 5]])
    out = m.encode(kept)
    assert out.shape == (3, 16, 192)
    assert m.pool(out).shape == (3, 192)


def test_sincos_frozen_and_cls_zero():
    m = nets.create("vit_small_patch16", depth=1, pos_embed="sincos", num_heads=8)
    assert not m.pos_embed.requires_grad
    assert torch.count_nonzero(m.pos_embed[0, 0]) == 0
    pe = sincos_pos_embed_2d(8, 2, 3)
    # position (row 1, col 2): first quarter is sin(col * omega), third quarter sin(row * omega)
    assert torch.allclose(pe[1 * 3 + 2, 0], torch.tensor(2.0).sin())
    assert torch.allclose(pe[1 * 3 + 2, 4], torch.tensor(1.0).sin())


def test_interpolated_resolution_and_grad():
    m = nets.create("vit_tiny_patch4", depth=1)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = m.encode(m.embed(x))
    assert out.shape == (2, 17, 192)
    out.sum().backward()
    assert x.grad is not None and m.pos_embed.grad is not None


def test_presets_and_registry_errors():
    assert nets.create("vit_base_patch16", depth=1).embed_dim == 768
    assert nets.create("vit_small_patch2", depth=1).blocks[0].attn.num_heads == 6
    with pytest.raises(KeyError, match="did you mean 'wrn40_2'"):
        nets.create("wrn40_3")
    with pytest.raises(ValueError, match="divisible"):
        nets.create("vit_tiny_patch4", depth=1, num_heads=5)
