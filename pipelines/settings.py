"""The one settings object: embedded defaults under ./var/, a TOML file, and IDLECAP_* env vars.

Precedence (lowest to highest): defaults < TOML file (`idlecap.toml` in the working directory,
or the path in IDLECAP_CONFIG) < environment. Environment names are `IDLECAP_<FIELD>` for
top-level fields and `IDLECAP_<SECTION>__<FIELD>` for sections, e.g.
`IDLECAP_DUCKDB_PATH=/data/idlecap.duckdb`, `IDLECAP_INGEST__FUTURE_TOLERANCE_S=600`.
Only pipelines/ reads settings; domain code gets plain arguments.
"""
from __future__ import annotations

import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from warehouse.sources.base import SourceOptions


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    future_tolerance_s: int = Field(600, ge=0, description="samples later than now + this are quarantined")
    oldest_ts: datetime = Field(datetime.fromisoformat("2000-01-01T00:00:00+00:00"))
    idle_util_threshold: float = Field(5.0, ge=0, le=100, description="util % under which a GPU counts idle")
    register_new_nodes: bool = True
    register_new_pools: bool = True
    files_per_task: int = Field(200, ge=1)


class SourceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    helios_utc_offset_hours: float = 8.0
    helios_gpu_model: str = "V100"
    philly_timezone: str = "America/Los_Angeles"
    philly_pool: str = "philly"
    philly_gpu_model: str = "philly-mixed"
    philly_gpus_per_node: float | None = None
    genai_pool: str = "alibaba-genai"
    genai_gpu_model: str = "alibaba-genai-gpu"
    genai_gpus_per_container: int = 1
    spot_start: datetime = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    spot_pool_prefix: str = "alibaba-spot-"
    spot_node_info: Path | None = None

    def options(self) -> SourceOptions:
        return SourceOptions(**self.model_dump())


class ForecastSettings(BaseModel):
    """Forecasting and backtests. Hours are UTC clock hours."""

    model_config = ConfigDict(extra="forbid")

    horizon_hours: int = Field(168, ge=1, description="hourly forecast length (spot)")
    daily_horizon_days: int = Field(30, ge=0, description="daily totals for reserved terms (0 = none)")
    min_coverage: float = Field(0.5, ge=0, le=1, description="pool-hours with less telemetry are not learned from")
    mask_flags: list[str] = Field(default_factory=lambda: ["helios_blackout"])
    holidays_country: str | None = Field(None, description="ISO code for the holiday feature, e.g. US, CN")
    timezone: str = Field("UTC", description="local time for hour-of-day / weekday features")
    models: list[str] = Field(
        default_factory=lambda: ["naive", "snaive_24", "snaive_168", "mstl", "lgbm", "ensemble"],
        description="candidates backtested; the champion is the per-pool selection among them",
    )
    backtest_horizon_hours: int = Field(24, ge=1)
    backtest_windows: int = Field(7, ge=1)
    backtest_step_hours: int = Field(24, ge=1)
    backtest_window: str = Field("expanding", pattern="^(expanding|sliding)$")
    backtest_window_hours: int | None = Field(None, ge=24)
    lgbm_n_estimators: int = Field(200, ge=10)
    lgbm_learning_rate: float = Field(0.05, gt=0)
    lgbm_num_leaves: int = Field(15, ge=2)
    lgbm_max_train_rows: int = Field(400_000, ge=1000)
    lgbm_threads: int = Field(1, ge=1, description="LightGBM threads (more only on a dedicated box: OpenMP spins when cores are busy)")
    processes: int = Field(1, ge=1, description="processes for per-pool models (MSTL) at fit/forecast time")
    registered_model: str = "idlecap-forecaster"
    experiment: str = "idlecap-forecasting"
    promotion_metric: str = Field(
        "mase_median", pattern="^(mase_median|mase_mean|mae|pinball|mae_vs_naive|mae_vs_snaive)$",
        description="a lower-is-better backtest metric of the per-pool selection, compared with the champion's",
    )
    min_improvement: float = Field(0.0, ge=0, lt=1)
    fan_charts: int = Field(16, ge=0, description="pools with a fan chart in MLflow (largest first)")

    @field_validator("models", "mask_flags", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        """IDLECAP_FORECAST__MODELS=naive,lgbm works like the TOML list."""
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str]) -> list[str]:
        from models.catalog import KNOWN

        unknown = [m for m in v if m not in KNOWN and not (m.startswith("snaive_") and m[7:].isdigit())]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(KNOWN)} (or snaive_<hours>)")
        if not v:
            raise ValueError("at least one model is needed")
        return v


class Settings(BaseModel):
    """Every path defaults under `var_dir`; each can point elsewhere (or at a server) by config."""

    model_config = ConfigDict(extra="forbid")

    var_dir: Path = Path("var")
    duckdb_path: Path | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts: str | None = None
    sheets_dir: Path | None = None
    prefect_home: Path | None = None
    ingest: IngestSettings = IngestSettings()
    sources: SourceSettings = SourceSettings()
    forecast: ForecastSettings = ForecastSettings()

    def model_post_init(self, __context: Any) -> None:
        v = self.var_dir
        if self.duckdb_path is None:
            self.duckdb_path = v / "idlecap.duckdb"
        if self.mlflow_tracking_uri is None:
            self.mlflow_tracking_uri = f"sqlite:///{(v / 'mlflow.db').as_posix()}"
        if self.mlflow_artifacts is None:
            self.mlflow_artifacts = (v / "mlartifacts").as_posix()
        if self.sheets_dir is None:
            self.sheets_dir = v / "sheets"
        if self.prefect_home is None:
            self.prefect_home = v / "prefect"

    def ensure_dirs(self) -> None:
        for p in (self.var_dir, Path(self.duckdb_path).parent, self.sheets_dir, self.prefect_home):
            Path(p).mkdir(parents=True, exist_ok=True)


ENV_PREFIX = "IDLECAP_"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = {"ingest", "sources", "forecast"}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == "IDLECAP_CONFIG":
            continue
        name = key[len(ENV_PREFIX):].lower()
        if "__" in name:
            section, field = name.split("__", 1)
            if section not in sections:
                raise ValueError(f"{key}: unknown settings section {section!r} (known: {sorted(sections)})")
            out.setdefault(section, {})[field] = value
        else:
            out[name] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_settings(config: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build the settings: defaults, then the TOML file, then IDLECAP_* variables."""
    environ = dict(os.environ if environ is None else environ)
    path = config or (Path(environ["IDLECAP_CONFIG"]) if "IDLECAP_CONFIG" in environ else Path("idlecap.toml"))
    data: dict[str, Any] = {}
    if path.exists():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    elif config is not None or "IDLECAP_CONFIG" in environ:
        raise FileNotFoundError(f"settings file {path} does not exist")
    return Settings.model_validate(_merge(data, _env_overrides(environ)))


def apply_process_env(settings: Settings) -> None:
    """Point Prefect and MLflow at the configured stores. Call before importing prefect/mlflow."""
    settings.ensure_dirs()
    os.environ.setdefault("PREFECT_HOME", str(Path(settings.prefect_home).resolve()))
    os.environ.setdefault("MLFLOW_TRACKING_URI", str(settings.mlflow_tracking_uri))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
