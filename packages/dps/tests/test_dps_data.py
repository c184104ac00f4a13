"""Loaders, splits and evaluation negatives (spec §3, §7a.2–3; pitfalls 6, 7, 17)."""
import numpy as np
import pytest
import torch
from dps.data import from_edges_csv, from_events_csv, from_jodie, preference_stream
from dps.split import eval_negatives, new_node_split, quantile_split, transductive_filter, unique_timestamp_split
from tenfold.errors import DataError
from torch_geometric.data import TemporalData


def write(path, text):
    path.write_text(text)
    return path


def test_events_csv_shifts_ids_and_reads_labels(tmp_path):
    p = write(tmp_path / "events.csv", "src,dst,t,label\n0,1,0,0\n1,2,5,1\n0,2,5,0\n")
    s = from_events_csv(p)
    assert s.data.src.tolist() == [1, 2, 1] and s.data.dst.tolist() == [2, 3, 3]
    assert s.data.t.dtype == torch.float64 and s.num_nodes == 3 and s.data.y.tolist() == [0, 1, 0]
    r = from_events_csv(write(tmp_path / "r.csv", "src,dst,t,rating\n0,1,0,4\n1,0,3,-2\n"), use_rating=True)
    assert r.data.msg.shape == (2, 1)


@pytest.mark.parametrize("text,match", [
    ("src,dst,t\n0,1,5\n1,2,3\n", "not sorted by time"),
    ("src,dst,t\n", "no events"),
    ("src,dst,t\n0,-1,5\n", "negative node ids"),
    ("a,b,c\n0,1,5\n", "header must start"),
])
def test_events_csv_bad_input(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        from_events_csv(write(tmp_path / "events.csv", text))


def test_edges_and_nodes_format(tmp_path):
    e = write(tmp_path / "g.edges", "from_node_id,to_node_id,timestamp,state_label,f0\n10,20,1,0,0.5\n"
                                     "11,20,2,1,0.1\n10,21,3,0,0.2\n")
    n = write(tmp_path / "g.nodes", "node_id,id_map,role,label\n10,0,user,0\n11,1,user,0\n20,2,item,0\n"
                                     "21,3,item,0\n")
    s = from_edges_csv(e, n)
    assert s.data.src.tolist() == [1, 2, 1] and s.data.dst.tolist() == [3, 3, 4]
    assert s.items.tolist() == [3, 4] and s.data.msg.shape == (3, 1) and s.data.y.tolist() == [0, 1, 0]


def test_jodie_offsets_by_one():
    fake = TemporalData(src=torch.tensor([0, 1, 0]), dst=torch.tensor([2, 3, 2]), t=torch.tensor([0, 1, 2]),
                        msg=torch.randn(3, 172), y=torch.tensor([0, 0, 1]))
    s = from_jodie(fake)
    assert s.data.src.tolist() == [1, 2, 1] and s.data.dst.tolist() == [3, 4, 3]
    assert s.items.tolist() == [3, 4] and s.data.msg.shape == (3, 172)


def test_unique_timestamp_split_by_hand():
    t = torch.tensor([1, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=torch.float64)
    sp = unique_timestamp_split(t)  # 9 unique: train_ts = ts[6] = 7, val_ts = ts[7] = 8
    assert sp.train.tolist() == [True] * 7 + [False] * 3
    assert sp.val.tolist() == [False] * 7 + [True] + [False] * 2
    assert sp.test.tolist() == [False] * 8 + [True] * 2


def test_quantile_split_matches_pyg():
    g = torch.Generator().manual_seed(0)
    t = torch.sort(torch.randint(0, 50, (200,), generator=g)).values
    data = TemporalData(src=torch.zeros(200, dtype=torch.long), dst=torch.zeros(200, dtype=torch.long), t=t)
    tr, va, te = data.train_val_test_split(0.15, 0.15)
    sp = quantile_split(t.double(), 0.15, 0.15)
    assert [int(sp.train.sum()), int(sp.val.sum()), int(sp.test.sum())] == [tr.num_events, va.num_events,
                                                                            te.num_events]


def test_transductive_filter_and_new_nodes():
    src = torch.tensor([1, 2, 1, 3, 1, 4])
    dst = torch.tensor([2, 1, 3, 1, 2, 1])
    t = torch.arange(6).double()
    sp = unique_timestamp_split(t, 0.5, 0.25)
    f = transductive_filter(src, dst, sp, 4)
    assert not f.test[5] and not f.graph[5]  # node 4 never seen in training
    base, ind = new_node_split(src, dst, sp, 4, frac=0.5, seed=0)
    assert int(ind.test.sum()) + int(ind.val.sum()) >= 1 and (base.train <= sp.train).all()


def test_eval_negatives():
    stream, _ = preference_stream(num_events=1000, seed=0)
    d = stream.data
    sp = unique_timestamp_split(d.t)
    neg = eval_negatives(d.src, d.dst, sp.test, stream.items, "random", 42)
    assert neg.numel() == int(sp.test.sum())  # 1:1
    assert (neg != d.dst[sp.test]).all()
    assert torch.isin(neg, stream.items).all()  # bipartite: item side only
    assert torch.equal(neg, eval_negatives(d.src, d.dst, sp.test, stream.items, "random", 42))
    hist = eval_negatives(d.src, d.dst, sp.test, stream.items, "historical", 42, sp.train)
    assert (hist != d.dst[sp.test]).all()
    past = {(int(u), int(v)) for u, v in zip(d.src[sp.train], d.dst[sp.train])}
    frac = np.mean([(int(u), int(v)) in past for u, v in zip(d.src[sp.test], hist)])
    assert frac > 0.9  # historical negatives are past destinations of the same source
    ind = eval_negatives(d.src, d.dst, sp.test, stream.items, "inductive", 42, sp.train)
    assert (ind != d.dst[sp.test]).all()
