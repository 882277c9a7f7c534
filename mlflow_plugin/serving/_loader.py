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

The class holds small collaborators, one module each (as httpx's ``Client`` holds its
transport): a :class:`~._following.Follower` (the registry poll, loads and swaps: the fleet), a
:class:`~._scoring.Scorer` (one request) and a :class:`~._batch_scoring.BatchScorer` (a batch
in one ``predict``), a :class:`~._mirror.Mirror` (blue-green shadow scoring) and an
:class:`~._observing.Observer` (counters, failure events) they share.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mlflow_plugin.errors import BadInput, ModelUnavailable
from mlflow_plugin.serving._batch_scoring import BatchScorer
from mlflow_plugin.serving._events import EventReporter
from mlflow_plugin.serving._following import Follower
from mlflow_plugin.serving._guardrails import Guardrails
from mlflow_plugin.serving._inputs import InputGuard
from mlflow_plugin.serving._mirror import Mirror
from mlflow_plugin.serving._observing import Loader, Observer, iso, why_unavailable
from mlflow_plugin.serving._prediction_log import PredictionLog
from mlflow_plugin.serving._rollout_router import RolloutRouter, rollout_status
from mlflow_plugin.serving._routing import Fleet, Router
from mlflow_plugin.serving._scoring import Prediction, Scorer
from mlflow_plugin.types import CHAMPION, FALLBACK, check_model_name

if TYPE_CHECKING:
    from mlflow_plugin.serving._config import ServeConfig

__all__ = ["ChampionModel", "Prediction"]


class ChampionModel:
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
        self.verify = verify
        self.guardrails = guardrails if guardrails is not None else Guardrails()
        self.prediction_log = prediction_log
        self.input_guard = input_guard if input_guard is not None else InputGuard()
        self.router: Router = router if router is not None else RolloutRouter()
        self.mirror = Mirror(
            self.name,
            prediction_log=prediction_log,
            guardrails=self.guardrails,
            max_queue=mirror_queue,
        )
        self.events = EventReporter(
            self.name, ledger=ledger, tracking_uri=self.tracking_uri, interval=event_interval
        )
        self.observer = Observer(self.name, self.events)
        self.follower = Follower(
            self.name,
            registry,
            self.router,
            self.observer,
            loader=loader,
            poll_interval=self.poll_interval,
            retry_interval=self.retry_interval,
            verify=verify,
        )
        self.scorer = Scorer(
            self.name,
            self.follower,
            self.router,
            self.observer,
            guardrails=self.guardrails,
            input_guard=self.input_guard,
            prediction_log=prediction_log,
            mirror=self.mirror,
            key_column=key_column or getattr(prediction_log, "key_column", None),
        )
        self.batch_scorer = BatchScorer(self.scorer)
        self._closed = False
        self.started_at = time.time()
        try:
            self.refresh(raise_errors=True)
            if require_ready and not self.router.plan(self._fleet, "").routes:
                raise ModelUnavailable(f"{self.name}: {why_unavailable(self._fleet)}")
        except BaseException:
            self.close()
            raise
        if watch:
            self.follower.start()

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

    def score(
        self,
        data: Any,
        params: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
        input_flags: tuple[str, ...] | None = None,
    ) -> Prediction:
        """Answer one request and say who answered (see :meth:`Scorer.score`).

        Raises:
            BadInput: the input breaks an input guardrail or does not match the model's
                signature (no fallback is tried: another version would refuse it too).
            ModelUnavailable: no version could answer.
        """
        return self.scorer.score(data, params, request_id=request_id, input_flags=input_flags)

    def score_batch(self, requests: list[tuple[Any, str, float, tuple[str, ...]]]) -> list[Any]:
        """Answer several requests with one ``predict`` (see :meth:`BatchScorer.score_batch`)."""
        return self.batch_scorer.score_batch(requests)

    def check_input(self, data: Any) -> tuple[str, ...]:
        """Apply the input guardrails for the version that would answer now (flags of tolerated
        problems; :class:`BadInput` for a value the model cannot score)."""
        return self.scorer.check_input(data)

    def new_request_id(self) -> str:
        return self.scorer.new_request_id()

    @property
    def key_column(self) -> str | None:
        """The input column holding a request's entity key for the canary split."""
        return self.scorer.key_column

    # -- following -----------------------------------------------------------------------
    def refresh(self, *, raise_errors: bool = False) -> bool:
        """Read the registry once and load/swap what changed; True if anything was swapped."""
        return self.follower.refresh(raise_errors=raise_errors)

    def trigger(self) -> None:
        """Check the registry now instead of at the next poll (webhooks call this)."""
        self.follower.trigger()

    @property
    def _fleet(self) -> Fleet:
        """The loaded versions now (the follower's last swap)."""
        return self.follower.fleet

    @property
    def last_swap(self) -> dict[str, Any] | None:
        return self.follower.last_swap

    @property
    def last_poll(self) -> float | None:
        return self.follower.last_poll

    @property
    def poll_error(self) -> str | None:
        return self.follower.poll_error

    # -- observing -----------------------------------------------------------------------
    def counts(self) -> dict[tuple[str, ...], int]:
        """A copy of the counters, keyed like ``("predictions", version, role)``,
        ``("fallbacks", cause)``, ``("guardrail", rule, version)``, ``("swaps",)`` ..."""
        return self.observer.counts()

    def status(self) -> dict[str, Any]:
        """What serves and why, as a JSON-ready dict (the server's ``/health``)."""
        fleet = self._fleet
        plan = self.router.plan(fleet, "")
        roles: dict[str, Any] = {}
        for role in [*fleet.wanted, *(r for r in fleet.loaded if r not in fleet.wanted)]:
            deployment = fleet.loaded.get(role)
            failure = fleet.failed.get(role)
            roles[role] = {
                "wanted": fleet.wanted.get(role),
                "loaded": deployment.version if deployment else None,
                "loaded_at": iso(deployment.loaded_at) if deployment else None,
                "load_seconds": round(deployment.load_seconds, 3) if deployment else None,
                "error": failure.error if failure else None,
            }
        serving = plan.routes[0] if plan.routes else None
        degraded = bool(plan.skipped) or (serving is not None and serving.role != CHAMPION)
        return {
            "model": self.name,
            "status": "unavailable" if serving is None else ("degraded" if degraded else "ok"),
            "serving": {"version": serving.deployment.version, "role": serving.role}
            if serving
            else None,
            "champion": roles.get(CHAMPION),
            "fallback": {"enabled": fleet.fallback_enabled, **(roles.get(FALLBACK) or {})},
            "roles": roles,
            "last_swap": self.last_swap,
            "last_poll": iso(self.last_poll) if self.last_poll else None,
            "poll_error": self.poll_error,
            "poll_interval": self.poll_interval,
            "rollout": rollout_status(fleet, self.mirror.stats()),
            "prediction_log": self.prediction_log.stats() if self.prediction_log else None,
            "events": self.events.stats(),
        }

    # -- lifecycle -----------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Stop watching, write what the prediction log and the ledger queue hold."""
        if self._closed:
            return
        self._closed = True
        self.follower.stop(timeout)
        self.mirror.close(timeout)  # before the log: its last preview rows go to the log too
        if self.prediction_log is not None:
            self.prediction_log.close(timeout)
        self.events.close(timeout)
        self.batch_scorer.close()
        self.follower.remove_files()

    def __enter__(self) -> ChampionModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ChampionModel({self.name!r}, version={self.version!r})"
