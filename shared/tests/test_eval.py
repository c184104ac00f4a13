import torch
from tenfold import eval as tf_eval


def test_knn_known_answer():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.6, 0.4]])
    scores = tf_eval.knn_predict(train, labels, test, k=2, t=0.1)
    assert scores.argmax(1).tolist() == [0, 1, 0]
    # hand value for the first query: both neighbours are class 0, weights exp(cos/0.1)
    q = torch.nn.functional.normalize(test[:1], dim=1)
    tr = torch.nn.functional.normalize(train[:2], dim=1)
    expected = (q @ tr.T / 0.1).exp().sum()
    assert torch.allclose(scores[0, 0], expected) and scores[0, 1] == 0
    acc = tf_eval.knn_accuracy(train, labels, test, torch.tensor([0, 1, 1]), k=2, t=0.1)
    assert abs(acc["top1"] - 200 / 3) < 1e-4 and acc["top5"] == 100.0


def test_linear_probe_separable():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    centers = torch.randn(4, 16, generator=g) * 3
    x = centers[y] + 0.3 * torch.randn(200, 16, generator=g)
    acc = tf_eval.linear_probe(x[:150], y[:150], x[150:], y[150:], epochs=20, num_classes=4)
    assert acc["top1"] == 100.0
    rnd = tf_eval.linear_probe(torch.randn(150, 16, generator=g), y[:150], torch.randn(50, 16, generator=g), y[150:],
                               epochs=20, num_classes=4)
    assert rnd["top1"] < 60.0
