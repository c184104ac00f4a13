"""Spec 7.1 unit tests: hand cases, invariants and one test per pitfall."""
import math

import numpy as np
import pytest
import torch
from depara.evaluate import SORT_GT, kendall_tau, precision_recall_at_k, spearman_rho
from depara.graph import GraphOptions, build_graph, layer_graphs
from depara.method import (
    attribute,
    depara_score,
    edge_vector,
    node_similarity,
    rankdata,
    reduce_channels,
    rsa_vector,
    spearman,
)
from scipy import stats
from torch import nn


def test_grad_input_linear_scalar_hand_case():
    w = torch.tensor([[0.5, -2.0, 3.0]])
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.fill_(7.0)
    x = torch.tensor([[1.0, 2.0, -1.0], [0.0, 4.0, 2.0]])
    A, y = attribute(lin, x, "grad_input")
    assert torch.allclose(A, w * x)  # A = w (.) x, the bias contributes nothing
    S, _ = attribute(lin, x, "saliency")
    assert torch.allclose(S, w.abs().expand_as(x))
    assert torch.allclose(y, x @ w.T + 7.0)


def test_grad_input_vector_output_uses_summed_units():
    W = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])  # 3 outputs, 2 inputs
    x = torch.tensor([[2.0, -3.0]])
    A, _ = attribute(lambda t: t @ W.T, x)
    expected = (W.T @ torch.ones(3)) * x  # (W^T 1) (.) x = [4.5, 1.5] * x
    assert torch.allclose(A, expected)
    assert torch.allclose(A, torch.tensor([[9.0, -4.5]]))


def test_completeness_bias_free_relu_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(8, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 5, bias=False)).double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    A, y = attribute(net, x)
    # Euler homogeneity: sum over pixels of grad x input = sum_k y_k(x), per image
    assert torch.allclose(A.flatten(1).sum(1), y.sum(1), rtol=1e-4)


def _tiny_bn_net():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                        nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                        nn.Conv2d(6, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():  # non-trivial running stats, so train mode would differ
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


def test_batch_independence_eval_mode():
    net = _tiny_bn_net()
    x = torch.randn(8, 3, 8, 8)
    opts = GraphOptions(batch_size=8, center_features=True)
    g8 = build_graph(net, x, opts, model=net)
    g1 = build_graph(net, x, GraphOptions(batch_size=1, center_features=True), model=net)
    assert torch.allclose(g8.V, g1.V, atol=1e-6, rtol=1e-5)
    assert torch.allclose(g8.E, g1.E, atol=1e-4)  # centring amplifies float32 rounding of conv batches


def test_train_mode_model_is_extracted_in_eval_mode_pitfall():
    net = _tiny_bn_net().train()
    x = torch.randn(8, 3, 8, 8)
    g = build_graph(net, x, GraphOptions(batch_size=4), model=net)
    ref = build_graph(net.eval(), x, GraphOptions(batch_size=1), model=net)
    assert torch.allclose(g.V, ref.V, atol=1e-6, rtol=1e-5)


def test_no_accumulation_across_layers():
    net = _tiny_bn_net().eval()
    x = torch.randn(6, 3, 8, 8)
    opts = GraphOptions(batch_size=3, center_features=False)
    both = layer_graphs(net, ["0", "6"], x, opts)  # layer 1 then layer 3 on one shared forward
    alone = layer_graphs(net, ["6"], x, opts)
    sep = layer_graphs(net, ["0", "6"], x, opts, shared_forward=False)
    assert torch.allclose(both["6"].V, alone["6"].V, atol=1e-6)
    assert torch.allclose(sep["6"].V, alone["6"].V, atol=1e-6)
    # the official bug (switch graph.reference_accumulation) gives layer 3 the summed gradients of layers 1 and 3
    bug = layer_graphs(net, ["0", "6"], x, GraphOptions(batch_size=3, center_features=False,
                                                         reference_accumulation=True))
    g1, _ = attribute(lambda t: net[0](t), x)
    g3, _ = attribute(lambda t: net[:7](t), x)  # the model truncated at layer "6"
    assert torch.allclose(bug["6"].V, reduce_channels(g1 + g3), atol=1e-6)
    assert not torch.allclose(bug["6"].V, both["6"].V, atol=1e-3)


def test_inplace_relu_after_tapped_conv_does_not_change_its_map():
    net = _tiny_bn_net().eval()
    x = torch.randn(4, 3, 8, 8)
    g = layer_graphs(net, ["3"], x, GraphOptions(batch_size=4, center_features=False))["3"]
    A, _ = attribute(lambda t: net[3](net[2](net[1](net[0](t)))), x)  # truncated model, no hooks
    assert torch.allclose(g.V, reduce_channels(A), atol=1e-6)
    assert net[2].inplace  # restored afterwards


def test_node_similarity_hand_case_and_invariants():
    v1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert float(node_similarity(v1, v2)) == pytest.approx((1 / math.sqrt(2) + 1) / 2, abs=1e-7)  # 0.8536
    torch.manual_seed(0)
    a, b = torch.randn(5, 16), torch.randn(5, 16)
    assert float(node_similarity(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(node_similarity(a, b)) == pytest.approx(float(node_similarity(b, a)), abs=1e-7)
    scale = torch.rand(5, 1) + 0.1
    assert float(node_similarity(a, b * scale)) == pytest.approx(float(node_similarity(a, b)), abs=1e-6)
    A = torch.randn(5, 3, 4, 4)
    neg = node_similarity(reduce_channels(A, "mean"), reduce_channels(-A, "mean"))
    assert float(neg) == pytest.approx(-1, abs=1e-6)


def test_node_similarity_fp16_storage_close():
    torch.manual_seed(0)
    a, b = torch.randn(10, 256), torch.randn(10, 256)
    assert float(node_similarity(a.half(), b.half())) == pytest.approx(float(node_similarity(a, b)), abs=2e-3)


def test_spearman_hand_cases():
    assert float(spearman(torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.9, 0.4]))) == pytest.approx(0.5)
    a, b = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.9, 0.4])
    assert float(spearman(a, b, "argsort")) == pytest.approx(0.5)
    e = torch.rand(50)
    assert float(spearman(e, e)) == pytest.approx(1.0)
    assert float(spearman(e, -e)) == pytest.approx(-1.0)
    assert float(spearman(e, torch.exp(3 * e) + 2)) == pytest.approx(1.0)  # strictly increasing transform


def test_spearman_matches_scipy_tie_free_and_with_ties():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(500, generator=g, dtype=torch.float64), torch.rand(500, generator=g, dtype=torch.float64)
    ref = stats.spearmanr(a.numpy(), b.numpy()).statistic
    assert float(spearman(a, b)) == pytest.approx(ref, abs=1e-10)
    assert float(spearman(a, b, "argsort")) == pytest.approx(ref, abs=1e-10)
    # ties (post-ReLU / quantised features): average ranks, unlike the reference's argsort ranks
    qa, qb = torch.round(a * 4), torch.round(b * 4)
    assert float(spearman(qa, qb)) == pytest.approx(stats.spearmanr(qa, qb).statistic, abs=1e-10)
    expected = torch.tensor([2.5, 0.0, 2.5, 1.0], dtype=torch.float64)
    assert torch.equal(rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])), expected)


def test_edge_vector_layout_and_invariants():
    torch.manual_seed(0)
    f = torch.randn(6, 10)
    e = edge_vector(f, center=False)
    assert e.numel() == 6 * 5 // 2
    fn = f / f.norm(dim=1, keepdim=True)
    expected = [float(fn[i] @ fn[j]) for i in range(6) for j in range(i + 1, 6)]  # row-major i<j
    assert torch.allclose(e, torch.tensor(expected), atol=1e-6)
    scale = torch.rand(6, 1) + 0.2
    assert torch.allclose(edge_vector(f * scale, center=False), e, atol=1e-6)
    ec = edge_vector(f, center=True)
    assert torch.allclose(edge_vector(f + torch.randn(1, 10) * 5, center=True), ec, atol=1e-5)


def test_centring_pitfall_common_component():
    torch.manual_seed(0)
    f = torch.relu(torch.randn(30, 64)) + 5.0  # large shared component, as post-ReLU features
    plain, centred = edge_vector(f, center=False), edge_vector(f, center=True)
    assert plain.min() > 0.95  # all cosines ~1 without centring
    assert centred.std() > 10 * plain.std()


def test_rsa_is_correlation_distance():
    torch.manual_seed(0)
    f = torch.randn(5, 7, dtype=torch.float64)
    r = rsa_vector(f, center=False)
    ref = [1 - np.corrcoef(f[i].numpy(), f[j].numpy())[0, 1] for i in range(5) for j in range(i + 1, 5)]
    assert np.allclose(r.numpy(), ref, atol=1e-6)


def test_combined_score_table_cells():
    assert depara_score(0.45, 0.16, 10) == pytest.approx(2.05)
    assert depara_score(0.60, 0.06, 1) == pytest.approx(0.66)
    assert depara_score(0.45, 0.16, 1) == pytest.approx(0.61)


def test_p_at_k_oracle_random_and_p5_equals_r5():
    gt = SORT_GT
    S = np.zeros((18, 20))
    for r, row in enumerate(gt):
        S[r, row] = np.arange(20, 0, -1)  # oracle affinity
    for k in range(1, 6):
        assert precision_recall_at_k(S, gt, k)[0] == 1.0
    assert precision_recall_at_k(S, gt, 5)[1] == 1.0
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(200):
        R = rng.random((18, 20))
        p5, r5 = precision_recall_at_k(R, gt, 5)
        assert p5 == r5
        ps.append(precision_recall_at_k(R, gt, 3)[0])
    assert np.mean(ps) == pytest.approx(5 / 19, abs=0.02)


def test_p_at_k_self_entry_excluded_even_if_not_maximal():
    gt = SORT_GT[:1]
    S = np.zeros((1, 20))
    S[0, gt[0][1:]] = np.arange(19, 0, -1)
    S[0, gt[0][0]] = -5  # self-score is the lowest; dropping the first sorted entry would lose a hit
    assert precision_recall_at_k(S, gt, 5)[0] == 1.0
    assert precision_recall_at_k(S, gt, 5, self_exclusion="drop_first")[0] == 0.8  # the reference's behaviour


def test_rank_correlations_hand_cases():
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    x, y = np.random.default_rng(0).random(12), np.random.default_rng(1).random(12)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_elrp_ablation_equals_grad_input_for_relu_nets_up_to_eps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(4, 6)
    A, _ = attribute(net, x, "grad_input")
    L, _ = attribute(net, x, "elrp", eps=1e-9)
    assert torch.allclose(A, L, atol=1e-5)
    assert nn.functional.relu.__name__ == "relu"  # patch removed


def test_gradient_flows_to_input_only_not_params():
    net = nn.Linear(4, 2)
    attribute(net, torch.randn(3, 4))
    assert net.weight.grad is None  # autograd.grad w.r.t. the input leaves parameter .grad untouched


def test_memory_options_fp16_storage_and_pooling():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(6, 3, 8, 8)
    full = build_graph(net, x, GraphOptions(batch_size=3))
    half = build_graph(net, x, GraphOptions(batch_size=3, node_dtype="float16"))
    pooled = build_graph(net, x, GraphOptions(batch_size=3, node_pool=2))
    assert full.V.shape == (6, 64) and half.V.dtype == torch.float16 and pooled.V.shape == (6, 16)
    assert float(node_similarity(full.V, half.V)) == pytest.approx(1.0, abs=1e-3)
    A, _ = attribute(net, x)  # pooling is applied to A before the channel reduction
    assert torch.allclose(pooled.V, nn.functional.avg_pool2d(A, 2).abs().mean(1).flatten(1), atol=1e-6)


def test_bad_graph_options_raise_config_error():
    from tenfold.errors import ConfigError

    with pytest.raises(ConfigError, match="channel_reduce"):
        reduce_channels(torch.zeros(1, 3, 2, 2), "max")
    with pytest.raises(ConfigError, match="node_pool"):
        build_graph(nn.Identity(), torch.zeros(4, 3, 2, 2), GraphOptions(node_pool=0))
    with pytest.raises(ValueError, match="same probe"):
        node_similarity(torch.zeros(3, 4), torch.zeros(4, 4))


def test_no_accumulation_across_models_on_shared_probes():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
    b = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.Flatten())
    probes = torch.randn(6, 3, 6, 6)
    alone = build_graph(b, probes.clone(), GraphOptions(batch_size=3))
    build_graph(a, probes, GraphOptions(batch_size=3))
    after = build_graph(b, probes, GraphOptions(batch_size=3))
    assert torch.equal(alone.V, after.V) and probes.grad is None and not probes.requires_grad


def _row_cos(a, b):
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1)


@pytest.mark.parametrize("node_dtype", ["float32", "float16"])
def test_objective_sum_or_mean_leaves_node_cosines_unchanged(node_dtype):
    """README: graph.objective (sum | mean) does not change any cosine -- with reference_accumulation off, the
    combination the README promises, for whole-model graphs and layer graphs, fp32 and fp16 node storage."""
    net = _tiny_bn_net().eval()
    x = torch.randn(7, 3, 24, 24)  # 7 probes in batches of 3: the last batch is smaller (another mean factor)
    kw = dict(batch_size=3, center_features=False, node_dtype=node_dtype)
    for build in (lambda o: {"model": build_graph(net, x, o, model=net)},
                  lambda o: layer_graphs(net, ["0", "3", "6"], x, o)):
        gs, gm = build(GraphOptions(objective="sum", **kw)), build(GraphOptions(objective="mean", **kw))
        for k in gs:
            assert _row_cos(gs[k].V, gm[k].V).min() > 0.999, (k, node_dtype)
            assert float(node_similarity(gs[k].V, gm[k].V)) == pytest.approx(1.0, abs=1e-3)
            assert torch.equal(gs[k].E, gm[k].E)


def test_objective_matters_with_reference_accumulation():
    """The exception the README states: the accumulated map of layer k sums the gradients of layers 1..k, and
    'mean' weights each layer by 1/(B*K_l), a different factor per layer, so the direction of the sum changes."""
    torch.manual_seed(0)  # layers of very different sizes (8192, 512, 16 units), as in a real CNN
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(4), nn.Conv2d(8, 4, 3, padding=1)).eval()
    x = torch.randn(6, 3, 32, 32)
    kw = dict(batch_size=3, center_features=False, reference_accumulation=True)
    gs = layer_graphs(net, ["0", "3", "6"], x, GraphOptions(objective="sum", **kw))
    gm = layer_graphs(net, ["0", "3", "6"], x, GraphOptions(objective="mean", **kw))
    assert _row_cos(gs["0"].V, gm["0"].V).min() > 0.999  # the first layer has nothing accumulated
    assert _row_cos(gs["6"].V, gm["6"].V).mean() < 0.95


def test_top1_hit_with_ties_in_the_truth():
    from depara.evaluate import rank_metrics

    truth = np.array([[np.nan, 100.0, 100.0, 90.0]])
    m = rank_metrics(np.array([[np.nan, 0.1, 0.9, 0.5]]), truth)["mean"]  # picks the second of two 100 % sources
    assert m["top1_hit"] == 0.0 and m["top1_hit_ties"] == 1.0 and m["top1_regret"] == 0.0
    m = rank_metrics(np.array([[np.nan, 0.1, 0.2, 0.5]]), truth)["mean"]
    assert m["top1_hit_ties"] == 0.0 and m["top1_regret"] == 10.0
