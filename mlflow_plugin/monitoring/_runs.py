"""Monitoring runs: one MLflow run per model version in experiment ``mlflow_plugin-monitoring``.

The run's parameters hold the baseline frozen at promotion (the version's validate metrics,
and the backtest's precision and recall where validate has none): parameters cannot change, so
the baseline cannot drift. Window metrics are logged with ``step`` = window index, so MLflow's
run page charts them; ``monitoring.png`` draws them with the baseline and the thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlflow_plugin.mlflow_io._client import (
    configure_http_defaults,
    resolve_tracking_uri,
    wrap_mlflow_errors,
)
from mlflow_plugin.monitoring._windows import METRICS, Window
from mlflow_plugin.settings import MONITORING_EXPERIMENT_DEFAULT, TAG_PREFIX, monitoring_experiment

if TYPE_CHECKING:
    from mlflow_plugin.policy import PerformanceRules
    from mlflow_plugin.types import VersionInfo

__all__ = ["MONITORING_EXPERIMENT", "MonitoringRuns", "experiment_kind_tags"]

MONITORING_EXPERIMENT = MONITORING_EXPERIMENT_DEFAULT
#: MLflow 3 opens an experiment in its "Model training" view when this tag says so.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"


def experiment_kind_tags(note: str) -> dict[str, str]:
    """Tags of an experiment that MLflow's UI should open as "Model training"."""
    return {EXPERIMENT_KIND_TAG: "custom_model_development", "mlflow.note.content": note}


class MonitoringRuns:
    """The monitoring experiment on the tracking server at ``tracking_uri``."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        configure_http_defaults()
        from mlflow import MlflowClient

        self.uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment or monitoring_experiment()
        self.client = MlflowClient(tracking_uri=self.uri)
        self._exp_id: str | None = None

    def experiment_id(self) -> str:
        if self._exp_id is not None:
            return self._exp_id
        from mlflow.exceptions import MlflowException

        with wrap_mlflow_errors("monitoring experiment", self.uri):
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                try:
                    self._exp_id = self.client.create_experiment(
                        self.experiment,
                        tags=experiment_kind_tags(
                            "Windowed performance of served model versions (mlflow_plugin)."
                        ),
                    )
                except MlflowException as exc:  # created concurrently
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = self.client.get_experiment_by_name(self.experiment)
                    assert exp is not None
                    self._exp_id = exp.experiment_id
            else:
                self._exp_id = exp.experiment_id
        return str(self._exp_id)

    def run_for(self, version: VersionInfo, promoted_ms: int) -> tuple[str, dict[str, float]]:
        """The version's monitoring run (created on first use, baseline frozen then) and its
        baseline."""
        exp_id = self.experiment_id()
        model, number = version.name, version.version
        query = f"tags.`{TAG_PREFIX}model` = '{_q(model)}' and tags.`{TAG_PREFIX}version` = '{_q(number)}'"
        with wrap_mlflow_errors("find the monitoring run", self.uri):
            found = self.client.search_runs(
                [exp_id], query, max_results=1, order_by=["attributes.start_time ASC"]
            )
        if found:
            run = found[0]
            baseline = {
                k.removeprefix("baseline_"): float(v)
                for k, v in run.data.params.items()
                if k.startswith("baseline_")
            }
            return run.info.run_id, baseline
        baseline = self.baseline_of(version)
        tags = {
            TAG_PREFIX + "model": model,
            TAG_PREFIX + "version": number,
            TAG_PREFIX + "monitor_state": "monitoring",
            "mlflow.runName": f"monitor {model} v{number}",
            "mlflow.note.content": (
                f"Realised performance of {model} version {number} on matured outcomes, per "
                "window since its promotion; the baseline parameters were frozen at promotion."
            ),
        }
        with wrap_mlflow_errors("create the monitoring run", self.uri):
            run = self.client.create_run(exp_id, start_time=promoted_ms, tags=tags)
            params = {f"baseline_{k}": f"{v:.6g}" for k, v in baseline.items()}
            params["promoted_at_ms"] = str(promoted_ms)
            from mlflow.entities import Param

            self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        return run.info.run_id, baseline

    def baseline_of(self, version: VersionInfo) -> dict[str, float]:
        """The version's validate metrics (backtest's precision/recall where validate has none)."""
        out: dict[str, float] = {}
        for tag, prefix in (
            (TAG_PREFIX + "gate_report", ""),
            (TAG_PREFIX + "backtest_report", "overall_"),
        ):
            run_id = version.tags.get(tag)
            if not run_id:
                continue
            with wrap_mlflow_errors("read the baseline", self.uri):
                try:
                    metrics = self.client.get_run(run_id).data.metrics
                except Exception:  # noqa: BLE001 - a deleted report run: no baseline from it
                    continue
            for name in METRICS:
                value = metrics.get(prefix + name)
                if name not in out and value is not None and math.isfinite(value):
                    out[name] = float(value)
        return out

    def decision_threshold(self, version: VersionInfo) -> float:
        """The training run's decision threshold (0.5 when it logged none)."""
        if version.run_id:
            try:
                params = self.client.get_run(version.run_id).data.params
                return float(params.get("decision_threshold", 0.5))
            except Exception:  # noqa: BLE001 - a model trained elsewhere
                return 0.5
        return 0.5

    def log_windows(self, run_id: str, windows: list[Window]) -> int:
        """Log the windows whose figures changed since the last pass; return how many."""
        from mlflow.entities import Metric

        with wrap_mlflow_errors("read the monitoring run", self.uri):
            history = self.client.get_metric_history(run_id, "matched")
        last = {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}
        logged = {m.step: m.value for m in self.client.get_metric_history(run_id, "matured")}
        metrics: list[Metric] = []
        import time

        now = int(time.time() * 1000)
        changed = 0
        for w in windows:
            if last.get(w.index) == w.counts.get("matched") and logged.get(w.index) == w.counts.get(
                "matured"
            ):
                continue
            changed += 1
            values: dict[str, float | None] = {**w.metrics, **w.rates}
            values.update({k: float(v) for k, v in w.counts.items()})
            metrics += [
                Metric(k, float(v), now, w.index) for k, v in values.items() if v is not None
            ]
        if metrics:
            with wrap_mlflow_errors("log window metrics", self.uri):
                for i in range(0, len(metrics), 1000):
                    self.client.log_batch(run_id, metrics=metrics[i : i + 1000])
        return changed

    def set_state(self, run_id: str, state: str) -> None:
        """``monitoring`` -> ``degraded`` -> ``rolled_back`` (the closed loop's state machine)."""
        with wrap_mlflow_errors("tag the monitoring run", self.uri):
            self.client.set_tag(run_id, TAG_PREFIX + "monitor_state", state)

    def log_plot(
        self,
        run_id: str,
        title: str,
        windows: list[Window],
        baseline: Mapping[str, float],
        rules: Sequence[tuple[str, PerformanceRules]],
    ) -> None:
        """``monitoring.png``: each metric per window, the baseline dashed, thresholds dotted."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 6.5))
        axes = fig.subplots(2, 2, sharex=True).ravel()
        x = [w.index for w in windows]
        for ax, name in zip(axes, METRICS, strict=True):
            y = [w.metrics.get(name) for w in windows]
            ax.plot(x, [math.nan if v is None else v for v in y], marker="o", label="window")
            if name in baseline:
                ax.axhline(baseline[name], linestyle="--", color="grey", label="baseline")
            for label, rule in rules:
                bound = _threshold(rule, name, baseline)
                if bound is not None:
                    ax.axhline(
                        bound,
                        linestyle=":",
                        color="red" if label == "rollback_if" else "orange",
                        label=label,
                    )
            ax.set_title(name)
            ax.set_xlabel("window since promotion")
            ax.legend(fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        with wrap_mlflow_errors("log the monitoring plot", self.uri):
            self.client.log_figure(run_id, fig, "monitoring.png")


def _threshold(rule: PerformanceRules, metric: str, baseline: Mapping[str, float]) -> float | None:
    if metric == "brier":
        if rule.brier_increase is None or "brier" not in baseline:
            return None
        return baseline["brier"] * (1 + rule.brier_increase)
    value: Any = getattr(rule, f"{metric}_below", None)
    return None if value is None else float(value)


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
