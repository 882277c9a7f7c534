"""``ServeConfig``: the settings of ``mlflow-plugin serve``, one frozen value built once.

The click command builds it from its options (whose defaults are this class's), then hands it to
:meth:`ChampionModel.from_config <mlflow_plugin.serving._loader.ChampionModel.from_config>` (what
answers) and to :func:`~mlflow_plugin.serving._app.create_app` (the HTTP server around it).
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_plugin._internal.asgi import DEFAULT_MAX_BODY_MB
from mlflow_plugin.errors import ConfigError
from mlflow_plugin.serving._guardrails import Guardrails, parse_columns
from mlflow_plugin.serving._inputs import InputGuard
from mlflow_plugin.serving._prediction_log import DEFAULT_URI, PredictionLog

__all__ = ["ServeConfig"]

_LOG_OFF = ("none", "off", "")


@dataclass(frozen=True)
class ServeConfig:
    """How ``serve`` answers: the server, the registry poll, the guardrails and the log.

    Attributes:
        host: address to listen on.
        port: port to listen on.
        poll_interval: seconds between two reads of the registry.
        log_uri: SQLAlchemy URI of the prediction log; ``none``/``off``/empty switch it off.
        log_queue_size: queued predictions before new ones are dropped (and counted).
        log_features: store each row's input features (the digest is stored either way).
        key_column: input column stored as ``entity_key`` (and the canary split's key when no
            ``X-Entity-Key`` header was sent).
        guard_mode: output guardrails, ``enforce``, ``observe`` or ``off``.
        probability_columns: comma-separated probability columns (None: columns named ``p_*``).
        latency_budget_ms: answers slower than this are flagged (and counted).
        event_interval: seconds between two ledger events of the same kind.
        input_mode: input guardrails, ``enforce``, ``observe`` or ``off``.
        mirror_queue: mirrored (blue-green) requests waiting before new ones are dropped.
        max_body_mb: request bodies larger than this get 413, enforced while reading.
        request_timeout: seconds from the first byte to the answer before a 503 (None: none).
        max_batch_rows: adaptive batching stops gathering at this many rows.
        max_batch_wait_ms: adaptive batching waits at most this long for more requests; 0 turns
            batching off (each request is its own ``predict`` call).
        docs: serve ``/docs`` and ``/openapi.json``.
        access_log: uvicorn's access log.

    Raises:
        ConfigError: ``max_body_mb`` or ``request_timeout`` is not > 0.
    """

    host: str = "127.0.0.1"
    port: int = 5001
    poll_interval: float = 5.0
    log_uri: str = DEFAULT_URI
    log_queue_size: int = 10_000
    log_features: bool = True
    key_column: str | None = None
    guard_mode: str = "enforce"
    probability_columns: str | None = None
    latency_budget_ms: float | None = None
    event_interval: float = 60.0
    input_mode: str = "enforce"
    mirror_queue: int = 1000
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    request_timeout: float | None = 60.0
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 2.0
    docs: bool = False
    access_log: bool = False

    def __post_init__(self) -> None:
        if not self.max_body_mb > 0:
            raise ConfigError(f"--max-body-mb must be > 0, got {self.max_body_mb}")
        if self.request_timeout is not None and not self.request_timeout > 0:
            raise ConfigError(f"--request-timeout must be > 0, got {self.request_timeout}")

    def guardrails(self) -> Guardrails:
        """The output rules ``guard_mode``, ``probability_columns`` and the budget describe."""
        if self.guard_mode == "off":
            return Guardrails.off(self.latency_budget_ms)
        return Guardrails(
            probability_columns=parse_columns(self.probability_columns),
            latency_budget_ms=self.latency_budget_ms,
            enforce=self.guard_mode == "enforce",
        )

    def input_guard(self) -> InputGuard:
        """The input rules of ``input_mode``."""
        return InputGuard(self.input_mode)

    def open_prediction_log(self) -> PredictionLog | None:
        """A new prediction log at ``log_uri`` (None when switched off); the caller closes it."""
        if self.log_uri.strip().lower() in _LOG_OFF:
            return None
        return PredictionLog(
            self.log_uri,
            max_queue=self.log_queue_size,
            log_features=self.log_features,
            key_column=self.key_column,
        )
