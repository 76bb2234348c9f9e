"""Window risk: the distribution of a window's fewest idle GPUs, learned directly from history.

What a reserved lease (or a spot block) sells is "k GPUs idle at every sample from start to
end". This model predicts, for a pool, an origin and a window (hours from the origin to its
start, its length), P(window minimum < k) for every k: the break probability of a promise of k.

Learned from rolling pseudo-origins (one an hour) over every pool's own history, pooled across
pools as shares of capacity: at each past origin the features are what was known then (the
last day's, week's and two weeks' minimum, hours since the pool last left its floor, level and
volatility, the same clock hours a day and a week before, the planned-run calendar as known at
that origin, window timing, capacity) and the target is the window's real sample-level minimum.
Only windows that ended before the live origin are used: nothing from after the origin enters.

LightGBM quantile regressions give the residual over an anchor (the week's minimum; with a
calendar, the window's lowest 1 - planned - that clock hour's unplanned peak) at a few levels; a piecewise-linear CDF joins them, with an atom
at zero (a pool can be full). That CDF is then calibrated on the newest pseudo-origins, which
the quantile models never saw: the probability integral transforms u = F(min) there give G,
and the calibrated break probability of k is G(F(k)) = P(U < F(k)) = P(min < k). G is each
pool's own where it has recent windows, shrunk towards all pools' (`calibration_prior`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sklearn.base import BaseEstimator

from features.planned import plan_windows

HOUR = pd.Timedelta(hours=1)
LEVELS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75)
MIN_OBSERVED = 0.75
PLAN_SLACK = 12  # hours either side of a window whose planned runs may still move into it
FEATURES = ["min24", "min168", "min336", "calm_hours", "mean24", "last3", "std168", "analog_day", "analog_week", "log_cap",
            "lead", "length", "start_hour", "start_dow", "plan_recent", "plan_win_max", "plan_win_mean",
            "plan_delta", "plan_floor", "floor_hod", "plan_near_max"]
BLIND = [f for f in FEATURES if not f.startswith("plan_")]


@dataclass(frozen=True)
class Window:
    """A window `start` hours after the origin, `hours` long (the unit a lease or block is sold in)."""

    start: int
    hours: int


class _Grid:
    """The series as hour x pool arrays (NaN where not observed), extended `ahead` hours past the end."""

    def __init__(self, series: pd.DataFrame, ahead: int, end: pd.Timestamp | None = None):
        s = series[["unique_id", "ds", "y", "gpus_total"] + (["y_min"] if "y_min" in series else [])]
        self.pools = np.array(sorted(s["unique_id"].astype(str).unique()))
        t0 = s["ds"].min().floor("h")
        t1 = max(s["ds"].max(), end - HOUR if end is not None else s["ds"].max()) + ahead * HOUR
        self.hours = pd.date_range(t0, t1, freq="h")
        ix = pd.MultiIndex.from_product([self.pools, self.hours], names=["unique_id", "ds"])
        f = s.assign(unique_id=s["unique_id"].astype(str)).set_index(["unique_id", "ds"])
        f = f[~f.index.duplicated(keep="last")].reindex(ix)
        shape = (len(self.pools), len(self.hours))
        self.y = f["y"].to_numpy(float).reshape(shape).T
        m = f["y_min"].to_numpy(float).reshape(shape).T if "y_min" in f else np.full(shape[::-1], np.nan)
        self.m = np.where(np.isfinite(m), m, self.y)  # the hourly mean where no sample-level minimum was kept
        cap = f["gpus_total"].to_numpy(float).reshape(shape).T
        self.cap = pd.DataFrame(cap).ffill().to_numpy(float)
        self._min: dict[int, np.ndarray] = {}

    def rolling_min(self, L: int) -> np.ndarray:
        """[e] = fewest idle GPUs over hours e-L+1..e (NaN when under 75% of them were observed)."""
        if L not in self._min:
            self._min[L] = pd.DataFrame(self.m).rolling(L, min_periods=max(1, int(np.ceil(MIN_OBSERVED * L)))) \
                .min().to_numpy(float)
        return self._min[L]

    def index(self, t: pd.Timestamp) -> int:
        return int((t - self.hours[0]) / HOUR)


def _at(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows, :] with NaN where a row is outside the grid."""
    ok = (rows >= 0) & (rows < len(a))
    out = np.full((len(rows), a.shape[1]), np.nan)
    out[ok] = a[rows[ok]]
    return out


def _calm_hours(share: np.ndarray, last: np.ndarray, min24: np.ndarray, dip: float = 0.05,
                cap_hours: int = 336) -> np.ndarray:
    """Hours since the pool last dipped `dip` below its current 24 h minimum (capped): a pool
    that has held its floor for weeks is a different risk from one that left it yesterday."""
    out = np.full(min24.shape, float(cap_hours))
    for i, e in enumerate(last):
        lo = max(0, e - cap_hours + 1)
        w = share[lo:e + 1]  # (hours, pools)
        below = w < (min24[i] - dip)[None, :]
        anyb = below.any(axis=0)
        lastb = len(w) - 1 - np.argmax(below[::-1], axis=0)
        out[i] = np.where(anyb, e - (lo + lastb), min(cap_hours, e + 1))
    return out


def _aligned_floor(plan_share: np.ndarray, bg_hod: np.ndarray, origins: pd.DatetimeIndex, w: Window) -> np.ndarray:
    """(origins, pools) min over the window's hours of 1 - planned share - that clock hour's unplanned peak."""
    hod = (origins.hour.to_numpy()[:, None] + w.start + np.arange(w.hours)[None, :]) % 24  # (origins, hours)
    bg = np.take_along_axis(bg_hod, np.broadcast_to(hod[:, None, :], plan_share.shape), axis=2)
    with np.errstate(invalid="ignore"):
        return np.min(1 - plan_share - bg, axis=2)


def window_frame(series: pd.DataFrame, calendar: pd.DataFrame | None, origins: pd.DatetimeIndex,
                 windows: list[Window], grid: _Grid | None = None) -> pd.DataFrame:
    """One row per origin x pool x window: features known at the origin, `anchor`, and the target
    `share` (the window's real minimum idle / capacity; NaN when the window is not observed)."""
    g = grid or _Grid(series, max(w.start + w.hours for w in windows), origins.max())
    P = len(g.pools)
    idx = np.array([g.index(o) for o in origins])  # the origin's hour: history is every hour before it
    last = idx - 1
    cap = _at(g.cap, last)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = pd.DataFrame(g.y)
        mean24 = _at(y.rolling(24, min_periods=18).mean().to_numpy(float), last) / cap
        last3 = _at(y.rolling(3, min_periods=1).mean().to_numpy(float), last) / cap
        std168 = _at(y.rolling(168, min_periods=48).std().to_numpy(float), last) / cap
        min24 = _at(g.rolling_min(24), last) / cap
        min168 = _at(pd.DataFrame(g.m).rolling(168, min_periods=24).min().to_numpy(float), last) / cap
        min336 = _at(pd.DataFrame(g.m).rolling(336, min_periods=24).min().to_numpy(float), last) / cap
        calm = _calm_hours(g.m / g.cap, last, min24)
    lo, hi = -168, max(w.start + w.hours for w in windows)
    plan = plan_windows(calendar, g.pools, origins, lo, hi).gpus if calendar is not None and len(calendar) \
        else np.zeros((len(origins), P, hi - lo), np.float32)
    plan_recent = plan[:, :, -lo - 24:-lo].max(axis=2) / cap
    # busy GPUs the plan does not explain (interactive work, unplanned jobs), at their peak over the
    # last week: with the plan's peak in a window it bounds the window's floor from below
    # and per clock hour (a daily cycle of interactive work peaks in the afternoon, a planned run
    # may peak at night): the hour-aligned floor of a window is its lowest 1 - plan - unplanned peak
    bg168 = np.full((len(origins), P), np.nan)
    bg_hod = np.full((len(origins), P, 24), np.nan)
    hod_past = (origins.hour.to_numpy()[:, None] + np.arange(-168, 0)[None, :]) % 24  # (origins, 168)
    for i, e in enumerate(last):
        past = _at(g.m, np.arange(e - 167, e + 1)).T  # (P, 168) fewest idle per hour
        with np.errstate(invalid="ignore"):
            un = 1 - (past + plan[i, :, :-lo]) / cap[i][:, None]
        seen = np.isfinite(un).sum(axis=1)
        low = np.where(np.isfinite(un), un, -np.inf)
        bg168[i] = np.where(seen >= 24, low.max(axis=1), np.nan)
        for h in range(24):
            col = low[:, hod_past[i] == h].max(axis=1)
            bg_hod[i, :, h] = np.where((seen >= 24) & np.isfinite(col), col, bg168[i])
    frames = []
    for w in windows:
        rm = g.rolling_min(w.hours)
        end = idx + w.start + w.hours - 1  # last hour of the window
        back_d = 24 * int(np.ceil((w.start + w.hours) / 24))
        back_w = 168 * int(np.ceil((w.start + w.hours) / 168))
        pw = plan[:, :, w.start - lo: w.start + w.hours - lo]
        # a run planned just outside the window may move into it (plans are revised by hours)
        near = plan[:, :, max(0, w.start - PLAN_SLACK - lo): min(plan.shape[2], w.start + w.hours + PLAN_SLACK - lo)]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = _at(rm, end) / cap
            f = {
                "min24": min24, "min168": min168, "min336": min336, "calm_hours": calm, "mean24": mean24, "last3": last3, "std168": std168,
                "analog_day": _at(rm, end - back_d) / cap, "analog_week": _at(rm, end - back_w) / cap,
                "plan_recent": plan_recent, "plan_win_max": pw.max(axis=2) / cap, "plan_win_mean": pw.mean(axis=2) / cap,
                "floor_plan": 1 - pw.max(axis=2) / cap - bg168, "unplanned168": bg168,
                "floor_hod": _aligned_floor(pw / cap[:, :, None], bg_hod, origins, w),
                "plan_near_max": near.max(axis=2) / cap,
            }
        starts = origins + pd.Timedelta(hours=w.start)
        n = len(origins) * P
        frames.append(pd.DataFrame({
            "origin": np.repeat(origins, P), "unique_id": np.tile(g.pools, len(origins)),
            "window_start": np.repeat(starts, P), "lead": w.start, "length": w.hours,
            "start_hour": np.repeat(starts.hour, P), "start_dow": np.repeat(starts.dayofweek, P),
            "gpus_total": cap.reshape(n), "log_cap": np.log1p(cap.reshape(n)),
            **{k: v.reshape(n) for k, v in f.items()},
            "share": share.reshape(n),
        }))
    out = pd.concat(frames, ignore_index=True)
    out["plan_delta"] = out["plan_win_max"] - out["plan_recent"]
    out = out.rename(columns={"floor_plan": "plan_floor"})
    return out


class WindowRiskModel(BaseEstimator):
    """P(fewest idle GPUs in a window < k), pooled over pools, calibrated on recent origins.

    Parameters: `levels` the quantile levels fitted; `history_days` pseudo-origins looked back
    (`stride_hours` apart, more when pools x windows x origins would pass `max_rows`);
    `calibration_days` at most this many days of the newest pseudo-origins are kept out of fitting
    to calibrate on (a week covers every weekday; a young history keeps 30% of its span, at least 2 days);
    `use_calendar` False gives the calendar-blind model (for comparison)."""

    def __init__(self, levels: tuple[float, ...] = LEVELS, history_days: int = 60, calibration_days: float = 7.0,
                 stride_hours: int = 1, max_rows: int = 250_000,
                 use_calendar: bool = True, n_estimators: int = 150, learning_rate: float = 0.05,
                 num_leaves: int = 15, min_child_samples: int = 20, calibration_prior: float = 50.0,
                 anchor: str = "min168", random_state: int = 0):
        self.levels = levels
        self.history_days = history_days
        self.calibration_days = calibration_days
        self.stride_hours = stride_hours
        self.max_rows = max_rows
        self.use_calendar = use_calendar
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.calibration_prior = calibration_prior
        self.anchor = anchor
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------
    def _anchor(self, X: pd.DataFrame) -> np.ndarray:
        if self.use_calendar:  # each hour's plan on top of the week's unplanned peak at that clock hour
            return X["floor_hod"].to_numpy(float)
        return X[self.anchor].to_numpy(float)

    def fit(self, series: pd.DataFrame, calendar: pd.DataFrame | None, origin: pd.Timestamp,
            windows: list[Window]) -> "WindowRiskModel":
        """Learn from pseudo-origins `stride_hours` apart before `origin` whose windows ended by `origin`."""
        import lightgbm as lgb

        origin = pd.Timestamp(origin)
        first = series["ds"].min().floor("h") + pd.Timedelta(days=1)
        span = int(min(24 * self.history_days, (origin - first) / HOUR))
        # pseudo-origins an hour apart, thinned when pools x windows x origins would exceed max_rows
        pools = series["unique_id"].nunique()
        stride = max(self.stride_hours, int(np.ceil(span * pools * len(windows) / self.max_rows)))
        origins = pd.DatetimeIndex([origin - pd.Timedelta(hours=j * stride) for j in range(span // stride, 0, -1)])
        self.stride_ = stride
        self.features_ = FEATURES if self.use_calendar else BLIND
        self.windows_ = list(windows)
        self.origin_ = origin
        if len(origins) == 0:
            self.fitted_ = False
            return self
        cal = calendar if self.use_calendar else None
        fr = window_frame(series[series["ds"] < origin], cal, origins, windows)
        fr = fr[(fr["window_start"] + pd.to_timedelta(fr["length"], unit="h") <= origin)
                & np.isfinite(fr["share"]) & np.isfinite(self._anchor(fr)) & (fr["gpus_total"] > 0)]
        # the newest usable origins of each window calibrate it; the rest fit
        newest = fr.groupby(["length", "lead"])["origin"].transform("max")
        span = (newest - fr["origin"].min()) / pd.Timedelta(days=1)
        days = np.clip(0.3 * span, min(2.0, self.calibration_days), self.calibration_days)
        cal_rows = fr["origin"] > newest - pd.to_timedelta(days, unit="D")
        fit_rows = fr[~cal_rows]
        self.n_fit_, self.n_calibration_ = len(fit_rows), int(cal_rows.sum())
        if len(fit_rows) < 5 * self.min_child_samples or self.n_calibration_ < 20:
            self.fitted_ = False
            return self
        # one set of quantile models over every window (length and lead are features): pooled,
        # a 7-day window learns from the days and blocks too (per-length sets sold less on the
        # synthetic calendar fleet: achievable 0.72 against 0.75)
        X, r = fit_rows[self.features_], fit_rows["share"].to_numpy(float) - self._anchor(fit_rows)
        self.models_ = [lgb.LGBMRegressor(
            objective="quantile", alpha=lv, n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            num_leaves=self.num_leaves, min_child_samples=self.min_child_samples, random_state=self.random_state,
            n_jobs=1, verbose=-1).fit(X, r) for lv in self.levels]
        self.fitted_ = True
        c = fr[cal_rows].copy()
        qc = self._quantiles(c)
        cap_c = c["gpus_total"].to_numpy(float)
        u = self._pit(qc, c["share"].to_numpy(float) * cap_c, cap_c, np.random.default_rng(self.random_state))
        for j, lv in enumerate(self.levels):
            c[f"q_{lv}"] = qc[:, j]
        self.calibration_frame_ = c
        lengths, leads, pools = c["length"].to_numpy(), c["lead"].to_numpy(), c["unique_id"].to_numpy(str)
        self.pit_length_ = {int(L): np.sort(u[lengths == L]) for L in np.unique(lengths)}
        self.pit_ = {(int(L), int(a)): np.sort(u[(lengths == L) & (leads == a)]) for L, a in set(zip(lengths, leads))}
        self.pit_all_ = np.sort(u)
        # one pass over the rows (a mask per pool x window was quadratic: minutes at 1,000 pools)
        groups = pd.DataFrame({"p": pools, "L": lengths, "a": leads}).groupby(["p", "L", "a"], sort=False).indices
        self.pit_pool_ = {(str(p), int(L), int(a)): np.sort(u[idx]) for (p, L, a), idx in groups.items()}
        return self

    # -- prediction --------------------------------------------------------------------------
    def _quantiles(self, X: pd.DataFrame) -> np.ndarray:
        """(n, levels) shares, sorted and kept in [0, 1]."""
        q = np.column_stack([g.predict(X[self.features_]) for g in self.models_]) + self._anchor(X)[:, None]
        return np.clip(np.sort(q, axis=1), 0.0, 1.0)

    def predict(self, series: pd.DataFrame, calendar: pd.DataFrame | None = None,
                origin: pd.Timestamp | None = None) -> pd.DataFrame:
        """Per pool x window at the fitted origin: features, anchor and raw quantile knots (`q_<level>`)."""
        origin = self.origin_ if origin is None else pd.Timestamp(origin)
        fr = window_frame(series[series["ds"] < origin], calendar if self.use_calendar else None,
                          pd.DatetimeIndex([origin]), self.windows_)
        q = np.full((len(fr), len(self.levels)), np.nan)
        if getattr(self, "fitted_", False):
            ok = np.isfinite(self._anchor(fr)) & (fr["gpus_total"] > 0).to_numpy()
            if ok.any():
                q[ok] = self._quantiles(fr[ok])
        for j, lv in enumerate(self.levels):
            fr[f"q_{lv}"] = q[:, j]
        return fr

    def _knots(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, m+2) shares and levels of each row's CDF: the atom at 0, the quantiles, share 1 at level 1."""
        n, m = q.shape
        lv = np.broadcast_to(np.asarray(self.levels, float), (n, m))
        mass0 = np.where(q <= 0, lv, 0.0).max(axis=1)
        xs = np.column_stack([np.zeros(n), q, np.full(n, 1.0 + 1e-6)])
        ys = np.column_stack([mass0, np.where(q <= 0, mass0[:, None], lv), np.ones(n)])
        xs = np.maximum.accumulate(xs + 1e-12 * np.arange(m + 2), axis=1)  # strictly increasing shares
        return xs, ys

    def _cdf(self, q: np.ndarray, x: np.ndarray) -> np.ndarray:
        """F(x) = P(share <= x) per row, linear between the knots; 0 below share 0.

        A window can be fully busy: the knots at share 0 are an atom, F(0) = its mass."""
        xs, ys = self._knots(q)
        x = np.asarray(x, float)
        j = np.clip((xs <= x[:, None]).sum(axis=1) - 1, 0, xs.shape[1] - 2)
        r = np.arange(len(x))
        w = np.clip((x - xs[r, j]) / (xs[r, j + 1] - xs[r, j]), 0, 1)
        out = ys[r, j] + w * (ys[r, j + 1] - ys[r, j])
        return np.where(x < 0, 0.0, out)

    def _pit(self, q: np.ndarray, gpus: np.ndarray, cap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Randomized PIT of realized minima on the GPU grid: uniform on [F(y - 1/2), F(y + 1/2)]
        (GPU counts are whole; half a GPU either side is the continuity correction)."""
        lo = self._cdf(q, (gpus - 0.5) / cap)
        hi = self._cdf(q, (gpus + 0.5) / cap)
        return lo + rng.uniform(size=len(lo)) * (hi - lo)

    def _calibrated(self, pools: np.ndarray, lengths: np.ndarray, leads: np.ndarray, v: np.ndarray) -> np.ndarray:
        """G(v) = share of recent windows whose PIT fell below v, per window (length, lead): the
        pool's own, shrunk towards all pools' (`calibration_prior` windows' worth); a window with
        under 100 recent outcomes borrows those of its length, then of every window."""
        out = np.empty(len(v))
        keys = pd.MultiIndex.from_arrays([lengths, leads])
        for L, a in keys.unique():
            s_all = self.pit_.get((int(L), int(a)))
            if s_all is None or len(s_all) < 100:
                s_all = self.pit_length_.get(int(L))
            if s_all is None or len(s_all) < 100:
                s_all = self.pit_all_
            m = (lengths == L) & (leads == a)
            # P(U <= v): a promise of k breaks when the minimum is k - 1 or less
            g_all = (np.searchsorted(s_all, v[m], side="right") + 0.5) / (len(s_all) + 1)
            own = np.zeros(m.sum())
            n_own = np.zeros(m.sum())
            for p in np.unique(pools[m]):
                s_p = self.pit_pool_.get((str(p), int(L), int(a)))
                if s_p is None or not len(s_p):
                    continue
                mp = pools[m] == p
                own[mp] = np.searchsorted(s_p, v[m][mp], side="right") / len(s_p)
                n_own[mp] = len(s_p)
            n0 = self.calibration_prior
            out[m] = (n_own * own + n0 * g_all) / (n_own + n0)
        return out

    def calibrated_on(self, length: int, lead: int, min_windows: int = 100) -> bool:
        """Whether the window (length, lead) has its own recent outcomes to calibrate on."""
        s = getattr(self, "pit_", {}).get((int(length), int(lead)))
        return bool(getattr(self, "fitted_", False) and s is not None and len(s) >= min_windows)

    def _rows(self, pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = pred[[f"q_{lv}" for lv in self.levels]].to_numpy(float)
        cap = pred["gpus_total"].to_numpy(float)
        return q, cap, np.isfinite(q).all(axis=1) & (cap > 0)

    def break_probability(self, pred: pd.DataFrame, k: np.ndarray) -> np.ndarray:
        """Calibrated P(window minimum < k GPUs) per row of `predict` (NaN where it cannot say)."""
        k = np.broadcast_to(np.asarray(k, float), (len(pred),))
        out = np.full(len(pred), np.nan)
        if not getattr(self, "fitted_", False):
            return out
        q, cap, ok = self._rows(pred)
        if ok.any():
            v = self._cdf(q[ok], (k[ok] - 0.5) / cap[ok])
            g = self._calibrated(pred["unique_id"].to_numpy(str)[ok], pred["length"].to_numpy()[ok],
                                 pred["lead"].to_numpy()[ok], v)
            out[ok] = np.where(k[ok] <= 0, 0.0, g)
        return out


def largest_under(risk, cap: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Largest whole k in [0, cap] with risk(k) <= target, per row (risk grows with k; NaN = too risky)."""
    lo = np.zeros(len(cap))
    hi = np.where(np.isfinite(target), np.floor(np.nan_to_num(cap)), 0.0)
    while (hi > lo).any():
        mid = np.where(hi > lo, np.ceil((lo + hi) / 2), 0.0)
        r = risk(mid)
        good = (hi > lo) & (np.nan_to_num(r, nan=np.inf) <= target)
        lo = np.where(good, mid, lo)
        hi = np.where((hi > lo) & ~good, mid - 1, hi)
    return lo

