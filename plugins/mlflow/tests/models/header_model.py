"""An MLflow pyfunc model that reads forwarded headers exactly as H2O's runtime 2.0 guide shows.

Saved with MLflow's models-from-code, so the server process loads this file, not a pickle.
"""

import mlflow

from h2o_scorer_core.context import request_headers


class HeaderModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        headers = request_headers.get({})  # dict[str, str]
        token = headers.get("Authorization", "")
        return [token] * len(model_input)


mlflow.models.set_model(HeaderModel())
