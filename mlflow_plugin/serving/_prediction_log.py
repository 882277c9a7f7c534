"""The prediction log: every scored row, written off the request path into a SQL table.

:meth:`PredictionLog.log` puts one reference-only record on a bounded in-memory queue and
returns; it never waits. When the queue is full the record is dropped and counted. One background
thread turns records into rows (JSON, digests) and inserts them in batches with SQLAlchemy Core,
so the cost of serialising and writing is paid by the writer, not by the request.

The table (default name ``predictions``) holds one row per scored input row, so later work can
join predictions to actual outcomes by ``entity_key`` or ``input_digest``:

============== ===================================================================================
column         meaning
============== ===================================================================================
id             surrogate key
request_id     the request (``X-Request-Id`` header or generated), shared by the rows of a batch
row_index      position of the row in its request
ts             when the request was answered (UTC)
model_name     registered model name
model_version  the version that answered (NULL when nothing could answer)
route          the role: ``champion``, ``fallback``, ``canary``, ``previous``; ``preview`` for
               blue-green's mirrored scoring; a failed canary attempt is a ``canary`` row with
               ``error`` set, before the row of the backup that answered
fallback       true when the answer did not come from the first route of the plan
latency_ms     time spent in ``ChampionModel.predict`` for the whole request
input_digest   SHA-256 of ``features`` (the row's JSON, keys sorted) - recomputable by anyone
features       the row's input as a JSON object (NULL when feature logging is off)
output         the row's output as JSON (an object for DataFrame outputs, else a value)
error          why the request failed (NULL on success)
guardrail_flags comma-separated broken guardrails (``non_finite``, ``latency_budget`` ...) or ''
entity_key     the ``X-Entity-Key`` header's value for the row, else the configured key column's
               value, for joining outcomes (NULL if neither)
============== ===================================================================================
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin._internal.background import BackgroundQueue
from mlflow_plugin._internal.sql import redact_sql_uri, sqlalchemy_uri
from mlflow_plugin.errors import ConfigError

__all__ = ["DEFAULT_URI", "PredictionLog", "PredictionRecord", "prediction_table"]

DEFAULT_URI = "sqlite:///predictions.db"
#: ``DataFrame.attrs`` key under which serving passes the X-Entity-Key header's keys.
ENTITY_KEYS_ATTR = "mlflow_plugin.entity_keys"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionRecord:
    """What :meth:`PredictionLog.log` queues: references only, serialised by the writer."""

    request_id: str
    ts: float
    model_name: str
    model_version: str | None
    route: str | None
    fallback: bool
    latency_s: float
    features: Any
    output: Any
    error: str | None = None
    flags: tuple[str, ...] = ()


def prediction_table(metadata: Any, name: str = "predictions") -> Any:
    """The prediction table on a SQLAlchemy ``MetaData`` (see the module docstring)."""
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Float,
        Index,
        Integer,
        String,
        Table,
        Text,
    )

    return Table(
        name,
        metadata,
        # SQLite only auto-increments INTEGER PRIMARY KEY.
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("request_id", String(64), nullable=False, index=True),
        Column("row_index", Integer, nullable=False),
        Column("ts", DateTime(timezone=True), nullable=False),
        Column("model_name", String(256), nullable=False),
        Column("model_version", String(32)),
        Column("route", String(32)),
        Column("fallback", Boolean, nullable=False, default=False),
        Column("latency_ms", Float, nullable=False),
        Column("input_digest", String(64), index=True),
        Column("features", Text),
        Column("output", Text),
        Column("error", Text),
        Column("guardrail_flags", String(256), nullable=False, default=""),
        Column("entity_key", String(256), index=True),
        Index(f"ix_{name}_model_ts", "model_name", "ts"),
    )


class PredictionLog:
    """A bounded queue and a background writer into a SQL table.

    Args:
        uri: SQLAlchemy URI (``sqlite:///predictions.db`` default; ``postgresql://...``).
        table: table name (created if missing).
        max_queue: queued requests before new ones are dropped (counted in ``dropped``).
        batch_size: most requests written per transaction.
        linger: seconds the writer waits for more entries before a transaction, so that under
            load one commit carries many requests (entries are never older than this when
            written, unless the database is slower than the traffic).
        log_features: store each row's input (the digest is stored either way).
        key_column: input column whose value goes to ``entity_key``.
        start: start the writer thread now (tests start it later to fill the queue).

    Raises:
        ConfigError: the URI cannot be used (bad scheme, unreachable database).
    """

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        *,
        table: str = "predictions",
        max_queue: int = 10_000,
        batch_size: int = 500,
        linger: float = 0.05,
        log_features: bool = True,
        key_column: str | None = None,
        start: bool = True,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ConfigError("prediction log: max_queue and batch_size must be >= 1")
        from sqlalchemy import MetaData, create_engine
        from sqlalchemy.exc import SQLAlchemyError

        self.uri = uri
        self.batch_size = batch_size
        self.linger = linger
        self.log_features = log_features
        self.key_column = key_column
        try:
            self.engine = create_engine(sqlalchemy_uri(uri))
            if self.engine.dialect.name == "sqlite":
                _tune_sqlite(self.engine)
            self.table = prediction_table(MetaData(), table)
            self.table.metadata.create_all(self.engine)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ConfigError(f"prediction log {redact_sql_uri(uri)}: {exc}") from exc
        self._writer = BackgroundQueue(
            self._write,
            name="prediction-log",
            max_queue=max_queue,
            max_batch=batch_size,
            linger=linger,
        )
        self._lock = threading.Lock()
        self._counts = {
            "enqueued": 0,
            "dropped": 0,
            "written_requests": 0,
            "written_rows": 0,
            "failed_requests": 0,
        }
        if start:
            self.start()

    # -- request path --------------------------------------------------------------------
    def log(self, record: PredictionRecord) -> bool:
        """Queue ``record`` without waiting; False (and counted) if it was dropped."""
        if not self._writer.put(record):
            with self._lock:
                self._counts["dropped"] += 1
            return False
        with self._lock:
            self._counts["enqueued"] += 1
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._writer.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to ``timeout``) and stop the writer."""
        if self._writer.closed:
            return
        self._writer.close(timeout)
        self.engine.dispose()

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, dropped, written_requests, written_rows, failed_requests, queued."""
        with self._lock:
            out = dict(self._counts)
        out["queued"] = self._writer.qsize()
        return out

    # -- writer (on the writer's thread) --------------------------------------------
    def _write(self, batch: list[PredictionRecord]) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        rows: list[dict[str, Any]] = []
        try:
            for record in batch:
                rows.extend(self._rows(record))
            with self.engine.begin() as conn:
                conn.execute(self.table.insert(), rows)
        except (SQLAlchemyError, ValueError, TypeError, OSError) as exc:
            with self._lock:
                self._counts["failed_requests"] += len(batch)
            _log.warning("prediction log: could not write %d requests: %s", len(batch), exc)
            return
        with self._lock:
            self._counts["written_requests"] += len(batch)
            self._counts["written_rows"] += len(rows)

    def _rows(self, record: PredictionRecord) -> list[dict[str, Any]]:
        features = _json_rows(record.features)
        outputs: list[str | None] = list(_json_rows(record.output)) if record.error is None else []
        n = max(len(features), 1)
        if len(outputs) != n and outputs:
            # Output not aligned with the input rows: keep it whole on the first row.
            outputs = [_json_whole(record.output)] + [None] * (n - 1)
        # The request's X-Entity-Key header travels with its frame (``attrs``); else the column.
        header = getattr(record.features, "attrs", {}).get(ENTITY_KEYS_ATTR)
        keys: list[str | None] | None = list(header) if header else None
        if keys is None and self.key_column:
            keys = _key_values(record.features, self.key_column)
        ts = datetime.fromtimestamp(record.ts, tz=UTC)
        flags = ",".join(record.flags)[:256]
        base = {
            "request_id": record.request_id[:64],
            "ts": ts,
            "model_name": record.model_name,
            "model_version": record.model_version,
            "route": record.route,
            "fallback": record.fallback,
            "latency_ms": record.latency_s * 1000.0,
            "error": record.error,
            "guardrail_flags": flags,
        }
        out = []
        for i in range(n):
            text = features[i] if i < len(features) else None
            out.append(
                {
                    **base,
                    "row_index": i,
                    "input_digest": hashlib.sha256(text.encode()).hexdigest()
                    if text is not None
                    else None,
                    "features": text if self.log_features else None,
                    "output": outputs[i] if i < len(outputs) else None,
                    "entity_key": _clip(
                        keys[i] if keys is not None and i < len(keys) else None, 256
                    ),
                }
            )
        return out


def _json_rows(obj: Any) -> list[str]:
    """One JSON text per row of ``obj``: keys sorted, NaN and inf as null, floats as Python
    writes them - the same text whatever the size of the request, so digests match."""
    import numpy as np
    import pandas as pd

    if obj is None:
        return []
    if isinstance(obj, pd.DataFrame):
        if obj.shape[0] == 0:
            return []
        names = [str(c) for c in obj.columns]
        order = sorted(range(len(names)), key=names.__getitem__)
        keys = [names[i] for i in order]
        values = obj.to_numpy()
        if order != list(range(len(names))):
            values = values[:, order]
        return [_dumps(dict(zip(keys, row, strict=True))) for row in values.tolist()]
    if isinstance(obj, pd.Series | np.ndarray):
        return [_dumps(v) for v in obj.tolist()] if np.ndim(obj) >= 1 else [_dumps(obj.tolist())]
    if isinstance(obj, list):
        return [_dumps(v) for v in obj]
    return [_json_whole(obj)]


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, allow_nan=False, default=lambda o: _plain(o)
)


def _dumps(value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except ValueError:  # NaN or inf somewhere: rare, so cleaned only then
        return _ENCODER.encode(_finite(value))


def _plain(value: Any) -> Any:
    """What the encoder cannot write itself: NumPy scalars and arrays, timestamps, the rest as text."""
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _json_whole(obj: Any) -> str:
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    return _dumps(_get_jsonable_obj(obj, pandas_orient="records"))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def _key_values(features: Any, column: str) -> list[str | None] | None:
    import pandas as pd

    if isinstance(features, pd.DataFrame) and column in features.columns:
        return [None if pd.isna(v) else str(v) for v in features[column].tolist()]
    return None


def _tune_sqlite(engine: Any) -> None:
    """WAL and synchronous=NORMAL: a commit no longer waits for an fsync (still crash-safe)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _clip(value: str | None, width: int) -> str | None:
    return value[:width] if value else None
