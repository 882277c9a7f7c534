"""Prometheus metrics of the server (``GET /metrics``, text format).

Request counts and the latency histogram are recorded by the HTTP layer; everything the loader
knows (predictions per version, fallbacks, guardrail violations, swaps, loaded versions, the
prediction log's queue and drops) is read from it at scrape time by a custom collector, so the
loader itself stays free of Prometheus. Each server gets its own ``CollectorRegistry``: several
servers can live in one process (tests) without clashing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_plugin.serving._loader import ChampionModel

__all__ = ["ServingMetrics"]

_PREFIX = "mlflow_plugin_serving"
# Scoring latencies range from sub-millisecond (tiny models, single rows) to seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServingMetrics:
    """The metrics of one server around one :class:`ChampionModel`."""

    def __init__(self, model: ChampionModel) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{_PREFIX}_requests",
            "Scoring requests by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.errors = Counter(
            f"{_PREFIX}_request_errors",
            "Scoring requests that failed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{_PREFIX}_request_latency_seconds",
            "Time to answer /invocations.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LoaderCollector(model))
        self._ok = self.requests.labels(code="200")

    def observe(self, code: int, seconds: float, reason: str | None = None) -> None:
        (self._ok if code == 200 else self.requests.labels(code=str(code))).inc()
        if reason is not None:
            self.errors.labels(reason=reason).inc()
        self.latency.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LoaderCollector:
    """Reads the loader's counters and state when Prometheus scrapes."""

    def __init__(self, model: ChampionModel) -> None:
        self.model = model

    def describe(self) -> list[Any]:
        return []  # families are produced at collect time only

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = self.model.counts()
        predictions = CounterMetricFamily(
            f"{_PREFIX}_predictions",
            "Requests answered, by model version and role.",
            labels=["version", "role"],
        )
        fallbacks = CounterMetricFamily(
            f"{_PREFIX}_fallbacks",
            "Requests answered by a backup route, by the first cause.",
            labels=["cause"],
        )
        canary_failures = CounterMetricFamily(
            f"{_PREFIX}_canary_failures",
            "Canary attempts that failed (the champion answered instead), by cause.",
            labels=["cause"],
        )
        violations = CounterMetricFamily(
            f"{_PREFIX}_guardrail_violations",
            "Guardrail violations, by rule and model version.",
            labels=["rule", "version"],
        )
        simple = {
            "swaps": "Champion swaps.",
            "load_failures": "Model versions that failed to load.",
            "unavailable": "Requests no version could answer.",
            "bad_input": "Requests refused by the model signature.",
            "poll_errors": "Registry polls that failed.",
        }
        singles = {k: CounterMetricFamily(f"{_PREFIX}_{k}", h) for k, h in simple.items()}
        totals = dict.fromkeys(simple, 0)
        for key, n in counts.items():
            kind = key[0]
            if kind == "predictions":
                predictions.add_metric([key[1], key[2]], n)
            elif kind == "fallbacks":
                fallbacks.add_metric([key[1]], n)
            elif kind == "canary_failures":
                canary_failures.add_metric([key[1]], n)
            elif kind == "guardrail":
                violations.add_metric([key[1], key[2]], n)
            elif kind in totals:
                totals[kind] += n
        for kind, family in singles.items():
            family.add_metric([], totals[kind])
        yield from (predictions, fallbacks, canary_failures, violations, *singles.values())

        loaded = GaugeMetricFamily(
            f"{_PREFIX}_model_loaded",
            "1 for each loaded version, by role.",
            labels=["role", "version"],
        )
        fleet = self.model._fleet
        for role, deployment in fleet.loaded.items():
            loaded.add_metric([role, deployment.version], 1)
        yield loaded
        yield from _rollout_families(fleet, self.model.mirror.stats())

        log = self.model.prediction_log
        if log is not None:
            stats = log.stats()
            for name, help_text in (
                ("dropped", "Prediction log entries dropped because the queue was full."),
                ("written_rows", "Prediction rows written to the database."),
                ("failed_requests", "Prediction log entries the writer could not store."),
            ):
                family = CounterMetricFamily(f"{_PREFIX}_prediction_log_{name}", help_text)
                family.add_metric([], stats[name])
                yield family
            queued = GaugeMetricFamily(
                f"{_PREFIX}_prediction_log_queued", "Entries waiting to be written."
            )
            queued.add_metric([], stats["queued"])
            yield queued
        events = self.model.events.stats()
        ledger = CounterMetricFamily(
            f"{_PREFIX}_ledger_events",
            "Serving events for the ledger, by outcome.",
            labels=["outcome"],
        )
        for outcome, n in events.items():
            ledger.add_metric([outcome], n)
        yield ledger


def _rollout_families(fleet: Any, mirror: dict[str, int]) -> Iterator[Any]:
    """The rollout: its canary weight and phase, and what blue-green mirroring did."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from mlflow_plugin.serving._rollout_router import rollout_status

    state = rollout_status(fleet, mirror) or {}
    weight = GaugeMetricFamily(
        f"{_PREFIX}_rollout_weight",
        "Share of requests (percent) the canary gets; 0 without a canary.",
        labels=["strategy", "phase", "version"],
    )
    if "strategy" in state:
        weight.add_metric(
            [str(state["strategy"]), str(state["phase"]), str(state["version"])],
            float(state["weight"]),  # type: ignore[arg-type]
        )
    yield weight
    mirrored = CounterMetricFamily(
        f"{_PREFIX}_mirror",
        "Blue-green mirrored requests by outcome: submitted, dropped (queue full), scored, "
        "predicts (predict calls), agree / disagree (with the client's answer), errors.",
        labels=["outcome"],
    )
    for outcome, n in mirror.items():
        if outcome != "queued":
            mirrored.add_metric([outcome], n)
    yield mirrored
    queued = GaugeMetricFamily(
        f"{_PREFIX}_mirror_queued", "Mirrored requests waiting to be scored."
    )
    queued.add_metric([], mirror.get("queued", 0))
    yield queued
