import json

import pytest
import torch
from tenfold import nets
from tenfold.errors import CheckpointError


@pytest.mark.parametrize("name", ["wrn16_1", "wrn16_2", "wrn40_1", "wrn40_2", "resnet18", "resnet34", "vgg11_bn",
                                  "vgg16_blockwise"])
def test_cnn_shapes(name):
    m = nets.create(name, num_classes=7).eval()
    logits, feat = m(torch.randn(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 7) and feat.shape == (2, m.num_features)


def test_wrn_parameter_names():
    keys = set(nets.create("wrn16_2").state_dict())
    for k in ["conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.convShortcut.weight",
              "block2.layer.0.convShortcut.weight", "block3.layer.1.conv2.weight", "bn1.running_mean", "fc.weight"]:
        assert k in keys
    assert "block1.layer.1.convShortcut.weight" not in keys
    assert "block1.layer.0.convShortcut.weight" not in set(nets.create("wrn16_1").state_dict())


def test_vgg_blockwise_names():
    keys = set(nets.create("vgg16_blockwise").state_dict())
    assert {"features.0.0.weight", "features.0.2.weight", "features.2.4.bias", "features.4.4.weight",
            "classifier.0.weight", "classifier.1.running_var", "classifier.2.weight"} <= keys


def test_load_teacher_errors(tmp_path):
    m = nets.create("wrn16_1", num_classes=3)
    torch.save(m.state_dict(), tmp_path / "t.pt")
    (tmp_path / "t.json").write_text(json.dumps({"arch": "wrn16_1", "num_classes": 3}))
    t = nets.load_teacher(tmp_path / "t.pt")
    assert not any(p.requires_grad for p in t.parameters()) and not t.training
    (tmp_path / "t.json").write_text(json.dumps({"arch": "wrn16_2", "num_classes": 3}))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        nets.load_teacher(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not found"):
        nets.load_teacher(tmp_path / "none.pt")


def test_load_teacher_kwargs_from_json(tmp_path):
    m = nets.create("wrn16_1", num_classes=4, in_chans=1)
    torch.save(m.state_dict(), tmp_path / "grey.pt")
    (tmp_path / "grey.json").write_text(json.dumps({"arch": "wrn16_1", "num_classes": 4, "kwargs": {"in_chans": 1}}))
    t = nets.load_teacher(tmp_path / "grey.pt")
    assert t(torch.randn(2, 1, 32, 32)).shape == (2, 4)


def test_main_guard_exit_codes(capsys):
    from tenfold.cli import main_guard
    from tenfold.errors import ConfigError

    assert main_guard(lambda: {"a": 1})() == {"a": 1}  # values reach Python callers unchanged

    def bad():
        raise ConfigError("nope")

    with pytest.raises(SystemExit) as e:
        main_guard(bad)()
    assert e.value.code == 2 and capsys.readouterr().err == "error: nope\n"
