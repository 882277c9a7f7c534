"""Actual outcomes beside the prediction log, and the join that matches them to predictions.

The ``outcomes`` table lives in the prediction log's database (SQLite by default, PostgreSQL
works), one row per ``(model_name, entity_key)``:

============= ======================================================================================
column        meaning
============= ======================================================================================
model_name    registered model name
entity_key    the key serving recorded in the prediction log's ``entity_key``
duration      survival: time from the prediction's origin to the event or to the last follow-up
event         survival: true if the event was observed at ``duration``
label         classifier: the 0/1 outcome
observed_at   when the outcome was known (UTC); a prediction made after it is not matched
ingested_at   when this row was last written
============= ======================================================================================

Ingesting is an upsert: the same file twice changes nothing; a longer follow-up of an entity
(censored at 10, event at 30) updates its row. Matching joins on ``entity_key`` and keeps, per
entity, the earliest prediction of the version made before the outcome was observed (the
forecast, not a later re-score).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlflow_plugin._internal.sql import redact_sql_uri, sqlalchemy_uri
from mlflow_plugin.errors import ConfigError, DataError

__all__ = ["IngestResult", "OutcomeStore", "outcomes_table"]

_CHUNK = 50_000


def outcomes_table(metadata: Any, name: str = "outcomes") -> Any:
    """The outcomes table on a SQLAlchemy ``MetaData`` (see the module docstring)."""
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Float,
        Integer,
        String,
        Table,
        UniqueConstraint,
    )

    return Table(
        name,
        metadata,
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("model_name", String(256), nullable=False),
        Column("entity_key", String(256), nullable=False),
        Column("duration", Float),
        Column("event", Boolean),
        Column("label", Integer),
        Column("observed_at", DateTime(timezone=True)),
        Column("ingested_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("model_name", "entity_key", name=f"uq_{name}_model_entity"),
    )


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did: rows ``inserted``, ``updated`` (new values) and ``unchanged``."""

    inserted: int
    updated: int
    unchanged: int

    def __str__(self) -> str:
        return f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"


class OutcomeStore:
    """Outcomes and predictions in one SQL database.

    Args:
        uri: SQLAlchemy URI of the prediction log (``sqlite:///predictions.db`` default).
        predictions: name of the prediction table (as ``mlflow-plugin serve`` writes it).
        outcomes: name of the outcomes table (created if missing).

    Raises:
        ConfigError: the database cannot be used.
    """

    def __init__(
        self,
        uri: str = "sqlite:///predictions.db",
        *,
        predictions: str = "predictions",
        outcomes: str = "outcomes",
    ) -> None:
        from sqlalchemy import DateTime, MetaData, String, Text, column, create_engine, table
        from sqlalchemy.exc import SQLAlchemyError

        self.uri = uri
        try:
            self.engine = create_engine(sqlalchemy_uri(uri))
            self.outcomes = outcomes_table(MetaData(), outcomes)
            self.outcomes.metadata.create_all(self.engine)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise ConfigError(f"outcomes database {redact_sql_uri(uri)}: {exc}") from exc
        # The prediction table is serving's; only the columns read here are named (typed, so
        # times are bound exactly as the log wrote them).
        self.predictions = table(
            predictions,
            column("ts", DateTime(timezone=True)),
            *(
                column(n, String())
                for n in ("model_name", "model_version", "request_id", "entity_key")
            ),
            *(column(n, Text()) for n in ("output", "error", "guardrail_flags", "features")),
        )
        self.dialect = self.engine.dialect.name
        self._predictions_seen = False

    def close(self) -> None:
        self.engine.dispose()

    def _has_predictions(self) -> bool:
        """Whether serving has created its table yet (nothing served: nothing to match)."""
        if not self._predictions_seen:
            from sqlalchemy import inspect

            with self._reading():
                self._predictions_seen = inspect(self.engine).has_table(self.predictions.name)
        return self._predictions_seen

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        """A connection; database errors become one ConfigError naming the prediction log."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            raise ConfigError(f"prediction log {redact_sql_uri(self.uri)}: {reason}") from exc

    # -- ingest --------------------------------------------------------------------------
    def ingest(
        self,
        model: str,
        frame: pd.DataFrame,
        *,
        entity_col: str,
        duration_col: str | None = None,
        event_col: str | None = None,
        label_col: str | None = None,
        observed_col: str | None = None,
        now: datetime | None = None,
    ) -> IngestResult:
        """Upsert the outcomes in ``frame`` for ``model``; nothing is written if a row is bad.

        Give ``duration_col`` and ``event_col`` (survival) or ``label_col`` (classifier).

        Raises:
            DataError: a named column is missing, a value is invalid, or an entity appears
                twice with different outcomes.
        """
        rows = _outcome_rows(frame, entity_col, duration_col, event_col, label_col, observed_col)
        stamp = now or datetime.now(UTC)
        existing = self._existing(model, rows["entity_key"].tolist())
        merged = rows.merge(existing, on="entity_key", how="left", suffixes=("", "_old"))
        known = merged["id"].notna().to_numpy()
        same = known.copy()
        for col in ("duration", "event", "label", "observed_at"):
            new, old = merged[col], merged[f"{col}_old"]
            both_missing = (new.isna() & old.isna()).to_numpy(dtype=bool)
            if col == "duration":
                equal = np.isclose(new.to_numpy(float), old.to_numpy(float), rtol=0, atol=1e-9)
            else:
                equal = (new == old).fillna(False).to_numpy(dtype=bool)
            same &= equal | both_missing
        fresh, changed = merged[~known], merged[known & ~same]
        from sqlalchemy import bindparam

        with self.engine.begin() as conn:
            if len(fresh):
                payload = _records(fresh, model, stamp)
                for i in range(0, len(payload), _CHUNK):
                    conn.execute(self.outcomes.insert(), payload[i : i + _CHUNK])
            if len(changed):
                t = self.outcomes
                stmt = (
                    t.update()
                    .where(t.c.id == bindparam("row_id"))
                    .values(
                        duration=bindparam("duration"),
                        event=bindparam("event"),
                        label=bindparam("label"),
                        observed_at=bindparam("observed_at"),
                        ingested_at=bindparam("ingested_at"),
                    )
                )
                payload = _records(changed, model, stamp)
                for rec, row_id in zip(payload, changed["id"].astype(int).tolist(), strict=True):
                    rec["row_id"] = row_id
                    del rec["model_name"], rec["entity_key"]
                conn.execute(stmt, payload)
        return IngestResult(len(fresh), len(changed), int(same.sum()))

    def _existing(self, model: str, keys: list[str]) -> pd.DataFrame:
        from sqlalchemy import select

        t = self.outcomes
        cols = [t.c.id, t.c.entity_key, t.c.duration, t.c.event, t.c.label, t.c.observed_at]
        parts = []
        with self.engine.connect() as conn:
            for i in range(0, len(keys), _CHUNK):
                query = select(*cols).where(
                    t.c.model_name == model, t.c.entity_key.in_(keys[i : i + _CHUNK])
                )
                parts.append(
                    pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in cols])
                )
        out = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=[c.name for c in cols])
        )
        out["observed_at"] = pd.to_datetime(out["observed_at"], utc=True)
        out["event"] = out["event"].astype("boolean")
        out["label"] = out["label"].astype("Int64")
        out["duration"] = out["duration"].astype(float)
        return out

    def count(self, model: str) -> int:
        from sqlalchemy import func, select

        with self.engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(self.outcomes)
                .where(self.outcomes.c.model_name == model)
            )
            return int(conn.execute(query).scalar_one())

    # -- matching ------------------------------------------------------------------------
    def _json_float(self, key: str) -> Any:
        from sqlalchemy import Float, cast, func

        col = self.predictions.c.output
        if self.dialect == "sqlite":
            quoted = key.replace('"', '\\"')
            return func.json_extract(col, f'$."{quoted}"')
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import JSON

            return cast(cast(col, JSON)[key].astext, Float)
        raise ConfigError(f"matching outcomes needs SQLite or PostgreSQL, not {self.dialect}")

    def matched(
        self,
        model: str,
        version: str,
        start: datetime,
        end: datetime,
        *,
        risk_key: str = "risk",
        survival_key: str,
        with_features: bool = False,
    ) -> pd.DataFrame:
        """The version's answered predictions in ``[start, end)`` joined to their outcomes.

        One row per entity: its earliest prediction made before the outcome was observed.
        Columns: ``ts``, ``entity_key``, ``risk``, ``survival`` (predicted probability of no
        event by the horizon, read from the output's ``survival_key``), ``duration``,
        ``event``, ``label``.
        """
        from sqlalchemy import and_, or_, select

        p, o = self.predictions, self.outcomes
        query = (
            select(
                p.c.ts,
                p.c.entity_key,
                self._json_float(risk_key).label("risk"),
                self._json_float(survival_key).label("survival"),
                o.c.duration,
                o.c.event,
                o.c.label,
                *([p.c.features] if with_features else []),
            )
            .select_from(
                p.join(o, and_(o.c.model_name == p.c.model_name, o.c.entity_key == p.c.entity_key))
            )
            .where(
                p.c.model_name == model,
                p.c.model_version == version,
                p.c.error.is_(None),
                p.c.ts >= start,
                p.c.ts < end,
                or_(o.c.observed_at.is_(None), p.c.ts <= o.c.observed_at),
            )
        )
        columns = ["ts", "entity_key", "risk", "survival", "duration", "event", "label"]
        if not self._has_predictions():
            return pd.DataFrame(columns=columns + (["features"] if with_features else []))
        with self._reading() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        if frame.empty:
            return frame
        frame = frame.sort_values("ts", kind="stable").drop_duplicates("entity_key", keep="first")
        for col in ("risk", "survival", "duration"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        return frame.reset_index(drop=True)

    def traffic(self, model: str, version: str, start: datetime, end: datetime) -> dict[str, int]:
        """Rows, requests, errors and guardrail-flagged rows of ``version`` in ``[start, end)``
        (errors are rows no version answered, so they are counted for the model)."""
        from sqlalchemy import case, func, select

        p = self.predictions
        answered = p.c.model_version == version
        query = select(
            func.count().filter(answered),
            func.count(func.distinct(p.c.request_id)).filter(answered),
            func.sum(case((p.c.error.is_not(None), 1), else_=0)),
            func.sum(case((answered & (p.c.guardrail_flags != ""), 1), else_=0)),
        ).where(
            p.c.model_name == model,
            p.c.ts >= start,
            p.c.ts < end,
            answered | p.c.error.is_not(None),
        )
        if not self._has_predictions():
            return {"rows": 0, "requests": 0, "errors": 0, "guardrail_flags": 0}
        with self._reading() as conn:
            rows, requests, errors, flagged = conn.execute(query).one()
        return {
            "rows": int(rows or 0),
            "requests": int(requests or 0),
            "errors": int(errors or 0),
            "guardrail_flags": int(flagged or 0),
        }


def _outcome_rows(
    frame: pd.DataFrame,
    entity_col: str,
    duration_col: str | None,
    event_col: str | None,
    label_col: str | None,
    observed_col: str | None,
) -> pd.DataFrame:
    survival = duration_col is not None or event_col is not None
    if survival == (label_col is not None):
        raise DataError(
            "give --duration-col and --event-col (survival) or --label-col (classifier)"
        )
    if survival and (duration_col is None or event_col is None):
        raise DataError("survival outcomes need both --duration-col and --event-col")
    wanted = [c for c in (entity_col, duration_col, event_col, label_col, observed_col) if c]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"outcome data has no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    if frame.empty:
        raise DataError("outcome data has no rows")
    keys = frame[entity_col]
    if keys.isna().any():
        raise DataError(f"column {entity_col!r}: {int(keys.isna().sum())} rows have no entity key")
    out = pd.DataFrame({"entity_key": keys.astype(str).str.slice(0, 256)})
    n = len(frame)
    out["duration"] = np.nan
    out["event"] = pd.array([pd.NA] * n, dtype="boolean")
    out["label"] = pd.array([pd.NA] * n, dtype="Int64")
    if survival:
        duration = pd.to_numeric(frame[duration_col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(duration) | (duration < 0)
        if bad.any():
            raise DataError(
                f"column {duration_col!r}: {int(bad.sum())} rows are not finite durations >= 0"
            )
        out["duration"] = duration
        out["event"] = _binary(frame[event_col], str(event_col)).astype(bool)
    else:
        out["label"] = _binary(frame[label_col], str(label_col))
    if observed_col:
        try:
            out["observed_at"] = pd.to_datetime(frame[observed_col], utc=True)
        except (ValueError, TypeError) as exc:
            raise DataError(f"column {observed_col!r}: not dates/times ({exc})") from None
    else:
        out["observed_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    out.index = frame.index
    dupes = out.duplicated("entity_key", keep=False)
    if dupes.any():
        conflicting = out[dupes].drop_duplicates()
        if conflicting["entity_key"].duplicated().any():
            key = conflicting.loc[conflicting["entity_key"].duplicated(), "entity_key"].iloc[0]
            raise DataError(f"entity {key!r} appears more than once with different outcomes")
        out = out.drop_duplicates("entity_key")
    return out.reset_index(drop=True)


def _binary(values: pd.Series, name: str) -> pd.Series:
    if values.dtype == bool:
        return values.astype(int)
    numbers = pd.to_numeric(values, errors="coerce")
    ok = numbers.isin([0, 1])
    if not ok.all():
        raise DataError(f"column {name!r}: {int((~ok).sum())} rows are not 0/1")
    return numbers.astype(int)


def _records(frame: pd.DataFrame, model: str, stamp: datetime) -> list[dict[str, Any]]:
    out = []
    for key, duration, event, label, observed in zip(
        frame["entity_key"],
        frame["duration"],
        frame["event"],
        frame["label"],
        frame["observed_at"],
        strict=True,
    ):
        out.append(
            {
                "model_name": model,
                "entity_key": key,
                "duration": None if pd.isna(duration) else float(duration),
                "event": None if pd.isna(event) else bool(event),
                "label": None if pd.isna(label) else int(label),
                "observed_at": None if pd.isna(observed) else observed.to_pydatetime(),
                "ingested_at": stamp,
            }
        )
    return out
