"""PatchMix vs the no-mix baseline at equal steps and seeds on real data (spec §7(b), §7(d)).

Used by the slow test (tiny ViT, CIFAR-10 subset, CPU) and by bench/gpu.py --long (ViT-T on full CIFAR-10):
both arms run through `pretrain` (the same code path as patchmix-train), then every metric is computed
on the same held-out images for random init, PatchMix and the baseline.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tenfold import config as config_mod
from tenfold import runtime
from tenfold.eval import linear_probe

from .augment import eval_view
from .config import PretrainConfig
from .data import load_split, to_unit
from .evaluate import eval_mode, extract, instance_retrieval, knn_eval, mixed_source_hits
from .models import build_models
from .train import pretrain, view_specs

__all__ = ["measure", "compare_arms"]


@torch.no_grad()
def measure(cfg: PretrainConfig, backbone, train, test, device, n_probe: int = 512, probe_epochs: int = 30) -> dict:
    mean, std = tuple(cfg.aug.mean), tuple(cfg.aug.std)
    size = cfg.model.img_size
    kw = dict(size=size, mean=mean, std=std, amp=cfg.amp, precision=cfg.precision)
    tf, ty = extract(backbone, train, device, **kw)
    vf, vy = extract(backbone, test, device, **kw)
    res = {"knn_top1": knn_eval(tf, ty, vf, vy, ks=(20,), t=0.07)["knn20_top1"]}
    with torch.enable_grad():
        res["linear_top1"] = linear_probe(tf, ty, vf, vy, epochs=probe_epochs, lr=0.1, seed=cfg.seed)["top1"]
    res["feature_std"] = F.normalize(vf, dim=1).std(0).mean().item()  # collapse -> ~0
    x = to_unit(torch.stack([test[i][0] for i in range(min(n_probe, len(test)))]).to(device))
    v1, v2, _ = view_specs(cfg.aug)
    with eval_mode(backbone):
        res["instance_top1"] = instance_retrieval(backbone, x, v1, v2, cfg.seed + 99, mean, std)
        p = (cfg.mix.patch_size or [cfg.model.patch_size])[0]
        res["mixed_source_top2"] = mixed_source_hits(backbone, eval_view(x, size, mean, std), 2, p, cfg.seed + 98)
    return res


def _l_src_curve(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["l_src"] for r in rows if "l_src" in r]


def compare_arms(cfg: PretrainConfig, out: str | Path, baseline: str = "src_only", log=print,
                 measure_momentum: bool = True, probe_epochs: int = 30) -> dict:
    """Random init, PatchMix and the baseline (loss.objective=`baseline`) at equal steps and seed."""
    out = Path(out)
    device = runtime.select_device(cfg.device)
    train = load_split(cfg.data, True, cfg.data_root, cfg.seed)
    test = load_split(cfg.data, False, cfg.data_root, cfg.seed)
    runtime.seed_everything(cfg.seed)  # the init both arms start from (pretrain seeds the same way)
    online, momentum = build_models(cfg.model, cfg.model.framework)
    results = {"random_init": {"online": measure(cfg, online.backbone.to(device), train, test, device,
                                                 probe_epochs=probe_epochs)}}
    for arm, objective in (("patchmix", "patchmix"), ("baseline", baseline)):
        acfg = dataclasses.replace(cfg, out=str(out / arm), loss=dataclasses.replace(cfg.loss, objective=objective),
                                   monitor=dataclasses.replace(cfg.monitor, knn_final=False), log_every=1)
        t0 = time.perf_counter()
        summary = pretrain(acfg)
        wall = time.perf_counter() - t0
        ck = torch.load(out / arm / "last.pt", map_location="cpu", weights_only=False)
        online, momentum = build_models(acfg.model, acfg.model.framework)
        online.load_state_dict(ck["state"]["online"])
        res = {"online": measure(acfg, online.backbone.to(device), train, test, device, probe_epochs=probe_epochs)}
        if momentum is not None and measure_momentum:
            momentum.load_state_dict(ck["state"]["momentum"])
            res["momentum"] = measure(acfg, momentum.backbone.to(device), train, test, device,
                                      probe_epochs=probe_epochs)
        curve = _l_src_curve(out / arm)
        res.update(l_src_first=curve[0], l_src_last20=sum(curve[-20:]) / len(curve[-20:]), wall_s=wall,
                   samples_per_s=summary.get("samples_per_s"), steps=summary["steps"])
        results[arm] = res
        log(f"{arm}: {json.dumps(res)}")
    results["knn_gap_online"] = results["patchmix"]["online"]["knn_top1"] - results["baseline"]["online"]["knn_top1"]
    results["config"] = config_mod.to_dict(cfg)
    return results
