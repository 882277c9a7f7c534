"""A pyfunc model logged "from code" by the serving tests: its ``model_config`` sets what it does.

- ``risk``: the constant it returns (so each logged model is recognisable in a response);
- ``mode``: ``ok``, ``raise`` (predict fails), ``nan`` (output breaks the finite guardrail),
  ``badprob`` (probabilities that do not sum to 1) or ``echo`` (``risk`` is each row's ``age``,
  so a client can tell its rows from others'; a row with ``age == -1`` makes predict raise);
- ``sleep``: seconds each predict call waits first (a slow model).

The output has the pipeline's shape: a ``risk`` column and probability bucket columns ``p_*``.
"""

import time

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class ConstantRisk(PythonModel):
    def load_context(self, context):
        config = context.model_config or {}
        self.risk = float(config.get("risk", 0.5))
        self.mode = str(config.get("mode", "ok"))
        self.sleep = float(config.get("sleep", 0.0))

    def predict(self, context, model_input, params=None):
        time.sleep(self.sleep)
        if self.mode == "raise":
            raise RuntimeError("model is broken")
        n = len(model_input)
        risk = np.full(n, self.risk)
        low = np.full(n, 1.0 - self.risk)
        high = np.full(n, self.risk)
        if self.mode == "nan":
            risk[:] = np.nan
        if self.mode == "badprob":
            high = high + 0.5
        if self.mode == "echo":
            risk = model_input["age"].to_numpy(dtype=float)
            if (risk == -1).any():
                raise RuntimeError("poisoned row")
            low = np.full(n, 0.5)
            high = np.full(n, 0.5)
        return pd.DataFrame({"risk": risk, "p_low": low, "p_high": high})


mlflow.models.set_model(ConstantRisk())
