"""The one settings object: embedded defaults under ./var/, a TOML file, and IDLECAP_* env vars.

Precedence (lowest to highest): defaults < TOML file (`idlecap.toml` in the working directory,
or the path in IDLECAP_CONFIG) < environment. Environment names are `IDLECAP_<FIELD>` for
top-level fields and `IDLECAP_<SECTION>__<FIELD>` for sections, e.g.
`IDLECAP_DUCKDB_PATH=/data/idlecap.duckdb`, `IDLECAP_INGEST__FUTURE_TOLERANCE_S=600`.
Only pipelines/ reads settings; domain code gets plain arguments.
"""
from __future__ import annotations

import json
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from warehouse.sources.base import SourceOptions


def split_commas(v: Any) -> Any:
    """List settings from the environment: IDLECAP_FORECAST__MODELS=naive,lgbm works like the TOML list."""
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    future_tolerance_s: int = Field(600, ge=0, description="samples later than now + this are quarantined")
    oldest_ts: datetime = Field(datetime.fromisoformat("2000-01-01T00:00:00+00:00"))
    idle_util_threshold: float = Field(5.0, ge=0, le=100, description="util % under which a GPU counts idle")
    register_new_nodes: bool = True
    register_new_pools: bool = True
    files_per_task: int = Field(1000, ge=1, description="files per Prefect task; small Parquet files load 500 to a transaction")


class WarehouseSettings(BaseModel):
    """DuckDB resources and sharing: big refreshes spill to `temp_directory` instead of growing."""

    model_config = ConfigDict(extra="forbid")

    memory_limit: str = Field("4GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
                              description="DuckDB's memory cap (e.g. 4GB); work beyond it spills to temp_directory")
    temp_directory: Path | None = Field(None, description="DuckDB spill directory (default var/duckdb_tmp)")
    threads: int | None = Field(None, ge=1, description="DuckDB threads (default: every core)")
    busy_wait_s: float = Field(60.0, ge=0, description="how long a command waits for another process "
                               "that holds the warehouse before giving up")
    refresh_slice_hours: int = Field(24, ge=1, description="pool_hourly is refreshed this many hours at a time "
                                     "(one transaction each), so memory does not grow with the backlog")


class ComputeSettings(BaseModel):
    """Where per-pool and per-origin work runs: in the flow's process, or on a Dask cluster."""

    model_config = ConfigDict(extra="forbid")

    runner: str = Field("auto", pattern="^(auto|dask|threads)$", description="dask: every night on Dask "
                        "(a local cluster, or `address`); threads: in the flow's process; auto: Dask from "
                        "`dask_min_pools` pools (a local cluster costs about 15 s to start)")
    address: str | None = Field(None, description="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                "(default: start a local cluster per run)")
    n_workers: int = Field(2, ge=1, description="worker processes of the local cluster")
    threads_per_worker: int = Field(1, ge=1)
    dask_min_pools: int = Field(100, ge=1, description="auto uses Dask from this many pools")
    scratch_dir: Path | None = Field(None, description="inputs handed to workers (default var/work); on a "
                                     "multi-machine cluster, a path every worker can read")


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
    anchor_decay: float = Field(0.95, ge=0, lt=1, description="every model but naive starts its path at the last "
                                "observed hour, the gap fading by this factor an hour (0 = off)")
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
        return split_commas(v)

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


DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class CostSettings(BaseModel):
    """An operator's cost of a GPU-hour for one GPU class or telemetry name; unset fields keep the catalogue's."""

    model_config = ConfigDict(extra="forbid")

    power_kw: float | None = Field(None, ge=0, description="board power per GPU incl. its share of the host")
    amortization_usd_per_gpu_hour: float | None = Field(None, ge=0, description="capex / (life x 8760 h); 0 once written off")
    overhead_usd_per_gpu_hour: float | None = Field(None, ge=0, description="network, storage, operations")


class DemandSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    elasticity: float = Field(2.0, gt=0, description="% demand change per % price change (constant elasticity)")
    share_at_reference: float = Field(0.25, gt=0, description="share of a pool customers take at the reference price")


class RiskModelSettings(BaseModel):
    """The window-risk model that sizes reserved terms and spot blocks (models/window_risk.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false = the older forecast-quantile rules with the drawdown guard")
    history_days: int = Field(60, ge=3, description="pseudo-origins (one an hour) looked back over")
    calibration_days: float = Field(7.0, gt=0, description="at most this many days of the newest pseudo-origins are "
                                    "kept out of fitting to calibrate on (30% of a younger history, at least 2)")
    calibration_prior: float = Field(50.0, ge=0, description="recent windows of all pools a pool's own calibration "
                                     "is shrunk towards")
    use_calendar: bool = Field(True, description="planned runs as known at each origin are model inputs")

    def model(self):
        from models.window_risk import WindowRiskModel

        return WindowRiskModel(history_days=self.history_days, calibration_days=self.calibration_days,
                               calibration_prior=self.calibration_prior, use_calendar=self.use_calendar)


class PricingSettings(BaseModel):
    """Reference rates, costs, demand and the pricing rules (DESIGN.md "Pricing rules")."""

    model_config = ConfigDict(extra="forbid")

    reference_rates: Path = Field(DATA_DIR / "reference_rates.csv",
                                  description="the shipped references; `idlecap references import` versions newer ones")
    references_dir: Path | None = Field(None, description="imported reference versions (default var/references); "
                                        "the newest there is in force, else reference_rates")
    references_max_age_days: float = Field(30.0, gt=0, description="a night warns when a provider's newest "
                                           "reference price is older than this")
    overrides: Path | None = Field(None, description="pricing overrides TOML (default var/overrides.toml; missing = none)")
    providers: list[str] = Field(default_factory=lambda: ["aws", "azure"])
    reference_regions: list[str] | None = Field(None, description="None = every standard region in the file")
    gpu_catalog: Path = Field(DATA_DIR / "gpu_catalog.csv", description="GPU classes: references, factors, costs")
    gpu_alias_file: Path = Field(DATA_DIR / "gpu_aliases.csv", description="GPU name spellings -> catalogue class")
    gpu_aliases: dict[str, str] = Field(default_factory=dict,
                                        description="telemetry GPU name -> catalogue class, checked before the catalogue")
    region: str = Field("dc1", description="region label of items (pool_regions overrides per pool)")
    pool_regions: dict[str, str] = Field(default_factory=dict)
    currency: str = "USD"
    costs: dict[str, CostSettings] = Field(default_factory=dict, description="per GPU class or telemetry name, over the catalogue's")
    usd_per_kwh: float = Field(0.12, gt=0)
    pue: float = Field(1.3, ge=1)
    demand: DemandSettings = DemandSettings()
    demand_by_product: dict[str, DemandSettings] = Field(default_factory=dict)
    demand_min_items: int = Field(30, ge=5, description="published items with bookings needed to refit a curve")
    min_undercut: float = Field(0.10, ge=0, lt=1)
    max_daily_change: float = Field(0.15, gt=0, lt=1)
    block_hours: int = Field(6, ge=1, le=24)
    spot_days: int = Field(7, ge=1)
    spot_offer_quantile: float = Field(0.20, gt=0, lt=1, description="spot GPUs per block: the most whose "
                                       "interruption risk stays at or under this (the block minimum's quantile)")
    reserved_terms_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    term_discount: dict[int, float] = Field(default_factory=lambda: {1: 0.0, 7: 0.05, 30: 0.12})
    reclaim_penalty_multiple: float = Field(20.0, gt=0)
    reserved_max_quantile: float = Field(0.10, gt=0, lt=0.5)
    reserved_break_target: float = Field(0.05, gt=0, lt=0.5, description="per-lease break probability a reserved "
                                         "offer may carry (chosen on the early backtest origins)")
    spot_risk_aversion: float = Field(1.0, ge=0, le=1, description="a spot block with interruption risk r is worth "
                                      "(1 - a r) of a sure GPU-hour to a customer")
    spot_reference_risk: float = Field(0.05, ge=0, lt=1, description="interruption risk customers already accept "
                                       "at the reference price (AWS spot)")
    risk: RiskModelSettings = RiskModelSettings()
    min_gpus: int = Field(1, ge=1)
    valid_hours: int = Field(24, ge=1)
    stale_after_hours: float = Field(6.0, gt=0, description="newest telemetry older than this vs as_of holds the sheet")
    pool_stale_hours: float = Field(6.0, gt=0)
    diff_threshold: float = Field(0.05, gt=0)
    experiment: str = "idlecap-pricing"
    backtest_model: str = Field("lgbm", description="forecaster replayed by the pricing backtest")
    backtest_windows: int = Field(10, ge=1)
    backtest_lead_hours: int = Field(6, ge=0, description="hours between the forecast origin and the reserved start")
    naive_discount: float = Field(0.20, ge=0, lt=1, description="the naive policy's flat discount under the ceiling reference")

    @field_validator("providers", "reference_regions", "reserved_terms_days", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return split_commas(v)

    @model_validator(mode="after")
    def _rules_valid(self) -> "PricingSettings":
        self.rules()  # PricingRules checks the combination (e.g. a discount for every term)
        return self

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "gpu_model_map" in data:
            raise ValueError("pricing.gpu_model_map was replaced by the GPU catalogue: map a telemetry GPU name to a "
                             "catalogue class with [pricing.gpu_aliases] (e.g. \"A100\" = \"A100-80GB\")")
        return data

    def rules(self):
        from pricing.rules import PricingRules

        return PricingRules(
            min_undercut=self.min_undercut, max_daily_change=self.max_daily_change, block_hours=self.block_hours,
            spot_days=self.spot_days, spot_offer_quantile=self.spot_offer_quantile,
            reserved_terms_days=tuple(sorted(self.reserved_terms_days)), term_discount=dict(self.term_discount),
            reclaim_penalty_multiple=self.reclaim_penalty_multiple, reserved_max_quantile=self.reserved_max_quantile,
            reserved_break_target=self.reserved_break_target, spot_risk_aversion=self.spot_risk_aversion,
            spot_reference_risk=self.spot_reference_risk,
            min_gpus=self.min_gpus, valid_hours=self.valid_hours, stale_after_hours=self.stale_after_hours,
            pool_stale_hours=self.pool_stale_hours, usd_per_kwh=self.usd_per_kwh, pue=self.pue,
        )

    @model_validator(mode="after")
    def _gpu_names_valid(self) -> "PricingSettings":
        """Aliases and cost keys must name catalogue classes: a bad one fails at load, not mid-night."""
        self.catalog()
        return self

    def catalog(self):
        """The GPU catalogue, with this operator's aliases and cost keys checked against it."""
        from pricing.catalog import GpuCatalog

        cat = GpuCatalog.load(self.gpu_catalog, self.gpu_alias_file)
        self.gpu_aliases = cat.check_aliases(self.gpu_aliases)  # canonical class names
        cat.check_cost_keys(self.costs, self.gpu_aliases)
        return cat

    def cost_overrides(self) -> dict[str, dict[str, float]]:
        return {k: v.model_dump(exclude_none=True) for k, v in self.costs.items()}

    def demand_model(self):
        from pricing.demand import DemandModel
        from pricing.rules import DemandPrior

        return DemandModel(
            DemandPrior(self.demand.elasticity, self.demand.share_at_reference), self.demand_min_items,
            {p: DemandPrior(d.elasticity, d.share_at_reference) for p, d in self.demand_by_product.items()},
        )


class NightlySettings(BaseModel):
    """The nightly flow (`idlecap nightly`, `idlecap schedule`): ingest -> forecast -> price -> publish."""

    model_config = ConfigDict(extra="forbid")

    inbox: list[str] = Field(default_factory=list, description="telemetry files, directories or globs to ingest each night")
    source: str = Field("canonical", description="telemetry format of the inbox files")
    calendar: list[str] = Field(default_factory=list, description="training-cycle plan files to ingest each night")
    retrain_every_days: float = Field(7.0, gt=0, description="retrain when the champion's data is this much older")
    retrain_if_relative_mae_above: float = Field(
        1.0, gt=0, description="retrain when last week's forecasts had more than this x the seasonal-naive MAE")
    live_check_min_points: int = Field(48, ge=1, description="scored hours needed before the live check can trigger")
    replay: bool = Field(False, description="price as of the newest telemetry hour + 1 h instead of now (replays, demo)")
    cron: str = Field("0 2 * * *", description="when `idlecap schedule` runs the night")
    timezone: str = Field("UTC", description="time zone of the cron")
    deployment: str = "idlecap-nightly"
    prefect_port: int = Field(4200, ge=1, le=65535, description="port of the local Prefect server `idlecap schedule` "
                              "starts when PREFECT_API_URL is not set")
    experiment: str = "idlecap-nightly"
    prefect_start_timeout_s: int = Field(180, ge=10, description="how long a command waits for Prefect's ephemeral "
                                         "API server to start (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS wins when set)")
    fan_charts: int = Field(6, ge=0, description="besides a fan chart for every pool with an offer or a price move, "
                            "one for this many of the largest other pools")

    @field_validator("inbox", "calendar", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return split_commas(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        ZoneInfo(v)  # raises for an unknown zone
        return v


class ApiSettings(BaseModel):
    """The leasing API (`idlecap serve`). It reads only `sheets_dir` and the key file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    keys_path: Path | None = Field(None, description="hashed API keys (default var/api_keys.json)")
    reload_seconds: float = Field(1.0, gt=0, le=3600, description="how often a newer sheet or key file is looked for")
    max_body_bytes: int = Field(16_384, ge=256)
    page_size: int = Field(100, ge=1, le=1000, description="GET /v1/prices items per page when limit is not given")
    access_log: bool = True
    region_locations: dict[str, str] = Field(default_factory=dict, description="region code -> where it is, in words "
                                             "(e.g. dc1 = \"Frankfurt, Germany\"); customers see `unknown` otherwise")

    @field_validator("region_locations", mode="before")
    @classmethod
    def _json_map(cls, v: Any) -> Any:
        """From the environment: IDLECAP_API__REGION_LOCATIONS='{"dc1": "Frankfurt, Germany"}'."""
        return json.loads(v) if isinstance(v, str) else v


class Settings(BaseModel):
    """Every path defaults under `var_dir`; each can point elsewhere (or at a server) by config."""

    model_config = ConfigDict(extra="forbid")

    var_dir: Path = Path("var")
    duckdb_path: Path | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts: str | None = None
    sheets_dir: Path | None = None
    prefect_home: Path | None = None
    warehouse: WarehouseSettings = WarehouseSettings()
    compute: ComputeSettings = ComputeSettings()
    ingest: IngestSettings = IngestSettings()
    sources: SourceSettings = SourceSettings()
    forecast: ForecastSettings = ForecastSettings()
    pricing: PricingSettings = PricingSettings()
    api: ApiSettings = ApiSettings()
    nightly: NightlySettings = NightlySettings()

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
        if self.pricing.references_dir is None:
            self.pricing.references_dir = v / "references"
        if self.pricing.overrides is None:
            self.pricing.overrides = v / "overrides.toml"
        if self.warehouse.temp_directory is None:
            self.warehouse.temp_directory = v / "duckdb_tmp"
        if self.compute.scratch_dir is None:
            self.compute.scratch_dir = v / "work"
        if self.api.keys_path is None:
            self.api.keys_path = v / "api_keys.json"

    def ensure_dirs(self) -> None:
        for p in (self.var_dir, Path(self.duckdb_path).parent, self.sheets_dir, self.prefect_home):
            Path(p).mkdir(parents=True, exist_ok=True)


ENV_PREFIX = "IDLECAP_"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = {"warehouse", "compute", "ingest", "sources", "forecast", "pricing", "api", "nightly"}
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
    # a busy 2-core machine can take over a minute to start Prefect's ephemeral server
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(settings.nightly.prefect_start_timeout_s))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
