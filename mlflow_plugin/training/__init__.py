"""The retrain-and-promote steps behind the MLproject entry points and ``mlflow-plugin``.

``train`` fits and registers a challenger, ``validate`` and ``backtest`` gate it, ``promote`` and
``rollback`` call the controller, and ``main`` (:func:`run_pipeline`) runs the first four in one
process as nested runs of one parent run. Importing this package is cheap; the steps import
mlflow, lifelines and scikit-learn when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.training._backtest import run_backtest
    from mlflow_plugin.training._data import load_data, prepare
    from mlflow_plugin.training._params import (
        BacktestParams,
        Columns,
        TrainParams,
        ValidateParams,
    )
    from mlflow_plugin.training._pipeline import PipelineParams, PipelineResult, run_pipeline
    from mlflow_plugin.training._promote import run_promote, run_rollback
    from mlflow_plugin.training._train import run_train
    from mlflow_plugin.training._validate import run_validate

__all__ = [
    "BacktestParams",
    "Columns",
    "PipelineParams",
    "PipelineResult",
    "TrainParams",
    "ValidateParams",
    "load_data",
    "prepare",
    "run_backtest",
    "run_pipeline",
    "run_promote",
    "run_rollback",
    "run_train",
    "run_validate",
]

_LAZY = {
    "BacktestParams": "_params",
    "Columns": "_params",
    "TrainParams": "_params",
    "ValidateParams": "_params",
    "PipelineParams": "_pipeline",
    "PipelineResult": "_pipeline",
    "load_data": "_data",
    "prepare": "_data",
    "run_backtest": "_backtest",
    "run_pipeline": "_pipeline",
    "run_promote": "_promote",
    "run_rollback": "_promote",
    "run_train": "_train",
    "run_validate": "_validate",
}


# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
