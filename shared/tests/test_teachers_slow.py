"""The ../shared/models teachers load strict and reach their recorded accuracy on the CIFAR-10 test set."""
import json

import pytest
import torch
from tenfold import data, nets
from tenfold.data import transforms


def _accuracy(model, ds, batch=500):
    x, y = ds.tensors()
    mean = torch.tensor(transforms.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(transforms.CIFAR10_STD).view(1, 3, 1, 1)
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            correct += (model((x[i:i + batch] - mean) / std).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10_wrn40_2", "cifar10_vgg16_blockwise", "cifar10_animals6_wrn40_2"])
def test_teacher_accuracy(name, real_data, models_dir):
    path = models_dir / f"{name}.pt"
    meta = json.loads(path.with_suffix(".json").read_text())
    model = nets.load_teacher(path)  # strict=True inside
    ds = data.cifar10(real_data, train=False)
    if meta["num_classes"] == 6:
        ds = data.class_subset(ds, [2, 3, 4, 5, 6, 7])
    acc = _accuracy(model, ds)
    print(f"{name}: {acc:.4f} (recorded {meta['test_top1']})")
    assert abs(acc - meta["test_top1"]) <= 0.005
