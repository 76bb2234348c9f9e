"""Champion promotion against a real MLflow sqlite store."""
from __future__ import annotations

import mlflow
import numpy as np
import pytest

from models.naive import SeasonalNaive
from models.registry import CHAMPION, load_champion, log_forecaster, register_and_promote


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    yield uri
    mlflow.set_tracking_uri(None)


def _version(model, score, name="fc"):
    with mlflow.start_run():
        info = log_forecaster(model)
        return register_and_promote(info.model_uri, name, score, "mase_median")


def test_champion_moves_only_to_a_better_backtest(store, fleet):
    df, _ = fleet
    model = SeasonalNaive(24).fit(df)
    v1 = _version(model, 1.00)
    assert v1.promoted and v1.reason == "no champion yet"
    v2 = _version(model, 1.20)
    assert not v2.promoted and v2.champion_before == v1.version
    v3 = _version(model, 1.00)  # a tie does not move it
    assert not v3.promoted
    v4 = _version(model, 0.90)
    assert v4.promoted and v4.champion_before == v1.version
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("fc", CHAMPION).version) == v4.version
    tags = client.get_model_version("fc", v2.version).tags
    assert tags["backtest_mase_median"] == "1.2000" and tags["promotion"].startswith("not promoted:")
    loaded, version, run_id = load_champion("fc")
    assert version == v4.version and run_id
    a = model.predict(24)
    b = loaded.predict(24)
    assert np.allclose(a["mean"], b["mean"]) and np.allclose(a["q90"], b["q90"])


def test_nan_score_is_never_promoted_and_missing_champion_is_a_clear_error(store, fleet):
    df, _ = fleet
    with pytest.raises(LookupError, match="run `idlecap train` first"):
        load_champion("nothing")
    v = _version(SeasonalNaive(24).fit(df), float("nan"), name="fc2")
    assert not v.promoted
