"""Network topologies to simulate: synthetic hierarchies of any size, and Melbourne's CBD.

A ``Network`` is static for an episode: node types, real capacities, links with latency
and bandwidth, and the nodes where tasks originate. Dynamics (load, queues) live in the
environment.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from edge_allocator.profiles import PROFILES

#: Per-hop switching/processing delay, ms.
HOP_DELAY_MS = 0.5
#: Propagation in fibre, ms per km (about 2/3 of c).
PROPAGATION_MS_PER_KM = 0.005
#: Bandwidth of a task staying on its source node, Mbps (no network crossed).
LOCAL_BANDWIDTH_MBPS = 10_000.0
#: 125 EUA sites + 2 clouds.
MELBOURNE_NODES = 127


@dataclass
class Network:
    """A static topology. Arrays are indexed by node; links are undirected."""

    name: str
    node_type: np.ndarray  # [N] int64 in {0,1,2}
    capacity_gcps: np.ndarray  # [N] real compute speed (policies see only the type)
    busy_power_w: np.ndarray  # [N]
    links: np.ndarray  # [E, 2] int64
    link_latency_ms: np.ndarray  # [E]
    link_bandwidth_mbps: np.ndarray  # [E]
    sources: np.ndarray  # [S] node indices where tasks originate
    source_weights: np.ndarray  # [S] probability of each source

    @property
    def n(self) -> int:
        return int(self.node_type.shape[0])

    @cached_property
    def _latency_graph(self) -> csr_matrix:
        lat = np.concatenate([self.link_latency_ms, self.link_latency_ms])
        rows = np.concatenate([self.links[:, 0], self.links[:, 1]])
        cols = np.concatenate([self.links[:, 1], self.links[:, 0]])
        return csr_matrix((lat, (rows, cols)), shape=(self.n, self.n))

    @cached_property
    def _bandwidth_of(self) -> dict[tuple[int, int], float]:
        bw_of: dict[tuple[int, int], float] = {}
        for (a, b), bw in zip(self.links.tolist(), self.link_bandwidth_mbps.tolist()):
            bw_of[(a, b)] = bw_of[(b, a)] = max(bw, bw_of.get((a, b), 0.0))
        return bw_of

    def paths_from(self, src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shortest-latency path from ``src`` to every node: (latency ms, bottleneck
        bandwidth Mbps, hop count). Unreachable nodes get latency inf, bandwidth 0."""
        n = self.n
        # scipy-stubs type ``indices`` as array-like only; scipy takes a scalar index too
        dist, pred = dijkstra(self._latency_graph, indices=src,  # type: ignore[call-overload]
                              return_predecessors=True)
        bw_of = self._bandwidth_of
        bandwidth = np.zeros(n)
        hops = np.zeros(n, dtype=np.int64)
        order = np.argsort(dist)  # parents are settled before children
        bandwidth[src] = LOCAL_BANDWIDTH_MBPS
        for v in order:
            p = pred[v]
            if v == src or p < 0:
                continue
            bandwidth[v] = min(bandwidth[p], bw_of[(p, v)])
            hops[v] = hops[p] + 1
        bandwidth[~np.isfinite(dist)] = 0.0
        return dist, bandwidth, hops


def _capacities(node_type: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Real capacity varies +-40% around the nominal profile (hardware generations);
    busy power varies +-15%, so energy per cycle reveals part of the true speed."""
    nominal = np.array([PROFILES[t].capacity_gcps for t in node_type])
    power = np.array([PROFILES[t].busy_power_w for t in node_type])
    cap = nominal * rng.uniform(0.6, 1.4, size=len(node_type))
    return cap, power * rng.uniform(0.85, 1.15, size=len(node_type))


def _knn_links(pos: np.ndarray, idx: np.ndarray, k: int) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    if len(idx) < 2:
        return out
    d = np.linalg.norm(pos[idx][:, None] - pos[idx][None], axis=-1)
    np.fill_diagonal(d, np.inf)
    for i, row in enumerate(d):
        for j in np.argsort(row)[: min(k, len(idx) - 1)]:
            a, b = int(idx[i]), int(idx[j])
            out.add((min(a, b), max(a, b)))
    return out


def synthetic_network(n: int, rng: np.random.Generator,
                      tiers: tuple[int, int, int] | None = None) -> Network:
    """A random three-tier network of ``n`` nodes (5..1000+): gateways attach to their
    nearest fog node, fog nodes link to their 3 nearest fog peers and to every cloud.
    ``tiers`` = (gateways, fog, cloud) sets the split (at least one gateway and one fog
    node; their sum must be ``n``); by default about 30% fog and one cloud per 60 nodes."""
    if tiers is None:
        if n < 5:
            raise ValueError(f"synthetic_network: n={n} is too small; use n >= 5")
        n_cloud = max(1, n // 60)
        n_fog = max(2, int(round(0.3 * n)))
        n_gw = n - n_cloud - n_fog
    else:
        n_gw, n_fog, n_cloud = tiers
        if n_gw < 1 or n_fog < 1 or n_cloud < 0 or sum(tiers) != n:
            raise ValueError(f"synthetic_network: tiers={tiers} must be >= (1, 1, 0) and "
                             f"sum to n={n}")
    node_type = np.array([0] * n_gw + [1] * n_fog + [2] * n_cloud, dtype=np.int64)
    side_km = 2.0 * math.sqrt(n)
    pos = rng.uniform(0, side_km, size=(n, 2))
    gw, fog, cloud = (np.flatnonzero(node_type == t) for t in range(3))
    links: dict[tuple[int, int], tuple[float, float]] = {}

    def add(a: int, b: int, extra_ms: float, bw: float) -> None:
        km = float(np.linalg.norm(pos[a] - pos[b]))
        links[(min(a, b), max(a, b))] = (HOP_DELAY_MS + km * PROPAGATION_MS_PER_KM + extra_ms, bw)

    for g in gw:
        near = fog[np.argsort(np.linalg.norm(pos[fog] - pos[g], axis=1))]
        add(int(g), int(near[0]), rng.uniform(1, 8), rng.uniform(10, 100))  # wireless access
        if rng.random() < 0.3 and len(near) > 1:
            add(int(g), int(near[1]), rng.uniform(2, 12), rng.uniform(10, 60))
    for a, b in _knn_links(pos, fog, 3):
        add(a, b, rng.uniform(0.5, 3), rng.uniform(200, 1000))
    for f in fog:
        for c in cloud:
            add(int(f), int(c), rng.uniform(15, 60), rng.uniform(50, 400))  # WAN
    pairs = np.array(list(links.keys()), dtype=np.int64)
    lat = np.array([v[0] for v in links.values()])
    bw = np.array([v[1] for v in links.values()])
    cap, power = _capacities(node_type, rng)
    return Network(
        f"synthetic-{n}", node_type, cap, power, pairs, lat, bw,
        sources=gw, source_weights=np.full(len(gw), 1.0 / len(gw)),
    )


def _read_csv(name: str) -> list[dict[str, str]]:
    path = resources.files("edge_allocator") / "data" / "eua" / name
    # open(newline="") as the csv module wants; Traversable.open takes no newline argument
    with io.TextIOWrapper(path.open("rb"), encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Equirectangular projection to km: accurate to metres over a city centre."""
    lat0 = np.deg2rad(lat.mean())
    return np.stack([np.deg2rad(lon) * 6371.0 * np.cos(lat0), np.deg2rad(lat) * 6371.0], 1)


def melbourne_network(rng: np.random.Generator, n_cloud: int = 2) -> Network:
    """Melbourne CBD from the EUA dataset (Lai et al., ICSOC 2018): 125 real Optus sites.

    Micro/small cells ("ucell", "minicell", "small cell" in the site name) become
    gateways; the other sites are edge servers. Each site links to its 3 nearest sites
    (latency from distance plus a per-hop delay); edge servers reach ``n_cloud`` remote
    clouds over a WAN. Tasks come from the 816 user positions, each entering the network
    at its nearest site, so busy blocks send more tasks.
    """
    sites = _read_csv("site-optus-melbCBD.csv")
    users = _read_csv("users-melbcbd-generated.csv")
    lat = np.array([float(s["LATITUDE"]) for s in sites])
    lon = np.array([float(s["LONGITUDE"]) for s in sites])
    small = ("ucell", "minicell", "small cell", "smallcell", "micro")
    types = [0 if any(w in s["NAME"].lower() for w in small) else 1 for s in sites]
    pos = _km(lat, lon)
    n_sites = len(sites)
    node_type = np.array(types + [2] * n_cloud, dtype=np.int64)
    links: dict[tuple[int, int], tuple[float, float]] = {}
    for a, b in _knn_links(pos, np.arange(n_sites), 3):
        km = float(np.linalg.norm(pos[a] - pos[b]))
        fast = node_type[a] == 1 and node_type[b] == 1
        bw = rng.uniform(200, 1000) if fast else rng.uniform(20, 150)
        links[(a, b)] = (HOP_DELAY_MS + km * PROPAGATION_MS_PER_KM + rng.uniform(0.5, 3), bw)
    for c in range(n_sites, n_sites + n_cloud):
        for f in np.flatnonzero(node_type[:n_sites] == 1):
            links[(int(f), c)] = (rng.uniform(15, 60), rng.uniform(50, 400))
    ulat = np.array([float(u["Latitude"]) for u in users])
    ulon = np.array([float(u["Longitude"]) for u in users])
    upos = _km(np.concatenate([lat, ulat]), np.concatenate([lon, ulon]))[n_sites:]
    spos = _km(np.concatenate([lat, ulat]), np.concatenate([lon, ulon]))[:n_sites]
    nearest = np.argmin(np.linalg.norm(upos[:, None] - spos[None], axis=-1), axis=1)
    src, counts = np.unique(nearest, return_counts=True)
    cap, power = _capacities(node_type, rng)
    return Network(
        "melbourne",
        node_type,
        cap,
        power,
        np.array(list(links.keys()), dtype=np.int64),
        np.array([v[0] for v in links.values()]),
        np.array([v[1] for v in links.values()]),
        sources=src.astype(np.int64),
        source_weights=counts / counts.sum(),
    )
