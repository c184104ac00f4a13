"""Event streams as PyG `TemporalData`, with node ids shifted by +1 so that 0 is the padding id (spec §2.0).

Loaders: `from_events_csv` (tenfold's `events.csv`: header src,dst,t[,label|rating]), `from_edges_csv`
(the author's `name.edges` + `name.nodes` format, spec §3.1), `from_jodie` (PyG `JODIEDataset`, pitfall 17),
`preference_stream` (the synthetic generator of spec §7). All of them validate the stream: non-empty,
sorted by time, non-negative integer ids.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from tenfold.errors import DataError
from torch_geometric.data import TemporalData

__all__ = ["Stream", "from_events_csv", "from_edges_csv", "from_jodie", "preference_stream", "jodie_like_stream",
           "load_stream",
           "validate_stream"]


@dataclasses.dataclass
class Stream:
    """A temporal graph: `data` holds src, dst (1..N), t (float64, raw units), msg (edge features or None)
    and optionally y (event labels); `items` lists the item-side ids of a bipartite graph (else None)."""

    data: TemporalData
    num_nodes: int
    items: torch.Tensor | None = None
    name: str = ""

    @property
    def num_events(self) -> int:
        return int(self.data.src.numel())

    def head(self, n: int) -> Stream:
        """The first n events (chronological), e.g. for a CPU-sized slice."""
        d = self.data
        kw = {k: d[k][:n] for k in ("src", "dst", "t", "msg", "y") if k in d and d[k] is not None}
        return Stream(TemporalData(**kw), self.num_nodes, self.items, self.name)


def validate_stream(src, dst, t, where: str) -> None:
    if src.numel() == 0:
        raise DataError(f"{where}: the graph has no events; a temporal graph needs at least one (src, dst, t) row")
    if not (src.numel() == dst.numel() == t.numel()):
        raise DataError(f"{where}: src, dst and t have different lengths")
    if not torch.isfinite(t).all():
        raise DataError(f"{where}: timestamps contain NaN or inf")
    if (t[1:] < t[:-1]).any():
        i = int(torch.nonzero(t[1:] < t[:-1])[0]) + 1
        raise DataError(f"{where}: events are not sorted by time (row {i}: t={float(t[i])} < previous "
                        f"{float(t[i - 1])}); sort the file by t (stable, keep file order for ties)")
    if (src < 0).any() or (dst < 0).any():
        raise DataError(f"{where}: negative node ids; ids must be 0..N-1 integers")


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path} not found")
    with open(path) as f:
        header = f.readline().strip().split(",")
    try:
        with warnings.catch_warnings():  # an empty file is reported by validate_stream instead
            warnings.simplefilter("ignore", UserWarning)
            arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: not a numeric CSV ({str(e).splitlines()[0]})") from None
    if arr.size == 0:
        arr = np.zeros((0, len(header)))
    return header, arr


def _ids(col: np.ndarray, where: str) -> torch.Tensor:
    if col.size and not np.all(col == np.round(col)):
        raise DataError(f"{where}: node ids must be integers")
    return torch.from_numpy(col.astype(np.int64))


def from_events_csv(path: str | os.PathLike, use_rating: bool = False) -> Stream:
    """tenfold's `events.csv`. Node ids 0..N-1 become 1..N. No node/edge features (as in the paper's
    network-repository graphs); `use_rating=True` turns a `rating` column into a 1-d edge feature."""
    path = Path(path)
    header, arr = _read_csv(path)
    if header[:3] != ["src", "dst", "t"]:
        raise DataError(f"{path}: header must start with src,dst,t (got {','.join(header)})")
    src, dst = _ids(arr[:, 0], str(path)), _ids(arr[:, 1], str(path))
    t = torch.from_numpy(arr[:, 2].copy())
    validate_stream(src, dst, t, str(path))
    kw = dict(src=src + 1, dst=dst + 1, t=t)
    if "label" in header:
        kw["y"] = torch.from_numpy(arr[:, header.index("label")].astype(np.int64))
    if use_rating and "rating" in header:
        kw["msg"] = torch.from_numpy(arr[:, header.index("rating")]).float()[:, None]
    n = int(max(src.max(), dst.max())) + 1
    return Stream(TemporalData(**kw), n, None, path.parent.name)


def from_edges_csv(edges_path: str | os.PathLike, nodes_path: str | os.PathLike | None = None) -> Stream:
    """The author's format: `name.edges` (from_node_id,to_node_id,timestamp,state_label[,feat…]) and
    `name.nodes` (node_id,id_map,role,label). Ids are mapped through id_map, then +1. Two distinct roles
    (user/item or 0/1) make the graph bipartite: evaluation negatives then come from the item side."""
    edges_path = Path(edges_path)
    _, arr = _read_csv(edges_path)
    if arr.shape[1] < 4:
        raise DataError(f"{edges_path}: expected columns from_node_id,to_node_id,timestamp,state_label[,feat...]")
    src, dst = _ids(arr[:, 0], str(edges_path)), _ids(arr[:, 1], str(edges_path))
    t = torch.from_numpy(arr[:, 2].copy())
    items = None
    if nodes_path is not None:
        nodes_path = Path(nodes_path)
        if not nodes_path.is_file():
            raise DataError(f"{nodes_path} not found")
        raw = np.genfromtxt(nodes_path, delimiter=",", skip_header=1, dtype=str, ndmin=2)
        ids, id_map, role = raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int64), raw[:, 2]
        lut = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
        lut[ids] = id_map
        s, d = src.numpy(), dst.numpy()
        if s.max() >= lut.size or d.max() >= lut.size or (lut[s] < 0).any() or (lut[d] < 0).any():
            raise DataError(f"{edges_path}: an edge uses a node id missing from {nodes_path}")
        src, dst = torch.from_numpy(lut[s]), torch.from_numpy(lut[d])
        roles = sorted(set(role.tolist()))
        if len(roles) == 2:
            item_role = "item" if "item" in roles else roles[1]
            items = torch.from_numpy(np.unique(id_map[role == item_role])) + 1
    validate_stream(src, dst, t, str(edges_path))
    kw = dict(src=src + 1, dst=dst + 1, t=t, y=torch.from_numpy(arr[:, 3].astype(np.int64)))
    if arr.shape[1] > 4:
        kw["msg"] = torch.from_numpy(arr[:, 4:]).float()
    n = int(max(src.max(), dst.max())) + 1
    return Stream(TemporalData(**kw), n, items, edges_path.stem)


def from_jodie(dataset) -> Stream:
    """A PyG `JODIEDataset` (or its `TemporalData`): 0-based ids with destinations offset after the sources.
    Shift by +1 (pitfall 17); destinations form the item side; `msg` are the 172-d LIWC features, `y` the
    state labels."""
    d = dataset[0] if not isinstance(dataset, TemporalData) else dataset
    src, dst, t = d.src.long(), d.dst.long(), d.t.double()
    validate_stream(src, dst, t, "JODIE data")
    kw = dict(src=src + 1, dst=dst + 1, t=t)
    if getattr(d, "msg", None) is not None:
        kw["msg"] = d.msg.float()
    if getattr(d, "y", None) is not None:
        kw["y"] = d.y.long()
    n = int(max(src.max(), dst.max())) + 1
    return Stream(TemporalData(**kw), n, torch.unique(dst) + 1, "jodie")


def preference_stream(num_users: int = 100, num_items: int = 100, num_events: int = 4000, p_repeat: float = 0.7,
                      recency_frac: float = 0.5, communities: int = 5, seed: int = 0):
    """Spec §7 generator: bipartite user→item stream, t ~ sorted U(0, 1000). A user with history repeats a
    past item with prob. p_repeat — "recency" users (the first recency_frac of users) one of their last 3
    items, "uniform" users any past item — else picks a random item of community (u mod communities).
    Returns (Stream, is_recency_user bool tensor indexed by the shifted node id)."""
    if num_events <= 0 or num_users <= 0 or num_items <= 0:
        raise DataError("preference_stream needs positive num_users, num_items and num_events")
    rng = np.random.RandomState(seed)
    t = np.sort(rng.uniform(0, 1000, num_events))
    n_rec = int(round(recency_frac * num_users))
    hist: list[list[int]] = [[] for _ in range(num_users)]
    item_comm = np.arange(num_items) % communities
    comm_items = [np.nonzero(item_comm == c)[0] for c in range(communities)]
    src = rng.randint(0, num_users, num_events)
    dst = np.empty(num_events, dtype=np.int64)
    for i, u in enumerate(src):
        h = hist[u]
        if h and rng.rand() < p_repeat:
            item = h[-1 - rng.randint(min(3, len(h)))] if u < n_rec else h[rng.randint(len(h))]
        else:
            pool = comm_items[u % communities]
            item = int(pool[rng.randint(len(pool))])
        h.append(item)
        dst[i] = item
    data = TemporalData(src=torch.from_numpy(src) + 1, dst=torch.from_numpy(dst + num_users) + 1,
                        t=torch.from_numpy(t))
    is_recency = torch.zeros(num_users + num_items + 1, dtype=torch.bool)
    is_recency[1:n_rec + 1] = True
    items = torch.arange(num_users + 1, num_users + num_items + 1)
    return Stream(data, num_users + num_items, items, "synthetic"), is_recency


def jodie_like_stream(num_events: int = 157_474, num_users: int = 8_227, num_items: int = 1_000, edge_dim: int = 172,
                      p_repeat: float = 0.6, zipf: float = 0.9, pareto: float = 1.5, span_s: int = 30 * 86_400,
                      seed: int = 0) -> Stream:
    """Synthetic stand-in with the JODIE graphs' heavy tails (Wikipedia: 157k events, 9.2k nodes; Reddit: 672k
    events, 11k nodes, max degree ≈ 58.7k), for scale measurements: user activity ∝ Pareto(`pareto`) weights,
    fresh items ∝ rank^-`zipf` (the top item takes ≈ 8 % of all events at 1,000 items, ≈ 56k of 700k), and with
    prob. `p_repeat` a user repeats the item of their previous event. Integer-second times over `span_s`;
    Gaussian edge features of width `edge_dim` (0: featureless). Fully vectorised (pointer jumping resolves
    chains of repeats)."""
    if min(num_events, num_users, num_items) <= 0:
        raise DataError("jodie_like_stream needs positive num_events, num_users and num_items")
    rng = np.random.RandomState(seed)
    act = rng.pareto(pareto, num_users) + 1e-3
    src = rng.choice(num_users, num_events, p=act / act.sum())
    pop = 1.0 / np.arange(1, num_items + 1) ** zipf
    fresh = rng.choice(num_items, num_events, p=pop / pop.sum())
    repeat = rng.rand(num_events) < p_repeat
    order = np.argsort(src, kind="stable")  # event index order is chronological
    same = src[order][1:] == src[order][:-1]
    parent = np.arange(num_events)
    take = order[1:][same]
    parent[take] = np.where(repeat[take], order[:-1][same], take)
    while True:  # follow repeat chains to the event that drew a fresh item
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    dst = fresh[parent]
    t = np.sort(rng.randint(0, span_s, num_events)).astype(np.float64)
    data = TemporalData(src=torch.from_numpy(src) + 1, dst=torch.from_numpy(dst + num_users) + 1,
                        t=torch.from_numpy(t))
    if edge_dim:
        data.msg = torch.randn(num_events, edge_dim, generator=torch.Generator().manual_seed(seed))
    items = torch.arange(num_users + 1, num_users + num_items + 1)
    return Stream(data, num_users + num_items, items, "jodie-like")


def load_stream(name: str, root: str | os.PathLike, fmt: str = "events", path: str | None = None,
                use_rating: bool = False, synthetic: dict | None = None) -> Stream:
    """Dispatch on the config's data section. Missing files raise DataError saying where to put them."""
    if fmt == "synthetic":
        return preference_stream(**(synthetic or {}))[0]
    if fmt == "jodie":
        try:
            from torch_geometric.datasets import JODIEDataset
        except ImportError as e:  # pragma: no cover
            raise DataError(f"torch_geometric.datasets.JODIEDataset unavailable: {e}") from None
        jroot = Path(path) if path else Path(root) / "jodie"
        if not (jroot / name.lower() / "raw").is_dir() and not (jroot / name / "raw").is_dir():
            raise DataError(f"JODIE '{name}' not found under {jroot}; download it once with "
                            f"torch_geometric.datasets.JODIEDataset('{jroot}', '{name}') on a machine with internet")
        return from_jodie(JODIEDataset(str(jroot), name))
    if fmt == "edges":
        base = Path(path) if path else Path(root) / name / name
        return from_edges_csv(Path(str(base) + ".edges"),
                              Path(str(base) + ".nodes") if Path(str(base) + ".nodes").is_file() else None)
    p = Path(path) if path else Path(root) / name / "events.csv"
    if not p.is_file():
        raise DataError(f"{p} not found; put the graph's events.csv (header src,dst,t) there, set "
                        f"$TENFOLD_DATA / --data-root to the folder that holds '{name}/', or pass data.path=FILE")
    return from_events_csv(p, use_rating=use_rating)
