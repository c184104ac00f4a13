"""MGC under DDP with 2 CPU processes (gloo, file store; torchrun-style RANK/WORLD_SIZE): the EMA update, the
key all-gather and the loss all run inside the DDP forward (model.py). SyncBatchNorm needs a GPU (torch refuses
CPU input), so on gloo every rank normalises its own rows; `build` converts the heads on CUDA only (checked here
on the module tree)."""
import math
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

CFG = dict(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, levels=[1, 2, 4], pairs=[4, 2, 1],
           proj_hidden=32, pred_hidden=32, out_dim=16, drop_path=0.0)
B = 4  # images per rank


def _batch(seed):
    from mgc.config import ModelConfig

    cfg = ModelConfig(**CFG)
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(B, 3, 16, 16, generator=g), torch.randn(B, 3, 16, 16, generator=g)
    corr = []
    for c, k in zip(cfg.levels, cfg.pairs):
        n = (cfg.grid // c) ** 2
        corr.append((torch.randint(0, n, (B, k), generator=g), torch.randint(0, n, (B, k), generator=g),
                     torch.full((B, k), 0.25)))
    return x1, x2, corr


def _worker(rank, world, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    from mgc.config import ModelConfig, TrainConfig
    from mgc.model import MGC
    from mgc.train import optimize_step
    from tenfold import distributed, runtime

    cpu = torch.device("cpu")
    assert distributed.init(cpu) and distributed.world_size() == world
    cfg = TrainConfig(model=ModelConfig(**CFG), precision="fp32")
    cfg.loss.temperature = 1000.0  # logits ~ 0: each direction's loss is ln(number of keys) to < 1 %
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = MGC(cfg.model, cfg.loss)
    ddp = distributed.wrap(model, cpu)
    assert isinstance(ddp, nn.parallel.DistributedDataParallel)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    scaler = runtime.grad_scaler(cpu, "fp32")
    losses = []
    for step in range(2):
        x1, x2, corr = _batch(100 * step + rank)  # each rank its own images
        loss, info = optimize_step(ddp, opt, scaler, trainable, x1, x2, corr, 0.9, cfg, cpu)
        losses.append({k: float(v) for k, v in info.items()})
    torch.save({"state": model.state_dict(), "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_two_process_step_keeps_ranks_identical_and_gathers_keys(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in range(2))
    from mgc.config import ModelConfig
    from mgc.model import MGC

    torch.manual_seed(0)
    init = MGC(ModelConfig(**CFG)).state_dict()
    for k, v in r0["state"].items():
        if "running_" in k or "num_batches" in k:
            continue  # BN statistics are per rank on CPU (no SyncBN there)
        # gradients averaged by DDP, and the EMA (run inside the forward) of identical weights: equal everywhere
        torch.testing.assert_close(v, r1["state"][k], rtol=0, atol=1e-6, msg=k)
    for prefix in ("base_encoder.blocks.0.mlp.0.weight", "momentum_encoder.blocks.0.mlp.0.weight",
                   "momentum_projectors.0.0.weight", "predictors.0.0.weight"):
        assert not torch.equal(r0["state"][prefix], init[prefix]), prefix  # the step and the EMA happened
    # the keys of both ranks are the negatives: with T = 1000 each level's loss (both directions) is
    # 2 ln(world * B * K_c); without the gather it would be 2 ln(B * K_c), 20-50 % lower here
    for c, k in zip(CFG["levels"], CFG["pairs"]):
        for r in (r0, r1):
            got = r["losses"][0][f"loss_c{c}"]
            assert abs(got - 2 * math.log(2 * B * k)) < 0.02 * 2 * math.log(2 * B * k), (c, got)


def test_heads_become_syncbn_on_cuda_with_unchanged_names():
    """What `build` does under a CUDA world: SyncBatchNorm in the heads, same state_dict names (checkpoints and
    exports load either way)."""
    from mgc.config import ModelConfig
    from mgc.model import MGC

    model = MGC(ModelConfig(**CFG))
    names = list(model.state_dict())
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert list(sync.state_dict()) == names
    bns = [m for m in sync.projectors.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
