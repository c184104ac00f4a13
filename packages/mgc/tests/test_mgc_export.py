"""The exported backbone is a timm ViT (issue #18): strict load into timm's VisionTransformer, same features.

timm is a test-only extra (`pip install -e 'packages/mgc[test]'`); nothing is downloaded (no pretrained weights)."""
import json

import pytest
import torch
from mgc.config import TrainConfig
from mgc.export import export_backbone, from_timm_layout, load_backbone, to_timm_layout
from mgc.model import MGC, patch_tokens
from tenfold import checkpoint
from tenfold.config import load, to_dict

timm_vit = pytest.importorskip("timm.models.vision_transformer")

SMALL = ["data.dataset=synthetic", "model.img_size=32", "model.patch_size=8", "model.embed_dim=48", "model.depth=2",
         "model.num_heads=4", "model.levels=[1,2,4]", "model.pairs=[4,2,1]", "model.proj_hidden=16",
         "model.pred_hidden=16", "model.out_dim=8"]


def _checkpoint(tmp_path, seed=0):
    """A training checkpoint whose every backbone parameter (biases, LayerNorms, CLS too) is random, so a
    parameter that lands under a wrong name or stays at its init changes the features."""
    cfg = load(TrainConfig, None, SMALL + [f"out={tmp_path}"])
    torch.manual_seed(seed)
    model = MGC(cfg.model, cfg.loss)
    with torch.no_grad():
        for enc in (model.base_encoder, model.momentum_encoder):
            for name, p in enc.named_parameters():
                if name != "pos_embed":  # frozen sin-cos positions stay as trained
                    p.add_(0.1 * torch.randn_like(p))
    path = checkpoint.save(tmp_path / "last.pt", {"config": to_dict(cfg), "state": {"model": model.state_dict()}},
                           kind="mgc")
    return path, model


@pytest.mark.parametrize("encoder", ["base", "momentum"])
def test_export_loads_strict_into_timm_vit_with_identical_features(tmp_path, encoder):
    ck, model = _checkpoint(tmp_path)
    out = export_backbone(ck, tmp_path / "bb.pt", encoder)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["layout"] == "timm"
    sd = torch.load(out, weights_only=True)
    assert "patch_embed.proj.weight" in sd and "blocks.1.mlp.fc2.bias" in sd
    vit = timm_vit.VisionTransformer(**meta["timm_kwargs"]).eval()
    vit.load_state_dict(sd, strict=True)  # every timm parameter is filled, none left over
    x = torch.randn(3, 3, 32, 32)
    ours = model.backbone(encoder).eval()
    with torch.no_grad():
        ref = ours.encode(ours.embed(x))
        got = vit.forward_features(x)
    assert got.shape == ref.shape == (3, 1 + 16, 48)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the patch tokens MGC trains on
        torch.testing.assert_close(got[:, 1:], patch_tokens(ours, x), rtol=1e-5, atol=1e-5)
    # and the project's own loader reads the timm layout back into the spine ViT
    back, _ = load_backbone(out)
    with torch.no_grad():
        torch.testing.assert_close(back.eval().encode(back.embed(x)), ref, rtol=0, atol=0)


def test_layout_round_trip_and_legacy_export_still_loads(tmp_path):
    ck, model = _checkpoint(tmp_path)
    spine = model.base_encoder.state_dict()
    timm_sd = to_timm_layout(spine)
    assert not any(".mlp.0." in k or k == "patch_embed.weight" for k in timm_sd)
    assert from_timm_layout(timm_sd).keys() == spine.keys()
    assert from_timm_layout(spine).keys() == spine.keys()  # the spine layout passes through
    out = export_backbone(ck, tmp_path / "bb.pt")
    torch.save(spine, out)  # an export written before the timm layout (spine names)
    vit, _ = load_backbone(out)
    assert torch.equal(vit.blocks[0].mlp[0].weight, spine["blocks.0.mlp.0.weight"])
