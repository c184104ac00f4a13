import pytest
import torch
from cmi.augment import Normalizer
from cmi.models import ToyNet
from cmi.toy import make_toy

TOY_MEAN, TOY_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


@pytest.fixture(scope="session")
def toy_data():
    return make_toy(2000, seed=0), make_toy(1000, seed=1)


@pytest.fixture(scope="session")
def toy_teacher(toy_data):
    """Spec §7 ToyNet(16) teacher: Adam 1e-3, batch 64, 4 epochs on the 16x16 toy set (~1 s CPU)."""
    train, _ = toy_data
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ToyNet(16, 4)
    norm = Normalizer(TOY_MEAN, TOY_STD)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = train.tensors()
    for _ in range(4):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(norm(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval().requires_grad_(False)
    return model


@pytest.fixture
def toy_norm():
    return Normalizer(TOY_MEAN, TOY_STD)


@pytest.fixture(scope="session")
def toy_teacher_file(toy_teacher, tmp_path_factory):
    """The toy teacher as a ../shared/models-style plain state_dict + JSON (arch, classes)."""
    import json

    d = tmp_path_factory.mktemp("teacher")
    torch.save(toy_teacher.state_dict(), d / "toy.pt")
    (d / "toy.json").write_text(json.dumps({"arch": "toynet16", "num_classes": 4}))
    return d / "toy.pt"


@pytest.fixture(scope="session", autouse=True)
def _one_cpu_thread():
    """Every test on one intra-op thread, as the calibrations were made: these tiny models gain nothing from more,
    and on a shared 2-core machine OpenMP's spinning threads made them up to 45x slower (3 toy CMI rounds: 20 s
    on 2 threads under load vs 0.44 s on one)."""
    from tenfold import runtime

    with runtime.num_threads(1):
        yield
