"""The pyfunc face of a fitted forecaster, logged as MLflow "model from code".

Input: a long history frame (unique_id, ds, y, gpus_total); param h (hours). Output: the
forecast frame. Logged by file path (not a pickled object), so loading it runs this reviewed
file and unpickles only the forecaster artifact.
"""
from __future__ import annotations

import joblib
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class ForecasterModel(PythonModel):
    def load_context(self, context):
        self.forecaster = joblib.load(context.artifacts["forecaster"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        h = int((params or {}).get("h", 24))
        return self.forecaster.predict(h, new_df=model_input)


mlflow.models.set_model(ForecasterModel())
