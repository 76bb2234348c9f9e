"""Global LightGBM across pools, direct multi-horizon, with conformal intervals.

One model for every step: each training row is (origin, pool, step h) with the step as a
feature and the target hour's planned runs (as known at the origin) as features, so a run
planned to start at step 30 moves the forecast at step 30. Recursive models feed their own
predictions back and tend to lose the known-future input after the first steps.

Intervals are split-conformal: a first model trained on data before a calibration period
predicts that period from several origins; the quantiles of its errors (scaled per pool by
the pool's in-sample seasonal-naive error, grouped by horizon band) are added to the mean of
the final model, refit on everything. One mean model instead of seven quantile models is
7x cheaper, cannot cross, and is calibrated on data it never saw.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.direct import BASE_FEATURES, MAX_LOOKBACK, PLAN_FEATURES, PanelStats, direct_features, direct_target
from features.panel import Panel, panel_from_long
from features.planned import normalize_calendar, plan_windows
from models.base import QUANTILES, Forecaster, check_horizon, forecast_frame

_BANDS = (1, 7, 25, 73, 169, 10**9)  # horizon bands for conformal quantiles: [1,6], [7,24], ...
_MIN_BAND_RESIDUALS = 50
_SCALE_FLOOR = 0.01  # share of capacity: keeps near-constant pools from getting zero-width intervals


def _band(h: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(_BANDS), h, side="right") - 1


def _snaive_scale(panel: Panel, until: int) -> np.ndarray:
    """Per series mean |y_t - y_{t-24}| / capacity over [0, until): the interval scale."""
    y = panel.y[:, :until] / np.maximum(panel.capacity[:, :until], 1.0)
    if y.shape[1] <= 24:
        return np.full(panel.n, 0.05)
    d = np.abs(y[:, 24:] - y[:, :-24])
    with np.errstate(invalid="ignore"):
        cnt = np.isfinite(d).sum(axis=1)
        s = np.where(cnt > 0, np.nansum(d, axis=1) / np.maximum(cnt, 1), np.nan)
    med = np.nanmedian(s) if np.isfinite(s).any() else 0.05
    return np.maximum(np.where(np.isfinite(s), s, med), _SCALE_FLOOR)


class LGBMDirect(Forecaster):
    """Direct multi-horizon global LightGBM on capacity shares, conformal quantiles."""

    model_name = "lgbm"

    def __init__(
        self,
        horizon: int = 168,
        use_calendar: bool = True,
        origin_step: int | None = None,
        max_train_rows: int = 400_000,
        min_history: int = 48,
        conformal: bool = True,
        calibration_hours: int | None = None,
        objective: str = "l1",
        target: str = "delta",
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        reg_lambda: float = 10.0,
        colsample_bytree: float = 0.7,
        country: str | None = None,
        tz: str = "UTC",
        n_jobs: int = 1,  # OpenMP threads spin badly when a shared 2-core box is busy
        seed: int = 0,
        alias: str | None = None,
    ):
        self.horizon = horizon
        self.use_calendar = use_calendar
        self.origin_step = origin_step
        self.max_train_rows = max_train_rows
        self.min_history = min_history
        self.conformal = conformal
        self.calibration_hours = calibration_hours
        self.objective = objective
        self.target = target
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample_bytree = colsample_bytree
        self.country = country
        self.tz = tz
        self.n_jobs = n_jobs
        self.seed = seed
        self.alias = alias

    @property
    def name(self) -> str:
        return self.alias or ("lgbm" if self.use_calendar else "lgbm_nocal")

    # ------------------------------------------------------------------ training rows

    def _train_horizons(self) -> np.ndarray:
        H = self.horizon
        near = np.arange(1, min(H, 168) + 1)
        far = np.arange(169, H + 1, 7)  # beyond a week: every 7th step (7 and 24 coprime: all hours seen)
        return np.concatenate([near, far])

    def _origins(self, T: int, start: int, stop: int, step: int) -> np.ndarray:
        """Origins T - j*step (aligned with the forecast origin T) inside [start, stop]."""
        o = T - step * np.arange(1, T // step + 1)
        o = o[(o >= max(start, 1)) & (o <= stop)]
        return np.sort(o)

    def _examples(self, panel: Panel, origins: np.ndarray, t_end: int, rng: np.random.Generator):
        """(s, o, h) for every origin x series x trained step with an observed target < t_end."""
        hs = self._train_horizons()
        o_g, s_g, h_g = np.meshgrid(origins, np.arange(panel.n), hs, indexing="ij")
        o_g, s_g, h_g = o_g.ravel(), s_g.ravel(), h_g.ravel()
        t = o_g + h_g - 1
        keep = t < t_end
        o_g, s_g, h_g = o_g[keep], s_g[keep], h_g[keep]
        obs = ~np.isnan(panel.y[s_g, o_g + h_g - 1]) & ~np.isnan(panel.capacity[s_g, o_g - 1])
        o_g, s_g, h_g = o_g[obs], s_g[obs], h_g[obs]
        if len(o_g) > self.max_train_rows:
            pick = np.sort(rng.choice(len(o_g), self.max_train_rows, replace=False))
            o_g, s_g, h_g = o_g[pick], s_g[pick], h_g[pick]
        return s_g, o_g, h_g

    def _features(self, panel: Panel, stats: PanelStats, s, o, h, calendar: pd.DataFrame | None) -> pd.DataFrame:
        plan = plan_o = None
        if self.use_calendar:
            uo, plan_o = np.unique(o, return_inverse=True)
            origins = panel.start + pd.to_timedelta(uo, unit="h")
            plan = plan_windows(calendar, panel.ids, pd.DatetimeIndex(origins), lo=-MAX_LOOKBACK, hi=int(h.max()))
        X = direct_features(
            panel, stats, s, o, h, plan, plan_o, self.country, self.tz, gpu_models=self.gpu_models_
        )
        return X[self.feature_names_]

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        """What the trees correct: the last observed share ('delta' target) or zero ('level')."""
        if self.target == "delta":
            return np.nan_to_num(X["y_last"].to_numpy(dtype=float), nan=0.0)
        if self.target == "level":
            return np.zeros(len(X))
        raise ValueError(f"target must be 'delta' or 'level', got {self.target!r}")

    def _booster(self):
        import lightgbm as lgb

        return lgb.LGBMRegressor(
            objective=self.objective,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            n_jobs=self.n_jobs,
            random_state=self.seed,
            verbosity=-1,
        )

    def _fit_rows(self, panel, stats, calendar, origins, t_end, rng):
        s, o, h = self._examples(panel, origins, t_end, rng)
        if len(s) == 0:
            raise ValueError("not enough history to build any training row (need min_history + 1 hours)")
        X = self._features(panel, stats, s, o, h, calendar)
        y = direct_target(panel, s, o, h) - self._base(X)
        return self._booster().fit(X, y), len(y)

    def fit(self, df: pd.DataFrame, calendar: pd.DataFrame | None = None) -> "LGBMDirect":
        H = check_horizon(self.horizon)
        panel = panel_from_long(df)
        cal = normalize_calendar(calendar) if self.use_calendar else None
        stats = PanelStats.of(panel)
        T = panel.T
        rng = np.random.default_rng(self.seed)
        self.gpu_models_ = sorted(set(panel.gpu_model.tolist()))
        self.feature_names_ = BASE_FEATURES + (PLAN_FEATURES if self.use_calendar else [])
        step = self.origin_step
        if step is None:  # densest origin grid whose full example set stays within ~4x the row budget
            per_origin = panel.n * min(H, 168)
            step = next((c for c in (1, 2, 3, 6, 12, 24) if (T / c) * per_origin <= 4 * self.max_train_rows), 24)
        self.origin_step_ = int(step)
        origins = self._origins(T, self.min_history, T - 1, self.origin_step_)
        if len(origins) == 0:
            raise ValueError(f"history of {T} h is too short (min_history={self.min_history})")
        # conformal calibration on the tail, with a model that never saw it
        self.scale_ = dict(zip(panel.ids, _snaive_scale(panel, T)))
        self.residual_q_ = None
        if self.conformal:
            cal_h = self.calibration_hours or max(24, min(H, T // 4))
            c = T - cal_h
            early = origins[origins + 1 <= c]
            late = origins[origins >= c]
            if len(early) and len(late) and c > self.min_history:
                m0, _ = self._fit_rows(panel, stats, cal, early, c, rng)
                s, o, h = self._examples(panel, late, T, rng)
                if len(s):
                    X = self._features(panel, stats, s, o, h, cal)
                    pred = m0.predict(X) + self._base(X)
                    y = direct_target(panel, s, o, h)
                    scale = _snaive_scale(panel, c)[s]
                    r = (y - pred) / scale
                    self.residual_q_ = self._band_quantiles(r, h)
        self.model_, self.n_train_rows_ = self._fit_rows(panel, stats, cal, origins, T, rng)
        self.panel_ = panel
        return self

    @staticmethod
    def _band_quantiles(r: np.ndarray, h: np.ndarray) -> np.ndarray:
        """(bands, 7) residual quantiles; thin bands borrow from the next populated band."""
        b = _band(h)
        n_b = len(_BANDS) - 1
        out = np.full((n_b, len(QUANTILES)), np.nan)
        for j in range(n_b):
            rj = r[b == j]
            if len(rj) >= _MIN_BAND_RESIDUALS:
                out[j] = np.quantile(rj, QUANTILES)
        pooled = np.quantile(r, QUANTILES)
        for j in range(n_b):  # fill gaps from the nearest shorter band, else pooled
            if np.isnan(out[j]).any():
                prev = [k for k in range(j - 1, -1, -1) if not np.isnan(out[k]).any()]
                out[j] = out[prev[0]] if prev else pooled
        return out

    # ------------------------------------------------------------------ forecasting

    def predict(self, h: int, X_df: pd.DataFrame | None = None, new_df: pd.DataFrame | None = None) -> pd.DataFrame:
        h = check_horizon(h)
        if not hasattr(self, "model_"):
            raise RuntimeError("LGBMDirect is not fitted: call fit(df) first")
        if h > self.horizon:
            raise ValueError(f"h={h} exceeds the trained horizon {self.horizon}; refit with horizon >= {h}")
        panel = self._history(new_df)
        stats = PanelStats.of(panel)
        s = np.repeat(np.arange(panel.n), h)
        steps = np.tile(np.arange(1, h + 1), panel.n)
        o = np.full(len(s), panel.T)
        cal = None
        if self.use_calendar and X_df is not None:
            cal = normalize_calendar(X_df)
            cal = cal[cal["known_at"] <= panel.end()]
        X = self._features(panel, stats, s, o, steps, cal)
        cap = panel.capacity[:, -1]
        share = (self.model_.predict(X) + self._base(X)).reshape(panel.n, h)
        mean = share * cap[:, None]
        if self.residual_q_ is not None:
            med = float(np.median(list(self.scale_.values())))
            scale = np.array([self.scale_.get(i, med) for i in panel.ids])
            rq = self.residual_q_[_band(np.arange(1, h + 1))]  # (h, 7)
            q = mean[:, :, None] + (scale * cap)[:, None, None] * rq[None, :, :]
        else:  # no calibration data: a flat +-2 scale band, honest about being a guess
            spread = np.array([-2, -1.3, -0.6, 0, 0.6, 1.3, 2]) * 0.1
            q = mean[:, :, None] + cap[:, None, None] * spread[None, None, :]
        return forecast_frame(panel, h, self.name, mean, q)
