"""The ledger: every deployment, rejection, rollback, error, recovery and configuration change is
one MLflow run in the audit experiment, tagged as docs/ARCHITECTURE.md ("The ledger") lists, and never edited afterwards.

This is the only module that writes audit runs. Reading it back (``events``) is one paged
``search_runs`` call; the controller derives "last known good" from it. Queries find a model's
events by a digest of its name (any legal name works, no quoting inside filter strings), and the
events of a model form a hash chain (:mod:`mlflow_plugin.ledger._chain`) that :meth:`Ledger.verify_chain`
checks. An event's tags are built and read back by :mod:`mlflow_plugin.ledger._event_tags` (shared with
the in-memory ledger); sealing events older than the chain is :mod:`mlflow_plugin.ledger._migrate`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin._internal.concurrency import parallel
from mlflow_plugin.errors import BadInput
from mlflow_plugin.ledger._chain import (
    HASH_TAG,
    MODEL_DIGEST_TAG,
    PREV_HASH_TAG,
    SEQ_TAG,
    ChainEntry,
    ChainReport,
    event_hash,
    model_digest,
)
from mlflow_plugin.ledger._chain import head as head_of
from mlflow_plugin.ledger._chain import verify as verify_entries
from mlflow_plugin.ledger._event_tags import TAGS, event_from, event_tags
from mlflow_plugin.ledger._migrate import Migration, migrate
from mlflow_plugin.mlflow_io._client import (
    client_errors,
    configure_http_defaults,
    make_client,
    resolve_tracking_uri,
    run_tags,
    wrap_mlflow_errors,
)
from mlflow_plugin.mlflow_io._workspace import Scope, scoped_key
from mlflow_plugin.settings import audit_experiment
from mlflow_plugin.types import Event, check_event_type

__all__ = ["TAGS", "ChainReport", "Ledger", "Migration", "PreparedEvent", "parse_since"]

_experiment_ids: dict[tuple[str, str], str] = {}
_experiment_lock = threading.Lock()


def parse_since(text: str | None) -> int | None:
    """ISO-8601 date or time (naive means UTC) -> epoch milliseconds; None passes through."""
    if text is None or text == "":
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--since {text!r} is not an ISO-8601 date or time") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def _quote(value: str) -> str:
    """Quote a value we control (event types, hex digests) for an MLflow filter string."""
    if "'" in value or "\\" in value:
        raise BadInput(f"cannot filter on {value!r}")
    return "'" + value + "'"


def _digest_clause(model: str) -> str:
    """The filter for ``model``'s runs: its digest tag (no model name inside a filter string)."""
    return f"tags.`{MODEL_DIGEST_TAG}` = {_quote(model_digest(model))}"


def _entry(run: Any) -> ChainEntry:
    """An event run as the chain check sees it."""
    return ChainEntry(
        run.info.run_id,
        int(run.info.start_time or 0),
        run.data.tags,
        deleted=run.info.lifecycle_stage == "deleted",
    )


class Ledger:
    """Audit events as runs in ``experiment`` (default ``$MLFLOW_PLUGIN_AUDIT_EXPERIMENT`` or
    ``mlflow_plugin-deployments``) on the tracking server at ``tracking_uri``.

    Args:
        tracking_uri: the tracking server.
        experiment: the audit experiment's name.
        lock: ``lock(model)`` returns a context manager that serialises appends to ``model``'s
            chain (the controller passes the model's promotion lock, re-entrant within a holder).
            Without it, two concurrent writers may fork the chain; :meth:`verify_chain` says so.
        scope: workspace and credentials bound to every request (see
            :class:`mlflow_plugin.registry._adapter.Registry`); each workspace has its own ledger.
        client: the client to use (the registry's, for the controller commands).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        *,
        lock: Callable[[str], AbstractContextManager[Any]] | None = None,
        scope: Scope | None = None,
        client: Any = None,
    ) -> None:
        configure_http_defaults()
        tracking_uri = resolve_tracking_uri(tracking_uri)
        self.uri = tracking_uri
        self.experiment = experiment or audit_experiment()
        self.scope = scope
        # Our REST client on an http(s) server (``$MLFLOW_PLUGIN_REST_CLIENT`` not ``off``): the
        # ledger's reads return every event of a model, and MLflow's client spends more time
        # turning that JSON into protobuf messages than the server takes to answer.
        self.client = (
            client if client is not None else make_client(tracking_uri, scope=scope, rest=True)
        )
        self.lock = lock

    def experiment_id(self, create: bool = True) -> str | None:
        # Each workspace has its own audit experiment (and its own id for the same name).
        workspace = self.scope.workspace if self.scope is not None else None
        key = (scoped_key(self.uri, workspace), self.experiment)
        with _experiment_lock:
            if key in _experiment_ids:
                return _experiment_ids[key]
        MlflowException = client_errors()  # noqa: N806 - MLflow's or our REST client's

        with wrap_mlflow_errors("audit experiment", self.uri):
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                if not create:
                    return None
                try:
                    exp_id = self.client.create_experiment(
                        self.experiment,
                        tags={
                            "mlflow.note.content": "Audit trail written by mlflow_plugin.",
                            # MLflow 3 opens the experiment in its "Model training" view.
                            "mlflow.experimentKind": "custom_model_development",
                        },
                    )
                except MlflowException as exc:  # created concurrently by another process
                    if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = self.client.get_experiment_by_name(self.experiment)
                    assert exp is not None
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if "mlflow.experimentKind" not in exp.tags:  # created by an older version
                    with contextlib.suppress(*MlflowException):
                        self.client.set_experiment_tag(
                            exp_id, "mlflow.experimentKind", "custom_model_development"
                        )
        with _experiment_lock:
            _experiment_ids[key] = str(exp_id)
        return str(exp_id)

    def _create_run(self, tags: dict[str, str], what: str) -> tuple[str, int]:
        exp_id = self.experiment_id()
        assert exp_id is not None  # create=True
        now = int(time.time() * 1000)
        with wrap_mlflow_errors(what, self.uri):
            run = self.client.create_run(exp_id, start_time=now, tags=tags)
        return run.info.run_id, now

    def _serialised(self, model: str) -> AbstractContextManager[Any]:
        return self.lock(model) if self.lock is not None else contextlib.nullcontext()

    def record(self, event_type: str, model: str, **fields: Any) -> Event:
        """Write one event run (created and finished at once, appended to the model's chain)
        and return it.

        ``fields``: ``version``, ``from_version``, ``message``, ``strategy``, ``who``
        (default ``$MLFLOW_PLUGIN_ACTOR`` or the OS user) and ``extra`` tags.
        """
        with self._serialised(model):
            return self.prepare(event_type, model, **fields).commit()

    def prepare(
        self, event_type: str, model: str, *, head: ChainReport | None = None, **fields: Any
    ) -> PreparedEvent:
        """Create the event's run now, without its event and chain tags;
        :meth:`PreparedEvent.commit` makes it an event, appended to the model's chain. Lets the
        controller overlap the run's creation with the change it records; a run that is never
        committed is not an event (``events`` skips it). Call it under the model's lock.

        ``head``: the chain as the caller already read it under the same lock (from
        :meth:`history`); without it the chain's head is read here (:meth:`chain_head`),
        beside the run's creation."""
        tags = event_tags(event_type, model, **fields)
        event_tag = tags.pop(TAGS["event"])
        if head is None:
            (run_id, now), head = parallel(
                lambda: self._create_run(tags, f"record {event_type} event"),
                lambda: self.chain_head(model),
            )
        else:
            run_id, now = self._create_run(tags, f"record {event_type} event")
        return PreparedEvent(self, run_id, now, {**tags, TAGS["event"]: event_tag}, head)

    def history(self, model: str) -> tuple[list[Event], ChainReport]:
        """``model``'s events (oldest first) and the state of its chain, from one read (the
        runs in MLflow's trash are not read: see :meth:`verify_chain` for a full check)."""
        runs = [run for run in self._model_runs(model) if TAGS["event"] in run.data.tags]
        events = sorted(
            (event_from(run.info.run_id, run.info.start_time, run.data.tags) for run in runs),
            key=lambda e: e.timestamp_ms,
        )
        return events, verify_entries(model, [_entry(run) for run in runs])

    #: How many of a model's newest runs :meth:`chain_head` reads.
    head_window = 100

    def chain_head(self, model: str) -> ChainReport:
        """The head of ``model``'s chain (``head_seq``, ``head_hash``) to append an event to,
        from one request however long the ledger is: its newest :attr:`head_window` runs by
        start time. A ledger that fits is checked whole, as :meth:`verify_chain` does; a longer
        one only for its head (the events appended under the lock are the newest; see
        docs/ARCHITECTURE.md, "The ledger")."""
        exp_id = self.experiment_id(create=False)
        if exp_id is None:
            return verify_entries(model, [])
        with wrap_mlflow_errors("read the ledger", self.uri):
            page = self.client.search_runs(
                [exp_id],
                _digest_clause(model),
                max_results=self.head_window,
                run_view_type=1,  # MLflow's ViewType.ACTIVE_ONLY
                order_by=["attributes.start_time DESC"],
            )
        entries = [
            _entry(run)
            for run in page
            if TAGS["event"] in run.data.tags and run.data.tags.get(TAGS["model"]) == model
        ]
        if not page.token:  # every run of the model: the full check
            return verify_entries(model, entries)
        found = head_of(model, entries)
        return found if found.head_seq else self.verify_chain(model, include_deleted=False)

    def _search(
        self, clauses: list[str], *, all_runs: bool = False, statuses: bool = False
    ) -> list[Any]:
        exp_id = self.experiment_id(create=False)
        if exp_id is None:
            return []
        out: list[Any] = []
        token = None
        with wrap_mlflow_errors("read the ledger", self.uri):
            while True:
                page = self.client.search_runs(
                    [exp_id],
                    " and ".join(clauses),
                    max_results=1000,
                    run_view_type=3 if all_runs else 1,  # MLflow's ViewType.ALL / ACTIVE_ONLY
                    order_by=["attributes.start_time ASC"],
                    page_token=token,
                )
                out.extend(page)
                token = page.token
                if not token:
                    break
        return out

    def _model_runs(self, model: str, *, all_runs: bool = False) -> list[Any]:
        """Runs of ``model`` found by its digest tag (no model name inside a filter string),
        checked against the exact name."""
        return [
            run
            for run in self._search([_digest_clause(model)], all_runs=all_runs)
            if run.data.tags.get(TAGS["model"]) == model
        ]

    def events(
        self,
        model: str | None = None,
        event_type: str | None = None,
        since_ms: int | None = None,
        *,
        event_types: Iterable[str] | None = None,
    ) -> list[Event]:
        """Events oldest first, filtered by model, type(s) and start time."""
        clauses = []
        if model:
            clauses.append(_digest_clause(model))
        if event_type:
            check_event_type(event_type)
            clauses.append(f"tags.`{TAGS['event']}` = {_quote(event_type)}")
        if since_ms is not None:
            clauses.append(f"attributes.start_time >= {int(since_ms)}")
        wanted = set(event_types) if event_types is not None else None
        out: list[Event] = []
        for run in self._search(clauses):
            tags = run.data.tags
            if TAGS["event"] not in tags:
                continue
            if model and tags.get(TAGS["model"]) != model:
                continue
            if wanted is not None and tags[TAGS["event"]] not in wanted:
                continue
            out.append(event_from(run.info.run_id, run.info.start_time, tags))
        out.sort(key=lambda e: e.timestamp_ms)  # stable: ties keep the server's order
        return out

    def verify_chain(self, model: str, *, include_deleted: bool = True) -> ChainReport:
        """Check ``model``'s hash chain: deleted, edited, reordered or forked events are
        reported in :attr:`ChainReport.problems` (``ok`` is False)."""
        entries = [
            _entry(run)
            for run in self._model_runs(model, all_runs=include_deleted)
            if TAGS["event"] in run.data.tags
        ]
        return verify_entries(model, entries)

    def migrate(self, model: str, *, dry_run: bool = False, force: bool = False) -> Migration:
        """Seal ``model``'s events written before the hash chain existed into the chain, in
        their time order, before the chained ones (``verify-ledger --migrate``; see
        docs/ARCHITECTURE.md, "The ledger"). Call it under the model's lock.

        With no chained event yet they become seq 1..n. With a chain already there they are
        sealed as its prefix and every chained event is re-linked behind them (seq, prev_hash
        and hash rewritten): that rewrites a chain that verifies, so it needs ``force``, and
        is refused when the chain is broken (a migration must not launder tampering).
        Idempotent; an interrupted migration is completed by running it again.

        Raises:
            IntegrityError: the chain is broken, or an unchained event is newer than the
                chain's first event (not a legacy event: its chain tags were removed).
            BadInput: the chain would be rewritten and ``force`` is not set (a dry run
                only reports it).
        """
        return migrate(self, model, dry_run=dry_run, force=force)

    def end_prepared(self, model: str) -> list[str]:
        """End the prepared (still RUNNING, never committed) event runs of ``model`` as KILLED:
        what a process killed between prepare and commit leaves. Call it under the model's
        lock (a live holder's prepared run would be ended too). Returns their run ids."""
        clauses = [
            _digest_clause(model),
            "attributes.status = 'RUNNING'",
        ]
        ended = []
        for run in self._search(clauses):
            if TAGS["event"] in run.data.tags or run.data.tags.get(TAGS["model"]) != model:
                continue
            with wrap_mlflow_errors("end a prepared event run", self.uri):
                self.client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
        return ended


class PreparedEvent:
    """An event whose run exists but is not yet tagged as an event (see ``Ledger.prepare``)."""

    def __init__(
        self, ledger: Ledger, run_id: str, start_ms: int, tags: dict[str, str], head: ChainReport
    ) -> None:
        self.ledger, self.run_id, self.start_ms, self.tags = ledger, run_id, start_ms, tags
        self.head = head

    def commit(self) -> Event:
        """Tag the run as the next event of the model's chain and finish it."""
        client, what = self.ledger.client, f"record {self.tags[TAGS['event']]} event"
        tags = {
            **self.tags,
            SEQ_TAG: str(self.head.head_seq + 1),
            PREV_HASH_TAG: self.head.head_hash,
        }
        tags[HASH_TAG] = event_hash(self.run_id, self.start_ms, tags)
        late = [TAGS["event"], SEQ_TAG, PREV_HASH_TAG, HASH_TAG]
        with wrap_mlflow_errors(what, self.ledger.uri):
            parallel(
                lambda: client.log_batch(
                    self.run_id, tags=run_tags(client, {k: tags[k] for k in late})
                ),
                lambda: client.set_terminated(self.run_id, "FINISHED", end_time=self.start_ms),
            )
        return event_from(self.run_id, self.start_ms, tags)

    def abandon(self) -> None:
        """Mark the run KILLED; it never becomes an event."""
        with contextlib.suppress(Exception):
            self.ledger.client.set_terminated(self.run_id, "KILLED")
