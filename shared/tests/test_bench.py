import torch
from tenfold import bench


def test_time_it_and_peak_memory():
    x = torch.randn(256, 256)
    t = bench.time_it(lambda: x @ x, warmup=1, repeat=3)
    assert t["median_s"] > 0 and t["repeat"] == 3

    def step():
        a = torch.randn(1024, 1024)  # 4 MiB
        b = a * 2  # 4 MiB more while a is alive
        del a
        return b.sum()

    peak = bench.peak_memory(step)
    assert 8 * 2**20 <= peak < 9 * 2**20

    def small():
        return torch.randn(256, 256).sum()

    assert bench.peak_memory(small) < 2**20


def test_flops_and_mfu():
    a = torch.randn(64, 32)
    b = torch.randn(32, 16)
    assert bench.count_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    assert bench.mfu(1e12, 1.0, peak_tflops=2.0) == 0.5
    assert bench.mfu(1e12, 1.0, torch.device("cpu")) is None
