"""MLflow: log a fitted forecaster as a pyfunc model, register it, move `champion` by backtest.

The registered model wraps the whole fitted forecaster (joblib) so the nightly forecast flow
gets back exactly what was trained. The `champion` alias moves to a new version only when that
version's backtest score beats the champion's (lower is better, by at least
`min_improvement`); every version is tagged with its score and the decision, so the pricing
team can see why a version was or was not promoted.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

CHAMPION = "champion"


def log_forecaster(forecaster, name: str = "forecaster"):
    """Log the fitted forecaster into the active run; returns mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "unique_id"), ColSpec("datetime", "ds"), ColSpec("double", "y"),
                       ColSpec("double", "gpus_total")]),
        outputs=Schema([ColSpec("string", "unique_id"), ColSpec("datetime", "ds"), ColSpec("string", "model"),
                        ColSpec("double", "mean")] + [ColSpec("double", c) for c in
                                                      ("q05", "q10", "q25", "q50", "q75", "q90", "q95")]),
        params=ParamSchema([ParamSpec("h", "long", 24)]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "forecaster.joblib"
        joblib.dump(forecaster, path)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("mlflow_pyfunc.py")),
            artifacts={"forecaster": str(path)},
            signature=signature,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ["idlecap", "lightgbm", "statsmodels", "scikit-learn", "pandas", "numpy", "duckdb", "joblib"]
    out = []
    for p in pkgs:
        try:
            out.append(f"{p}=={version(p)}")
        except Exception:  # noqa: BLE001 - a missing optional package just is not pinned
            continue
    return out


@dataclass(frozen=True)
class Promotion:
    version: str
    promoted: bool
    score: float
    champion_before: str | None
    champion_score: float | None
    reason: str


def register_and_promote(
    model_uri: str,
    model_name: str,
    score: float,
    metric: str,
    min_improvement: float = 0.0,
    tags: dict[str, str] | None = None,
    description: str | None = None,
) -> Promotion:
    """Register model_uri as a new version; move `champion` to it only if its score is better.

    `description` (what it was trained on, its scores) is the version's text in the registry; the
    outcome of the comparison is appended to it."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    mv = mlflow.register_model(model_uri, model_name)
    version = str(mv.version)
    client.set_model_version_tag(model_name, version, f"backtest_{metric}", f"{float(score):.4f}")
    client.set_model_version_tag(model_name, version, "promotion_metric", metric)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(model_name, version, k, str(v))
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champ = None
    champ_score = None
    if champ is not None:
        raw = champ.tags.get(f"backtest_{metric}")
        champ_score = float(raw) if raw is not None else None
    if not np.isfinite(score):
        promoted, reason = False, f"score {metric} is not finite"
    elif champ is None:
        promoted, reason = True, "no champion yet"
    elif champ_score is None:
        promoted, reason = False, (f"champion v{champ.version} has no {metric} score to compare with; "
                                   f"move the alias by hand if this version should serve")
    elif score < champ_score * (1.0 - min_improvement):
        promoted, reason = True, f"{metric} {score:.4f} beats champion v{champ.version} {champ_score:.4f}"
    else:
        promoted, reason = False, f"{metric} {score:.4f} does not beat champion v{champ.version} {champ_score:.4f}"
    if promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    outcome = ("promoted to champion: " if promoted else "not promoted: ") + reason
    client.set_model_version_tag(model_name, version, "promotion", outcome)
    client.update_model_version(model_name, version, description="\n\n".join(x for x in (description, outcome) if x))
    return Promotion(version, promoted, float(score), None if champ is None else str(champ.version), champ_score, reason)


def load_champion(model_name: str):
    """(forecaster, version, run_id) of the current champion; LookupError when there is none."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        raise LookupError(f"no '{CHAMPION}' version of model {model_name!r}: run `idlecap train` first") from exc
    # load the version the alias pointed at when we asked, not whatever it points at a moment later
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{mv.version}")
    return model.unwrap_python_model().forecaster, str(mv.version), mv.run_id
