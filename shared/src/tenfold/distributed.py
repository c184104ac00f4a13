"""Single process or torchrun; gloo on CPU, NCCL on GPU.

`init()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), so
multi-node training is `torchrun --nnodes N --nproc-per-node G --rdzv-endpoint host:port <p>-train ...`.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init", "cleanup", "is_initialized", "rank", "world_size", "local_rank", "is_main", "barrier",
           "wrap", "unwrap", "all_gather_with_grad", "all_gather_nograd", "all_reduce_mean", "broadcast_object"]


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init(device: torch.device | None = None, backend: str | None = None, init_method: str | None = None) -> bool:
    """Initialise the process group if launched by torchrun; returns True when distributed.

    `init_method` (e.g. ``file:///tmp/store``) replaces the env:// rendezvous; tests use a file store so no rank
    depends on another rank's TCP store server staying alive during teardown."""
    if is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if (device is not None and device.type == "cuda") else "gloo"
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)
    if init_method is None:
        dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend, init_method=init_method, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    return True


def cleanup() -> None:
    if is_initialized():
        # every rank reaches teardown before any destroys its group: a rank that tears down while a peer is still
        # in a collective aborts the peer ("terminate called without an active exception" under gloo)
        dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device, **ddp_kwargs) -> nn.Module:
    """DistributedDataParallel when distributed, the model itself otherwise."""
    if not is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx, grad):
        # Every rank's loss depends on every rank's x: sum the gradients over ranks, keep our slice.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n:(r + 1) * n]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0; gradients flow back to each rank's own slice.

    Equal per-rank batch sizes are required (use drop_last). Single process: returns x.
    """
    if not is_initialized() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    if not is_initialized() or world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, 0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not is_initialized() or world_size() == 1:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world_size()


def broadcast_object(obj, src: int = 0):
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
