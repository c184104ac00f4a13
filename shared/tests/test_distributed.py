import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tenfold import distributed


def _loss(full):
    # a contrastive-style loss in which every row interacts with every other row
    f = torch.nn.functional.normalize(full, dim=1)
    logits = f @ f.T / 0.1
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(f)))


def _worker(rank, world, store, x_all, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init(torch.device("cpu"), init_method=f"file://{store}")
    assert distributed.world_size() == world and distributed.rank() == rank
    n = x_all.shape[0] // world
    x = x_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    full = distributed.all_gather_with_grad(x)
    assert torch.equal(full.detach(), x_all)
    # DDP-style: each rank's loss is averaged over ranks by summing gradients of loss/world
    (_loss(full) / world).backward()
    model = distributed.wrap(torch.nn.Linear(4, 2), torch.device("cpu"))
    assert isinstance(model, torch.nn.parallel.DistributedDataParallel)
    mean = distributed.all_reduce_mean(torch.tensor([float(rank)]))
    out[rank] = torch.cat([x.grad.flatten(), mean])
    distributed.cleanup()


def test_all_gather_with_grad_matches_single_process(tmp_path):
    world = 2
    torch.manual_seed(0)
    x_all = torch.randn(6, 5, dtype=torch.float64)
    ref = x_all.clone().requires_grad_(True)
    _loss(ref).backward()
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), x_all, out), nprocs=world, join=True)
    n = x_all.shape[0] // world
    for r in range(world):
        got = out[r]
        assert torch.allclose(got[:-1], ref.grad[r * n:(r + 1) * n].flatten(), atol=1e-12)
        assert got[-1] == 0.5
    assert not dist.is_initialized()


def test_single_process_passthrough():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.world_size() == 1 and distributed.is_main()
    m = torch.nn.Linear(2, 2)
    assert distributed.wrap(m, torch.device("cpu")) is m
