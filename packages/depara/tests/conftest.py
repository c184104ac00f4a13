import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():
    """Every test on one intra-op thread, as the calibrations were made: these tiny models gain nothing from more,
    and on a shared 2-core machine OpenMP's spinning threads made them up to 45x slower (3 toy CMI rounds: 20 s
    on 2 threads under load vs 0.44 s on one)."""
    from tenfold import runtime

    with runtime.num_threads(1):
        yield
