import pytest


@pytest.fixture(autouse=True)
def _one_cpu_thread(request):
    """Fast tests on one intra-op thread: these tiny models gain nothing from more, and on a shared 2-core machine
    OpenMP's spinning threads made them up to 45x slower (3 toy CMI rounds: 20 s on 2 threads under load vs 0.44 s
    on one). The slow real-data test keeps the default thread count its draws were measured with."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    from tenfold import runtime

    with runtime.num_threads(1):
        yield
