"""Evaluation under torchrun (issue #18): 2 CPU processes (gloo) extract their shards of the features (uint8
images, the `limit` cap included), gather them and count test hits per shard; the results equal one process's.
Loader worker processes give the same features as none."""
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N_TRAIN, N_TEST = 21, 11  # odd sizes: the last shard is shorter


def _data():
    from patchmix.data import keep_uint8
    from tenfold.data import ArrayImageDataset

    rng = np.random.default_rng(0)
    train = ArrayImageDataset(rng.integers(0, 256, (N_TRAIN, 32, 32, 3), dtype=np.uint8), np.arange(N_TRAIN) % 3,
                              keep_uint8)
    test = ArrayImageDataset(rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype=np.uint8), np.arange(N_TEST) % 3,
                             keep_uint8)
    return train, test


def _evaluate(num_workers):
    from patchmix.evaluate import extract, knn_eval
    from patchmix.models import build_backbone
    from patchmix.probe import accuracy

    torch.manual_seed(0)
    bb = build_backbone("vit_tiny_cpu", 8, 32, embed_dim=24, depth=1, num_heads=2)
    head = torch.nn.Linear(24, 3)
    train, test = _data()
    cpu = torch.device("cpu")
    kw = dict(size=32, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=4, num_workers=num_workers)
    tf, ty = extract(bb, train, cpu, **kw)
    vf, vy = extract(bb, test, cpu, **kw)
    capped = extract(bb, train, cpu, limit=9, **kw)
    out = {"features": (tf, ty, vf, vy), "capped": capped, **knn_eval(tf, ty, vf, vy, ks=(5,))}
    with torch.no_grad():
        out["top1"] = accuracy(lambda x: head(bb.eval().cls_feature(x)), test, cpu, 32, (0.5,) * 3, (0.25,) * 3,
                               num_workers=num_workers)
    return out


def _worker(rank, world, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    # a file store: no rank depends on rank 0's TCP store server outliving its own teardown
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank, world_size=world)
    # no loader workers here: in the spawned ranks each worker start costs seconds; workers are checked below
    torch.save(_evaluate(num_workers=0), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_sharded_evaluation_equals_one_process(tmp_path):
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = _evaluate(num_workers=0)
    assert single["capped"][0].shape[0] == 9
    for rank in range(2):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        for got, want in zip([*r["features"], *r["capped"]], [*single["features"], *single["capped"]]):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert r["knn5_top1"] == single["knn5_top1"] and r["top1"] == single["top1"]


def test_loader_workers_give_the_same_features():
    torch.set_num_threads(1)
    a, b = _evaluate(num_workers=2), _evaluate(num_workers=0)
    for got, want in zip(a["features"], b["features"]):
        assert torch.equal(got, want)
    assert a["top1"] == b["top1"]
