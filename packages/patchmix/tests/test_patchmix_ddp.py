"""Mixing across devices under DDP (2 CPU processes, gloo): scope=global equals mixing the gathered batch,
scope=local wraps around within each device's batch; keys are all-gathered for the loss."""
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

DEMO = str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


def _worker(rank, world, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    # a file store: no rank depends on rank 0's TCP store server outliving its own teardown
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    from patchmix.config import PretrainConfig
    from patchmix.method import MixDraw, soft_info_nce, soft_targets
    from patchmix.models import build_models
    from patchmix.train import StepFn, build_optimizer
    from tenfold import config as config_mod

    full = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mine = full[rank * 4:(rank + 1) * 4]
    res = {}
    for scope in ("global", "local"):
        cfg = config_mod.load(PretrainConfig, DEMO, ["device=cpu", "optim.batch_size=8", f"mix.scope={scope}"])
        online, mom = build_models(cfg.model, "momentum")
        step = StepFn(cfg, online, mom, build_optimizer(cfg, online), torch.device("cpu"), 10, 100)
        g_local, g_global = torch.Generator().manual_seed(5 + rank), torch.Generator().manual_seed(5)
        res[scope] = step.mix(mine, MixDraw(True, 2, 4), g_local, g_global)
    q = torch.randn(4, 6, generator=torch.Generator().manual_seed(rank))
    k = torch.randn(4, 6, generator=torch.Generator().manual_seed(10 + rank))
    res["loss"] = soft_info_nce(q, k, soft_targets(4, 2, rank, world, scope="global")[1], 0.2, gather=True)
    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_mixing_scope_under_ddp(tmp_path):
    from patchmix.method import patch_mix, soft_info_nce, soft_targets

    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r = [torch.load(tmp_path / f"rank{i}.pt") for i in range(2)]
    full = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    want, _ = patch_mix(full, 2, 4, torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat([r[0]["global"], r[1]["global"]]), want)  # groups span devices
    for rank in range(2):  # local: each device's batch mixes only with itself
        mine = full[rank * 4:(rank + 1) * 4]
        want_local, _ = patch_mix(mine, 2, 4, torch.Generator().manual_seed(5 + rank))
        assert torch.equal(r[rank]["local"], want_local)
    # the gathered loss equals the single-process loss over the global batch with the global targets
    q = torch.cat([torch.randn(4, 6, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    k = torch.cat([torch.randn(4, 6, generator=torch.Generator().manual_seed(10 + i)) for i in range(2)])
    ref = soft_info_nce(q, k, soft_targets(8, 2)[1], 0.2)
    assert abs((r[0]["loss"] + r[1]["loss"]).item() / 2 - ref.item()) < 1e-5
