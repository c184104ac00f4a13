"""Evaluation under torchrun (issue #18): 2 CPU processes (gloo) extract their shards of the features, gather them,
and get exactly what one process computes: kNN, the L-BFGS linear probe and the fine-tuning top-1 (hits summed
over ranks); loader worker processes give the same features as none."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

N_BANK, N_TEST = 21, 11  # odd sizes: the last shard is shorter


def _data():
    g = torch.Generator().manual_seed(0)
    bank = torch.utils.data.TensorDataset(torch.rand(N_BANK, 3, 32, 32, generator=g), torch.arange(N_BANK) % 3)
    test = torch.utils.data.TensorDataset(torch.rand(N_TEST, 3, 32, 32, generator=g), torch.arange(N_TEST) % 3)
    return bank, test


def _evaluate(num_workers):
    from aps.config import EvalConfig, ModelConfig
    from aps.evaluate import evaluate_top1, knn_monitor, linear_probe_monitor
    from aps.model import build_backbone

    mcfg = ModelConfig(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=2)
    torch.manual_seed(0)
    backbone = build_backbone(mcfg)
    classifier = build_backbone(mcfg, num_classes=3)
    bank, test = _data()
    cpu = torch.device("cpu")
    res = knn_monitor(backbone, bank, test, cpu, k=5, batch_size=4, num_classes=3, num_workers=num_workers)
    out = {"knn_top1": res["knn_top1"], "features": res["_features"]}
    out.update(linear_probe_monitor(res["_features"], num_classes=3, ecfg=EvalConfig(linear_l2=0.05)))
    out["finetune_top1"] = evaluate_top1(classifier, test, cpu, batch_size=4, num_workers=num_workers)
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
    for rank in range(2):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        for got, want in zip(r["features"], single["features"]):  # bank, bank labels, test, test labels
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert r["knn_top1"] == single["knn_top1"]
        assert r["linear_top1"] == single["linear_top1"]
        assert r["finetune_top1"] == single["finetune_top1"]


def test_loader_workers_give_the_same_evaluation():
    torch.set_num_threads(1)
    a, b = _evaluate(num_workers=2), _evaluate(num_workers=0)
    for got, want in zip(a["features"], b["features"]):
        assert torch.equal(got, want)
    assert a["knn_top1"] == b["knn_top1"] and a["finetune_top1"] == b["finetune_top1"]
