"""MLflow experiments created with an explicit artifact location (STACK.md: otherwise relative to cwd)."""
from __future__ import annotations

from pathlib import Path

from pipelines.settings import Settings


def ensure_experiment(settings: Settings, name: str) -> str:
    """Point MLflow at the configured store; the experiment's id, created under mlflow_artifacts if new."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    art = settings.mlflow_artifacts
    if "://" not in art:
        art = Path(art).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=art)
