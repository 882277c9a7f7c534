"""``ChampionModel``: serve ``models:/NAME@champion``, follow the alias, survive a bad champion.

A background thread reads the registered model (one call: aliases and tags) every
``poll_interval`` seconds, or sooner when :meth:`ChampionModel.trigger` is called (e.g. by a
registry webhook). The :class:`~mlflow_plugin.serving._routing.Router` names the versions to keep
loaded; missing ones are loaded on that thread while requests go on being answered by the current
snapshot, and the new snapshot replaces the old one in a single assignment. A request reads the
snapshot once, so it is answered wholly by the old or wholly by the new version, and never waits
for a load.

When the champion cannot load, raises in ``predict`` or breaks a guardrail, the next route of the
plan (the fallback, when enabled) answers; ``error`` and ``recovery`` events go to the ledger,
rate-limited. When no route can answer, :class:`~mlflow_plugin.ModelUnavailable` says why; it
never answers with a version the registry did not name.

The class is built from parts, one module each: :mod:`._scoring` (one request),
:mod:`._batch_scoring` (a batch in one ``predict``), :mod:`._following` (the registry poll, loads
and swaps) over :mod:`._observing` (the shared state, counters, failure events, ``status()``).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput, ModelUnavailable
from mlflow_plugin.serving._batch_scoring import _BatchScoring
from mlflow_plugin.serving._events import EventReporter
from mlflow_plugin.serving._following import _Following
from mlflow_plugin.serving._guardrails import Guardrails
from mlflow_plugin.serving._inputs import InputGuard
from mlflow_plugin.serving._mirror import Mirror
from mlflow_plugin.serving._observing import Loader
from mlflow_plugin.serving._prediction_log import PredictionLog
from mlflow_plugin.serving._rollout_router import RolloutRouter
from mlflow_plugin.serving._routing import Fleet, Router
from mlflow_plugin.serving._scoring import Prediction
from mlflow_plugin.types import check_model_name

if TYPE_CHECKING:
    from mlflow_plugin.serving._config import ServeConfig

__all__ = ["ChampionModel", "Prediction"]


class ChampionModel(_Following, _BatchScoring):
    """The champion of a registered model, hot-swapped on promotion, with a fallback.

    Args:
        model_name: registered model name.
        tracking_uri: tracking/registry server; default ``$MLFLOW_TRACKING_URI``.
        poll_interval: seconds between two registry reads.
        guardrails: output rules (default :class:`Guardrails()`; :meth:`Guardrails.off` for none).
        prediction_log: where every prediction is logged (None: not logged). Closed by
            :meth:`close`.
        router: routing policy (default :class:`~mlflow_plugin.serving._rollout_router.RolloutRouter`:
            the champion, and a rollout's canary / preview / previous when the registry has one).
        event_interval: seconds between two ledger events of the same kind.
        retry_interval: seconds before a version that failed to load is tried again.
        registry: registry adapter (default ``Registry(tracking_uri)``; tests pass an in-memory one).
        ledger: where events go (default the ledger on ``tracking_uri``).
        loader: ``(model_name, version) -> model`` (default: download ``models:/NAME/VERSION``
            and ``mlflow.pyfunc.load_model`` it).
        watch: start the background watcher.
        require_ready: raise at construction when no version can answer.
        input_guard: input rules (default :class:`InputGuard()`: refuse nulls, non-finite,
            non-numeric and far-out-of-range values with :class:`BadInput`).
        verify: check the downloaded files against the version's ``mlflow_plugin.sha256``
            before loading them (the default loader only; see :mod:`mlflow_plugin.integrity._manifest`).
        key_column: input column whose first row's value is a request's entity key for the
            canary split when no ``X-Entity-Key`` was sent (default the prediction log's).
        mirror_queue: mirrored (blue-green) requests waiting to be scored before new ones are
            dropped.

    Raises:
        ModelUnavailable: ``require_ready`` and neither champion nor fallback could be loaded.
        NotFound: the registered model does not exist.
        RegistryUnavailable: the tracking server could not be reached at start.
    """

    def __init__(
        self,
        model_name: str,
        *,
        tracking_uri: str | None = None,
        poll_interval: float = 5.0,
        guardrails: Guardrails | None = None,
        prediction_log: PredictionLog | None = None,
        router: Router | None = None,
        event_interval: float = 60.0,
        retry_interval: float = 30.0,
        registry: Any = None,
        ledger: Any = None,
        loader: Loader | None = None,
        watch: bool = True,
        require_ready: bool = True,
        input_guard: InputGuard | None = None,
        verify: bool = True,
        key_column: str | None = None,
        mirror_queue: int = 1000,
    ) -> None:
        self.name = check_model_name(model_name)
        if not poll_interval > 0:
            raise BadInput(f"poll_interval must be > 0, got {poll_interval!r}")
        if registry is None:
            from mlflow_plugin.registry._adapter import Registry

            registry = Registry(tracking_uri)
        self.registry = registry
        self.tracking_uri: str = getattr(registry, "uri", tracking_uri or "")
        self.poll_interval = float(poll_interval)
        self.retry_interval = float(retry_interval)
        self.guardrails = guardrails if guardrails is not None else Guardrails()
        self.prediction_log = prediction_log
        self.input_guard = input_guard if input_guard is not None else InputGuard()
        self.verify = verify
        self._degraded = False  # a backup route answered last: logged once per change
        self.router: Router = router if router is not None else RolloutRouter()
        self.key_column = key_column or getattr(prediction_log, "key_column", None)
        self.mirror = Mirror(
            self.name,
            prediction_log=prediction_log,
            guardrails=self.guardrails,
            max_queue=mirror_queue,
        )
        self.events = EventReporter(
            self.name, ledger=ledger, tracking_uri=self.tracking_uri, interval=event_interval
        )
        self._loader = loader or self._load_pyfunc
        self._workdir = tempfile.mkdtemp(prefix="mlflow-plugin-serve-")
        self._fleet = Fleet()
        self._counts: Counter[tuple[str, ...]] = Counter()
        self._counts_lock = threading.Lock()
        # Scores a batch's second plan (a canary's share) beside the first: created on the
        # first split batch, so a server without a canary never starts it.
        self._groups_pool: Any = None
        self._refresh_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        # Request ids: unique across processes and restarts, cheaper than a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._warned: dict[tuple[str, str], float] = {}
        self.last_swap: dict[str, Any] | None = None
        self.last_poll: float | None = None
        self.poll_error: str | None = None
        self.started_at = time.time()
        try:
            self.refresh(raise_errors=True)
            if require_ready and not self.router.plan(self._fleet, "").routes:
                raise ModelUnavailable(f"{self.name}: {self._why_unavailable(self._fleet)}")
        except BaseException:
            self.close()
            raise
        self._thread: threading.Thread | None = None
        if watch:
            self._thread = threading.Thread(
                target=self._watch, name=f"watch-{self.name}", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_config(
        cls, model_name: str, config: ServeConfig, *, tracking_uri: str | None = None
    ) -> ChampionModel:
        """The champion ``serve`` answers with: guardrails, input rules, prediction log and
        poll from ``config``. The prediction log it opens is closed if the model cannot start."""
        guardrails = config.guardrails()
        prediction_log = config.open_prediction_log()
        try:
            return cls(
                model_name,
                tracking_uri=tracking_uri,
                poll_interval=config.poll_interval,
                guardrails=guardrails,
                prediction_log=prediction_log,
                event_interval=config.event_interval,
                input_guard=config.input_guard(),
                key_column=config.key_column,
                mirror_queue=config.mirror_queue,
            )
        except BaseException:
            if prediction_log is not None:
                prediction_log.close()
            raise

    # -- answering -----------------------------------------------------------------------
    @property
    def version(self) -> str | None:
        """The version that would answer a request now (None if none can)."""
        routes = self.router.plan(self._fleet, "").routes
        return routes[0].deployment.version if routes else None

    @property
    def metadata(self) -> Any:
        """The MLmodel metadata of the version that would answer now (for request parsing)."""
        routes = self.router.plan(self._fleet, "").routes
        return routes[0].deployment.metadata if routes else None

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Like ``PyFuncModel.predict``: the output of whichever version answers."""
        return self.score(data, params).output

    # -- lifecycle -----------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop watching, write what the prediction log and the ledger queue hold."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)
        self.mirror.close(timeout)  # before the log: its last preview rows go to the log too
        if self.prediction_log is not None:
            self.prediction_log.close(timeout)
        self.events.close(timeout)
        if self._groups_pool is not None:
            self._groups_pool.shutdown(wait=False)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> ChampionModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChampionModel({self.name!r}, version={self.version!r})"
