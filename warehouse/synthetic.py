"""Deterministic synthetic GPU fleet: training calendar, hourly truth and canonical telemetry.

Tests and benchmarks need a fleet whose idle capacity is *caused* by planned internal training
runs, so that a forecaster fed the calendar can be shown to beat one that is not. The model:

* calendar: per pool, back-to-back planned runs (exponential gaps, 12 h..4 d long, 40-95 % of
  the pool), each with a final plan version known 1..10 days ahead, sometimes an earlier
  version with another start and size, and sometimes a cancellation (the run never happens);
* truth: hourly busy GPUs = GPUs of the runs of the newest plan + a small interactive
  background (daily peak at 14:00 UTC, half on weekends, AR(1) noise), clipped and rounded;
* telemetry: every `interval_s` per node, the pool's busy GPUs filled node 0 first, utilization
  derived from allocation, minus random node-hour outages and one silent gap per pool.

Everything is a pure function of `FleetSpec` (numpy `SeedSequence` streams keyed by seed,
purpose, pool and day), vectorised over nodes x samples, so the same spec gives byte-identical
tables and files, and a single day can be regenerated without the others.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "TELEMETRY_SCHEMA",
    "FleetSpec",
    "FleetFiles",
    "pool_names",
    "node_ids",
    "pool_capacity",
    "generate_calendar",
    "generate_pool_busy",
    "generate_telemetry",
    "write_fleet",
]

#: Canonical telemetry format (DESIGN.md), exact names and types.
TELEMETRY_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("node_id", pa.string()),
        ("pool", pa.string()),
        ("gpu_model", pa.string()),
        ("gpus_total", pa.int32()),
        ("gpus_allocated", pa.int32()),
        ("gpu_util", pa.float64()),
        ("source", pa.string()),
    ]
)

SOURCE = "synthetic"

# Model constants (kept here, not in FleetSpec, so that a spec stays a small fleet description).
_RUN_GAP_MEAN_H = 30.0  # mean idle gap between consecutive runs of a pool
_RUN_HOURS = (12, 96)  # run duration, inclusive, whole hours
_RUN_SHARE = (0.40, 0.95)  # share of pool capacity a run takes
_LEAD_DAYS = (1, 10)  # final plan known this long before the run starts
_EARLIER_SHARE = 0.30  # runs that also have an earlier, different plan version
_EARLIER_SHIFT_H = (6, 24)  # |start shift| of that earlier version
_EARLIER_LEAD_DAYS = (1, 7)  # earlier version known this much before the final one
_CANCEL_SHARE = 0.08  # runs whose newest version is a cancellation
_WARMUP_H = _RUN_HOURS[1]  # runs start this long before `start`, so day 0 is not empty
_BG_LEVEL = 0.08  # background interactive jobs, share of capacity
_BG_DAILY_AMP = 0.6
_BG_PEAK_HOUR = 14
_BG_WEEKEND = 0.5
_BG_NOISE_SD = 0.02  # marginal sd of the AR(1) noise, share of capacity
_BG_AR_PHI = 0.8
_UTIL_SD = 3.0  # util noise (percentage points) on allocated nodes
_IDLE_UTIL_MAX = 3.0

# Independent random streams: (seed, purpose, pool[, day]) -> Generator.
_S_CALENDAR, _S_BACKGROUND, _S_GAP, _S_TELEMETRY = 1, 2, 3, 4

_US = 1_000_000
_HOUR_US = 3600 * _US


@dataclass(frozen=True)
class FleetSpec:
    """A synthetic fleet: pools of identical nodes, observed for `days` from `start`.

    `plan_horizon_days` extends the calendar past the telemetry window so a forecast made at
    the end of the data still sees the runs planned for its horizon.
    """

    pools: int = 4
    nodes_per_pool: int | tuple[int, ...] = 16  # int or one per pool
    gpus_per_node: int = 8
    gpu_models: tuple[str, ...] = ("H100", "A100", "L40S", "V100")  # cycled over pools
    start: datetime = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
    days: int = 28
    interval_s: int = 60
    seed: int = 0
    outage_rate: float = 0.002  # share of node-hours with no telemetry at all
    pool_gap_hours: int = 2  # per pool, one gap of this many hours where the pool is silent (0 = none)
    plan_horizon_days: int = 14  # calendar runs planned past the end of the telemetry window
    plan_lead_days: tuple[int, int] = _LEAD_DAYS  # final plan known this long before a run starts (uniform)

    def __post_init__(self) -> None:
        if self.pools < 1:
            raise ValueError("pools must be >= 1")
        nodes = self.nodes_per_pool
        if isinstance(nodes, tuple):
            if len(nodes) != self.pools:
                raise ValueError(f"nodes_per_pool has {len(nodes)} entries for {self.pools} pools")
            if any(int(n) < 1 for n in nodes):
                raise ValueError("every pool needs >= 1 node")
        elif int(nodes) < 1:
            raise ValueError("nodes_per_pool must be >= 1")
        if self.gpus_per_node < 1:
            raise ValueError("gpus_per_node must be >= 1")
        if not self.gpu_models:
            raise ValueError("gpu_models must not be empty")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if self.start.timestamp() % 3600 != 0:
            raise ValueError("start must be on a whole hour")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if not 0 <= self.plan_lead_days[0] <= self.plan_lead_days[1]:
            raise ValueError("plan_lead_days must be (low, high) with 0 <= low <= high")
        if self.interval_s < 1 or 86400 % self.interval_s != 0:
            raise ValueError("interval_s must divide one day (86400 s)")
        if not 0.0 <= self.outage_rate < 1.0:
            raise ValueError("outage_rate must be in [0, 1)")
        if self.pool_gap_hours < 0:
            raise ValueError("pool_gap_hours must be >= 0")
        if self.plan_horizon_days < 0:
            raise ValueError("plan_horizon_days must be >= 0")

    @property
    def hours(self) -> int:
        """Hours in the telemetry window."""
        return self.days * 24

    @property
    def samples_per_day(self) -> int:
        """Telemetry samples per node per day."""
        return 86400 // self.interval_s

    def nodes(self, pool: int) -> int:
        """Number of nodes of pool index `pool`."""
        n = self.nodes_per_pool
        return int(n[pool]) if isinstance(n, tuple) else int(n)

    def gpu_model(self, pool: int) -> str:
        """GPU model of pool index `pool` (models cycle over pools)."""
        return self.gpu_models[pool % len(self.gpu_models)]


@dataclass(frozen=True)
class FleetFiles:
    """What `write_fleet` wrote."""

    out_dir: Path
    telemetry: tuple[Path, ...]
    calendar: Path
    fleet: Path
    rows: int

    @property
    def telemetry_bytes(self) -> int:
        """Total size of the telemetry parquet files."""
        return sum(p.stat().st_size for p in self.telemetry)


# --------------------------------------------------------------------------- names


def pool_names(spec: FleetSpec) -> list[str]:
    """Pool names like "pool-00-h100": index first so they sort in spec order."""
    return [f"pool-{p:02d}-{spec.gpu_model(p).lower()}" for p in range(spec.pools)]


def node_ids(spec: FleetSpec, pool: int) -> list[str]:
    """Node ids of one pool, like "pool-00-h100/n003" (node 0 is filled first)."""
    name = pool_names(spec)[pool]
    width = max(3, len(str(spec.nodes(pool) - 1)))
    return [f"{name}/n{i:0{width}d}" for i in range(spec.nodes(pool))]


def pool_capacity(spec: FleetSpec) -> np.ndarray:
    """GPUs per pool (nodes x gpus_per_node), int64 array of length `pools`."""
    return np.array([spec.nodes(p) * spec.gpus_per_node for p in range(spec.pools)], dtype=np.int64)


def _rng(spec: FleetSpec, *key: int) -> np.random.Generator:
    # SeedSequence spawn keys give independent streams per purpose/pool/day, so one day (or
    # one pool) can be generated alone and equals the same slice of the whole fleet.
    return np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=key))


def _start_us(spec: FleetSpec) -> int:
    return int(round(spec.start.timestamp())) * _US


def _to_utc(us: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(us, dtype=np.int64).astype("datetime64[us]")).dt.tz_localize("UTC")


# --------------------------------------------------------------------------- calendar


def _pool_runs(spec: FleetSpec, pool: int) -> dict[str, np.ndarray]:
    """Final-version runs of one pool, in hours relative to `start`, plus version draws.

    Draws come in fixed-size blocks from the pool's own stream, so a longer window only
    appends runs: the calendar of the first N days does not depend on `days`.
    """
    rng = _rng(spec, _S_CALENDAR, pool)
    n_nodes = spec.nodes(pool)
    lo = max(1, math.ceil(_RUN_SHARE[0] * n_nodes))
    hi = max(lo, math.floor(_RUN_SHARE[1] * n_nodes))
    horizon_h = (spec.days + spec.plan_horizon_days) * 24
    block, blocks = 32, []
    t = -_WARMUP_H
    while t < horizon_h:
        b = {
            "gap": 1 + np.floor(rng.exponential(_RUN_GAP_MEAN_H - 1, block)).astype(np.int64),
            "dur": rng.integers(_RUN_HOURS[0], _RUN_HOURS[1] + 1, block),
            "nodes": rng.integers(lo, hi + 1, block),
            "priority": rng.integers(1, 4, block),
            "lead_min": rng.integers(spec.plan_lead_days[0] * 1440, spec.plan_lead_days[1] * 1440 + 1, block),
            "earlier": rng.random(block) < _EARLIER_SHARE,
            "shift_h": rng.integers(_EARLIER_SHIFT_H[0], _EARLIER_SHIFT_H[1] + 1, block)
            * rng.choice(np.array([-1, 1]), block),
            "nodes_step": rng.integers(1, max(hi - lo, 1) + 1, block),
            "earlier_lead_min": rng.integers(
                _EARLIER_LEAD_DAYS[0] * 1440, _EARLIER_LEAD_DAYS[1] * 1440 + 1, block
            ),
            "cancelled": rng.random(block) < _CANCEL_SHARE,
            "cancel_pos": rng.random(block),
        }
        # Back to back: start_k = end_{k-1} + gap_k.
        b["start_h"] = t + np.cumsum(b["gap"]) + np.cumsum(b["dur"]) - b["dur"]
        t = int(b["start_h"][-1] + b["dur"][-1])
        blocks.append(b)
    runs = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    keep = runs["start_h"] < horizon_h
    runs = {k: v[keep] for k, v in runs.items()}
    # An earlier version asks for a different size whenever the pool allows one.
    span = hi - lo + 1
    runs["earlier_nodes"] = np.where(
        span > 1, lo + (runs["nodes"] - lo + runs["nodes_step"]) % span, runs["nodes"]
    )
    return runs


def generate_calendar(spec: FleetSpec) -> pd.DataFrame:
    """Training-cycle calendar: one row per version of each planned run (DESIGN.md contract).

    Columns run_id, pool, start, end, gpus, priority, status ("planned" | "cancelled"),
    known_at; times tz-aware UTC. The newest version (max known_at) of a run is what happens;
    a run whose newest version is cancelled does not run. Sorted by pool, run_id, known_at.
    """
    names = pool_names(spec)
    s0 = _start_us(spec)
    frames = []
    for p, name in enumerate(names):
        r = _pool_runs(spec, p)
        n = len(r["start_h"])
        k = np.arange(n)
        run_id = np.array([f"run-{name}-{i:04d}" for i in k], dtype=object)
        start = s0 + r["start_h"] * _HOUR_US
        end = start + r["dur"] * _HOUR_US
        gpus = r["nodes"] * spec.gpus_per_node
        known = start - r["lead_min"] * 60 * _US
        # final planned version
        parts = [dict(i=k, start=start, end=end, gpus=gpus, status=0, known=known)]
        # earlier version: another start and size, known earlier still
        e = np.flatnonzero(r["earlier"])
        e_start = start[e] + r["shift_h"][e] * _HOUR_US
        parts.append(
            dict(
                i=e,
                start=e_start,
                end=e_start + r["dur"][e] * _HOUR_US,
                gpus=r["earlier_nodes"][e] * spec.gpus_per_node,
                status=0,
                known=known[e] - r["earlier_lead_min"][e] * 60 * _US,
            )
        )
        # cancellation: newest version, known between the final plan and one hour before start
        c = np.flatnonzero(r["cancelled"])
        window_min = (start[c] - _HOUR_US - known[c]) // (60 * _US)
        c_known = known[c] + (1 + np.floor(r["cancel_pos"][c] * window_min)).astype(np.int64) * 60 * _US
        parts.append(dict(i=c, start=start[c], end=end[c], gpus=gpus[c], status=1, known=c_known))
        idx = np.concatenate([q["i"] for q in parts])
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id[idx],
                    "pool": name,
                    "start": np.concatenate([q["start"] for q in parts]),
                    "end": np.concatenate([q["end"] for q in parts]),
                    "gpus": np.concatenate([q["gpus"] for q in parts]).astype(np.int64),
                    "priority": r["priority"][idx].astype(np.int64),
                    "status": np.concatenate(
                        [np.full(len(q["i"]), q["status"], dtype=np.int8) for q in parts]
                    ),
                    "known": np.concatenate([q["known"] for q in parts]),
                }
            )
        )
    cal = pd.concat(frames, ignore_index=True).sort_values(["pool", "run_id", "known"], kind="stable")
    out = pd.DataFrame(
        {
            "run_id": cal["run_id"].astype("str").to_numpy(),
            "pool": cal["pool"].astype("str").to_numpy(),
            "start": _to_utc(cal["start"].to_numpy()),
            "end": _to_utc(cal["end"].to_numpy()),
            "gpus": cal["gpus"].to_numpy(),
            "priority": cal["priority"].to_numpy(),
            "status": np.where(cal["status"].to_numpy() == 1, "cancelled", "planned"),
            "known_at": _to_utc(cal["known"].to_numpy()),
        }
    )
    out["run_id"] = out["run_id"].astype("str")
    out["pool"] = out["pool"].astype("str")
    out["status"] = out["status"].astype("str")
    return out


# --------------------------------------------------------------------------- hourly truth


def _newest_plan(calendar: pd.DataFrame) -> pd.DataFrame:
    """Newest version of every run, without the runs whose newest version is cancelled."""
    newest = calendar.sort_values(["run_id", "known_at"], kind="stable").drop_duplicates("run_id", keep="last")
    return newest[newest["status"] != "cancelled"]


def _planned_matrix(spec: FleetSpec, calendar: pd.DataFrame) -> np.ndarray:
    """(pools, hours) GPUs of the newest plan's runs active in each hour (any overlap counts)."""
    plan = _newest_plan(calendar)
    H = spec.hours
    out = np.zeros((spec.pools, H + 1), dtype=np.int64)
    pool_idx = {n: i for i, n in enumerate(pool_names(spec))}
    p = plan["pool"].map(pool_idx)
    if p.isna().any():
        raise ValueError(f"calendar has unknown pools: {sorted(set(plan['pool'][p.isna()]))}")
    s0 = _start_us(spec)
    start_us = plan["start"].dt.as_unit("us").astype("int64").to_numpy()
    end_us = plan["end"].dt.as_unit("us").astype("int64").to_numpy()
    s = np.clip(np.floor_divide(start_us - s0, _HOUR_US), 0, H)
    e = np.clip(-np.floor_divide(-(end_us - s0), _HOUR_US), 0, H)  # ceil
    ok = e > s
    pi = p.to_numpy(dtype=np.int64)[ok]
    g = plan["gpus"].to_numpy(dtype=np.int64)[ok]
    # difference array + cumsum: each run adds its GPUs over [s, e)
    np.add.at(out, (pi, s[ok]), g)
    np.add.at(out, (pi, e[ok]), -g)
    return np.cumsum(out, axis=1)[:, :H]


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) with marginal sd `sd`, vectorised in blocks (no BLAS, so bit-stable)."""
    e = rng.standard_normal(n)
    u = e * sd * math.sqrt(1.0 - phi * phi)
    u[0] = e[0] * sd
    L = 64  # phi**-63 stays small enough for exact-enough scaled cumsums
    m = -(-n // L)
    U = np.zeros(m * L)
    U[:n] = u
    U = U.reshape(m, L)
    j = np.arange(L)
    # within block: x_j = sum_{k<=j} phi^(j-k) u_k = phi^j * cumsum(u_k * phi^-k)
    X = np.cumsum(U * phi ** (-j), axis=1) * phi**j
    carry_w = phi ** (j + 1)
    for b in range(1, m):  # loop over blocks only (n / 64 iterations)
        X[b] += carry_w * X[b - 1, -1]
    return X.ravel()[:n]


def _busy_matrix(spec: FleetSpec, calendar: pd.DataFrame) -> np.ndarray:
    """(pools, hours) true busy GPUs: planned runs + interactive background, int64."""
    planned = _planned_matrix(spec, calendar)
    cap = pool_capacity(spec)
    hours = pd.date_range(spec.start, periods=spec.hours, freq="h", tz="UTC")
    hod = hours.hour.to_numpy()
    weekend = hours.dayofweek.to_numpy() >= 5
    shape = (
        _BG_LEVEL
        * (1.0 + _BG_DAILY_AMP * np.cos(2 * np.pi * (hod - _BG_PEAK_HOUR) / 24.0))
        * np.where(weekend, _BG_WEEKEND, 1.0)
    )
    busy = np.empty_like(planned)
    for p in range(spec.pools):
        noise = _ar1(_rng(spec, _S_BACKGROUND, p), spec.hours, _BG_AR_PHI, _BG_NOISE_SD)
        bg = cap[p] * (shape + noise)
        busy[p] = np.clip(np.rint(planned[p] + bg), 0, cap[p]).astype(np.int64)
    return busy


def generate_pool_busy(spec: FleetSpec, calendar: pd.DataFrame | None = None) -> pd.DataFrame:
    """The truth at hourly grain, Nixtla long format: unique_id (pool), ds, gpus_total, busy_gpus.

    busy_gpus is what every node's telemetry in that hour adds up to (before outages), so it
    is the exact target a forecaster of pool_hourly.gpus_busy should recover.
    """
    if calendar is None:
        calendar = generate_calendar(spec)
    busy = _busy_matrix(spec, calendar)
    cap = pool_capacity(spec)
    H = spec.hours
    ds_us = _start_us(spec) + np.arange(H, dtype=np.int64) * _HOUR_US
    return pd.DataFrame(
        {
            "unique_id": pd.Series(np.repeat(pool_names(spec), H), dtype="str"),
            "ds": _to_utc(np.tile(ds_us, spec.pools)),
            "gpus_total": np.repeat(cap, H),
            "busy_gpus": busy.ravel(),
        }
    )


# --------------------------------------------------------------------------- telemetry


def _silent_hours(spec: FleetSpec) -> np.ndarray:
    """(pools, hours) True where the whole pool is silent (its one gap)."""
    H = spec.hours
    out = np.zeros((spec.pools, H), dtype=bool)
    g = min(spec.pool_gap_hours, H)
    if g > 0:
        for p in range(spec.pools):
            s = int(_rng(spec, _S_GAP, p).integers(0, H - g + 1))
            out[p, s : s + g] = True
    return out


def _const_strings(value: str, n: int) -> pa.Array:
    """n copies of one string, built from buffers (no per-row Python objects)."""
    b = value.encode()
    offsets = (np.arange(n + 1, dtype=np.int32) * len(b)).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b * n))


def _day_table(
    spec: FleetSpec, day: int, busy: np.ndarray, silent: np.ndarray
) -> tuple[pa.Table, np.ndarray, list[str]]:
    """One day of canonical rows (ordered pool, node, ts) + row offsets per node + node ids."""
    S = spec.samples_per_day
    G = spec.gpus_per_node
    hour_of_sample = (np.arange(S, dtype=np.int64) * spec.interval_s) // 3600
    day_us = _start_us(spec) + day * 24 * _HOUR_US
    ts_of_sample = day_us + np.arange(S, dtype=np.int64) * spec.interval_s * _US
    names = pool_names(spec)
    ts_l, node_l, alloc_l, util_l, counts_l, node_names = [], [], [], [], [], []
    node_base = 0
    for p in range(spec.pools):
        N = spec.nodes(p)
        rng = _rng(spec, _S_TELEMETRY, p, day)
        b = busy[p, day * 24 : day * 24 + 24]  # (24,)
        alloc_h = np.clip(b[None, :] - G * np.arange(N, dtype=np.int64)[:, None], 0, G)  # (N, 24)
        keep_h = ~(rng.random((N, 24)) < spec.outage_rate) & ~silent[p, day * 24 : day * 24 + 24][None, :]
        z = rng.standard_normal((N, S))
        alloc = alloc_h[:, hour_of_sample]  # (N, S)
        keep = keep_h[:, hour_of_sample]
        util = np.where(
            alloc == 0,
            np.minimum(np.abs(z), _IDLE_UTIL_MAX),
            35.0 + 60.0 * alloc / G + _UTIL_SD * z,
        )
        # one decimal like exporters report it; also lets Parquet dictionary-encode the column
        util = np.round(np.clip(util, 0.0, 100.0), 1)
        flat = np.flatnonzero(keep.ravel())
        node_local = flat // S
        ts_l.append(ts_of_sample[flat % S])
        node_l.append((node_base + node_local).astype(np.int32))
        alloc_l.append(alloc.ravel()[flat].astype(np.int32))
        util_l.append(util.ravel()[flat])
        counts_l.append(keep.sum(axis=1))
        node_names += node_ids(spec, p)
        node_base += N
    node_idx = np.concatenate(node_l)
    n = len(node_idx)
    pool_of_node = np.repeat(np.arange(spec.pools, dtype=np.int32), [spec.nodes(p) for p in range(spec.pools)])
    table = pa.Table.from_arrays(
        [
            pa.array(np.concatenate(ts_l), type=TELEMETRY_SCHEMA.field("ts").type),
            pc.take(pa.array(node_names, pa.string()), pa.array(node_idx)),
            pc.take(pa.array(names, pa.string()), pa.array(pool_of_node[node_idx])),
            pc.take(
                pa.array([spec.gpu_model(p) for p in range(spec.pools)], pa.string()),
                pa.array(pool_of_node[node_idx]),
            ),
            pa.array(np.full(n, G, dtype=np.int32)),
            pa.array(np.concatenate(alloc_l)),
            pa.array(np.concatenate(util_l)),
            _const_strings(SOURCE, n),
        ],
        schema=TELEMETRY_SCHEMA,
    )
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts_l))])
    return table, offsets, node_names


def _day_tables(spec: FleetSpec, calendar: pd.DataFrame | None) -> Iterator[tuple[int, pa.Table, np.ndarray, list[str]]]:
    if calendar is None:
        calendar = generate_calendar(spec)
    busy = _busy_matrix(spec, calendar)
    silent = _silent_hours(spec)
    for day in range(spec.days):
        yield (day, *_day_table(spec, day, busy, silent))


def generate_telemetry(spec: FleetSpec, calendar: pd.DataFrame | None = None) -> Iterator[pa.Table]:
    """Canonical telemetry, one Arrow table per day (rows ordered pool, node, ts).

    Per hour, node i has min(max(busy - gpus_per_node*i, 0), gpus_per_node) GPUs allocated;
    every sample of the hour repeats it. Outage node-hours and the pool gap emit no rows.
    """
    for _, table, _, _ in _day_tables(spec, calendar):
        yield table


# --------------------------------------------------------------------------- files


def _day_label(spec: FleetSpec, day: int) -> str:
    d = spec.start.astimezone(timezone.utc) + timedelta(days=day)
    return d.strftime("%Y-%m-%d") if d.hour == 0 else d.strftime("%Y-%m-%dT%HZ")


def _write_table(table: pa.Table, path: Path, compression: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression=compression)
    os.replace(tmp, path)  # a reader never sees a half-written file


def write_fleet(
    spec: FleetSpec,
    out_dir: Path,
    file_per: Literal["day", "single", "node-day"] = "day",
    compression: str = "zstd",
) -> FleetFiles:
    """Write the fleet as an operator would deliver it.

    out_dir/telemetry/ holds canonical Parquet: one file per day (`2026-01-05.parquet`), one
    file for everything (`telemetry.parquet`, a row group per day) or one per node and day
    (`2026-01-05/pool-00-h100/n003.parquet`). Parquet files under telemetry/ that this spec
    did not write are removed, so the directory always matches the spec. Also writes
    calendar.csv (ISO-8601 UTC times) and fleet.csv (pool, gpu_model, nodes, gpus_per_node).
    """
    if file_per not in ("day", "single", "node-day"):
        raise ValueError(f"file_per must be 'day', 'single' or 'node-day', not {file_per!r}")
    out_dir = Path(out_dir)
    tdir = out_dir / "telemetry"
    tdir.mkdir(parents=True, exist_ok=True)
    calendar = generate_calendar(spec)
    written: list[Path] = []
    rows = 0
    if file_per == "single":
        path = tdir / "telemetry.parquet"
        tmp = path.with_name(path.name + ".tmp")
        with pq.ParquetWriter(tmp, TELEMETRY_SCHEMA, compression=compression) as w:
            for _, table, _, _ in _day_tables(spec, calendar):
                w.write_table(table)
                rows += table.num_rows
        os.replace(tmp, path)
        written.append(path)
    else:
        for day, table, offsets, names in _day_tables(spec, calendar):
            label = _day_label(spec, day)
            rows += table.num_rows
            if file_per == "day":
                path = tdir / f"{label}.parquet"
                _write_table(table, path, compression)
                written.append(path)
            else:
                for i, node in enumerate(names):
                    lo, hi = int(offsets[i]), int(offsets[i + 1])
                    if hi == lo:
                        continue  # a node silent all day delivers no file
                    pool, short = node.split("/")
                    path = tdir / label / pool / f"{short}.parquet"
                    _write_table(table.slice(lo, hi - lo), path, compression)
                    written.append(path)
    keep = set(written)
    for stale in sorted(tdir.rglob("*.parquet")):
        if stale not in keep:
            stale.unlink()

    cal_path = out_dir / "calendar.csv"
    cal = calendar.copy()
    for c in ("start", "end", "known_at"):
        cal[c] = cal[c].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = cal_path.with_name(cal_path.name + ".tmp")
    cal.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, cal_path)

    fleet_path = out_dir / "fleet.csv"
    fleet = pd.DataFrame(
        {
            "pool": pool_names(spec),
            "gpu_model": [spec.gpu_model(p) for p in range(spec.pools)],
            "nodes": [spec.nodes(p) for p in range(spec.pools)],
            "gpus_per_node": spec.gpus_per_node,
        }
    )
    tmp = fleet_path.with_name(fleet_path.name + ".tmp")
    fleet.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, fleet_path)
    return FleetFiles(out_dir=out_dir, telemetry=tuple(written), calendar=cal_path, fleet=fleet_path, rows=rows)
