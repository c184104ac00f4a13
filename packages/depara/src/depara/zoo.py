"""A zoo of small task models and the measured ground truth: linear-probe transfer of frozen encoders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tenfold import checkpoint, nets
from tenfold.data import make_loader, steps_per_epoch
from tenfold.data.transforms import CIFAR10_MEAN, CIFAR10_STD
from tenfold.errors import CheckpointError, ConfigError
from tenfold.loop import Trainer
from torch import nn

__all__ = ["TinyCNN", "create_model", "preprocess", "train_task_model", "features", "probe_accuracy",
           "load_zoo_model", "save_zoo_model", "ZOO_KIND"]

ZOO_KIND = "depara-zoo-model"


class TinyCNN(nn.Module):
    """Spec 7.2: conv(3->16)-ReLU-pool, conv(16->32)-ReLU-pool, conv(32->64)-ReLU-GAP, linear head (~25k)."""

    def __init__(self, num_classes: int = 10, width: int = 16, in_chans: int = 3):
        super().__init__()
        w = [width, 2 * width, 4 * width]
        self.conv1 = nn.Conv2d(in_chans, w[0], 3, padding=1)
        self.conv2 = nn.Conv2d(w[0], w[1], 3, padding=1)
        self.conv3 = nn.Conv2d(w[1], w[2], 3, padding=1)
        self.fc = nn.Linear(w[2], num_classes)
        self.num_features = w[2]

    def layer_outputs(self, x):
        """Raw conv outputs (before ReLU), the candidate layers of layer selection."""
        a1 = self.conv1(x)
        a2 = self.conv2(F.max_pool2d(F.relu(a1), 2))
        a3 = self.conv3(F.max_pool2d(F.relu(a2), 2))
        return [a1, a2, a3]

    def forward(self, x, return_features: bool = False):
        feat = F.relu(self.layer_outputs(x)[-1]).mean((2, 3))
        logits = self.fc(feat)
        return (logits, feat) if return_features else logits


def create_model(arch: str, num_classes: int, width: int = 16) -> nn.Module:
    if arch == "tiny_cnn":
        return TinyCNN(num_classes, width)
    try:
        return nets.create(arch, num_classes)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"zoo.arch={arch!r}: {e.args[0]}; or use tiny_cnn") from None


def preprocess(images_uint8: np.ndarray | torch.Tensor, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW: one preprocessing for every model (same raw probes, same crops)."""
    x = torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float().div(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class _Normalised(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: np.ndarray):
        self.x, self.y = x, torch.as_tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def train_task_model(run_dir: Path, images: np.ndarray, labels: np.ndarray, num_classes: int, *, arch: str,
                     width: int, epochs: int, batch_size: int, lr: float, seed: int, device: torch.device,
                     resume: str | None = None, stop_at: int | None = None, amp=None, config=None) -> nn.Module:
    """Adam on the task (spec 7.2: lr 3e-3, batch 128, 3 epochs) with the spine's exact-resume loop."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ds = _Normalised(preprocess(images), labels)
    if len(ds) < batch_size:
        raise ConfigError(f"{len(ds)} training images < batch_size={batch_size}: lower zoo.batch_size")
    total = epochs * steps_per_epoch(len(ds), batch_size)
    trainer = Trainer(run_dir, kind=ZOO_KIND + "-train", config=config or {}, stateful={"model": model, "opt": opt},
                      total_steps=total, log_every=20,
                      batches=lambda ep, start: make_loader(ds, batch_size, seed=seed, epoch=ep, start_batch=start,
                                                            seeded_augment=False))
    trainer.maybe_resume(resume)

    def step(batch, _state):
        x, y = batch[0].to(device), batch[1].to(device)
        model.train()
        with (amp() if amp is not None else torch.autocast("cpu", enabled=False)):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    trainer.run(step, stop_at=stop_at)
    return model.eval()


def save_zoo_model(path: Path, model: nn.Module, meta: dict) -> Path:
    return checkpoint.save(path, {"model": model.state_dict(), "meta": meta}, kind=ZOO_KIND)


def load_zoo_model(path: str | Path, device="cpu") -> tuple[nn.Module, dict]:
    """A zoo model (tenfold checkpoint) or a shared teacher (plain state_dict with a JSON beside it)."""
    p = Path(path)
    if p.suffix == ".pt" and p.with_suffix(".json").is_file():
        model = nets.load_teacher(p)
        meta = json.loads(p.with_suffix(".json").read_text())
        return model.to(device).eval(), {"arch": meta["arch"], "num_classes": int(meta["num_classes"]),
                                         "task": p.stem, "teacher": True}
    state = checkpoint.load(p, kind=ZOO_KIND)
    meta = state.get("meta", {})
    if "arch" not in meta:
        raise CheckpointError(f"{p}: zoo model without 'arch' in its meta")
    model = create_model(meta["arch"], int(meta["num_classes"]), int(meta.get("width", 16)))
    checkpoint.load_module_state(model, state["model"], what=str(p.name))
    return model.to(device).eval().requires_grad_(False), meta


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 500, device="cpu", amp=None) -> torch.Tensor:
    """Pooled representation (the encoder output) of `x`, float32 on the CPU."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with (amp() if amp is not None else torch.autocast("cpu", enabled=False)):
            out.append(model(x[i:i + batch_size].to(device), return_features=True)[1].float().cpu())
    return torch.cat(out)


def probe_accuracy(ftr: torch.Tensor, ytr, fte: torch.Tensor, yte, iters: int = 50, l2: float = 1e-3) -> float:
    """Multinomial logistic regression on standardised frozen features, full-batch L-BFGS (spec 7.2); % acc."""
    ytr, yte = torch.as_tensor(ytr).long(), torch.as_tensor(yte).long()
    mean, std = ftr.mean(0), ftr.std(0).clamp_min(1e-6)
    xtr, xte = ((ftr - mean) / std).double(), ((fte - mean) / std).double()
    k = int(max(ytr.max(), yte.max())) + 1
    W = torch.zeros(xtr.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=iters, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ W + b, ytr) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xte @ W + b).argmax(1) == yte).double().mean() * 100)
