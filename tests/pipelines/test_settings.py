"""The one settings object: defaults under var/, TOML file, IDLECAP_* environment."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.settings import load_settings


def test_embedded_defaults_live_under_var(tmp_path: Path) -> None:
    s = load_settings(environ={}, config=None) if not Path("idlecap.toml").exists() else None
    assert s is not None
    assert s.duckdb_path == Path("var/idlecap.duckdb")
    assert s.mlflow_tracking_uri == "sqlite:///var/mlflow.db"
    assert s.mlflow_artifacts == "var/mlartifacts"
    assert s.sheets_dir == Path("var/sheets") and s.prefect_home == Path("var/prefect")
    assert s.ingest.idle_util_threshold == 5.0 and s.ingest.future_tolerance_s == 600


def test_toml_then_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "idlecap.toml"
    cfg.write_text('var_dir = "/data/idle"\n[ingest]\nfuture_tolerance_s = 60\n[sources]\nhelios_gpu_model = "A100"\n')
    s = load_settings(cfg, environ={"IDLECAP_INGEST__FUTURE_TOLERANCE_S": "120",
                                    "IDLECAP_DUCKDB_PATH": "/db/x.duckdb"})
    assert s.var_dir == Path("/data/idle") and s.sheets_dir == Path("/data/idle/sheets")
    assert s.duckdb_path == Path("/db/x.duckdb")  # env beats file, file beats defaults
    assert s.ingest.future_tolerance_s == 120
    assert s.sources.options().helios_gpu_model == "A100"


def test_bad_settings_are_rejected_with_the_field_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown settings section 'ingset'"):
        load_settings(environ={"IDLECAP_INGSET__FUTURE_TOLERANCE_S": "1"})
    with pytest.raises(ValidationError, match="idle_util_threshold"):
        load_settings(environ={"IDLECAP_INGEST__IDLE_UTIL_THRESHOLD": "150"})
    with pytest.raises(ValidationError, match="typo_field"):
        load_settings(environ={"IDLECAP_TYPO_FIELD": "1"})
    with pytest.raises(FileNotFoundError):
        load_settings(environ={"IDLECAP_CONFIG": str(tmp_path / "missing.toml")})


def test_pricing_settings_from_toml_and_env(tmp_path) -> None:
    import pytest
    from pydantic import ValidationError

    from pipelines.settings import load_settings

    cfg = tmp_path / "idlecap.toml"
    cfg.write_text('[pricing]\nterm_discount = { 1 = 0.0, 7 = 0.1, 30 = 0.2 }\n[pricing.costs.H100]\npower_kw = 1.0\n')
    s = load_settings(cfg, environ={"IDLECAP_PRICING__MIN_UNDERCUT": "0.2", "IDLECAP_PRICING__PROVIDERS": "aws"})
    assert s.pricing.min_undercut == 0.2 and s.pricing.providers == ["aws"]
    assert s.pricing.rules().term_discount == {1: 0.0, 7: 0.1, 30: 0.2}
    assert s.pricing.cost_overrides() == {"H100": {"power_kw": 1.0}}  # only what the operator set
    from pricing.costs import cost_table

    cat = s.pricing.catalog()
    costs = cost_table(cat.resolve(["NVIDIA H100 80GB HBM3", "H100", "V100"]), cat, s.pricing.cost_overrides(),
                       s.pricing.usd_per_kwh, s.pricing.pue).set_index("gpu_model")
    assert costs.loc["H100", "power_kw"] == 1.0 and costs.loc["NVIDIA H100 80GB HBM3", "power_kw"] == 1.0  # by class
    assert costs.loc["H100", "amortization_usd_per_gpu_hour"] == 0.86  # unset fields keep the catalogue's
    assert costs.loc["V100", "floor"] < costs.loc["H100", "floor"]
    cfg.write_text('[pricing.gpu_model_map]\nA100 = ["A100-80GB"]\n')
    with pytest.raises(ValueError, match="replaced by the GPU catalogue.*gpu_aliases"):
        load_settings(cfg, environ={})
    cfg.write_text('[pricing.gpu_aliases]\n"GPU-series-1" = "no-such-class"\n')
    with pytest.raises(ValueError, match="unknown GPU class"):
        load_settings(cfg, environ={}).pricing.catalog()
    cfg.write_text('[pricing]\nterm_discount = { 1 = 0.0, 7 = 0.1, 30 = 0.2 }\n')
    with pytest.raises(ValidationError):
        load_settings(cfg, environ={"IDLECAP_PRICING__MAX_DAILY_CHANGE": "1.5"})
    cfg.write_text("[pricing]\nreserved_terms_days = [1, 14]\n")
    with pytest.raises(ValueError, match="term_discount"):
        load_settings(cfg, environ={})
