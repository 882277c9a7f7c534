"""The routes: the deployment service's (models, deploy, rollback, delete, retention, metrics,
cicd) and the controller's verbs (promote, rollback, events, status, and the rollout verbs
``models/{name}/rollout[/pause|resume|abort|promote]``), each acting as the caller.

Handlers are plain functions: FastAPI runs them on its thread pool, and everything they do
for the caller goes through the caller's scoped controller (workspace and credentials bound to
its clients) under :func:`acting_as` (the ledger's actor), so concurrent requests of different
users or organisations share neither.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from mlflow_plugin.api._caller import Caller, Conflict, caller
from mlflow_plugin.errors import BadInput
from mlflow_plugin.policy._cicd import PIPELINE_TAG
from mlflow_plugin.settings import TAG_PREFIX, acting_as
from mlflow_plugin.types import (
    CHAMPION,
    FALLBACK,
    STRATEGIES,
    check_model_name,
    check_strategy,
    check_version,
)

__all__ = ["PIPELINE_TAG", "PROTECTED_ALIASES", "router"]

#: Aliases whose version DELETE refuses (what serves, or may serve next).
PROTECTED_ALIASES = (CHAMPION, FALLBACK, "canary", "preview")

router = APIRouter()
CallerDep = Annotated[Caller, Depends(caller)]
ModelQuery = Annotated[str, Query(description="Registered model name.", max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Registered model name.", max_length=256)


class DeployBody(_Body):
    version: str | None = Field(None, description="Version to deploy (default: challenger).")
    strategy: str = Field("all_at_once", description=f"One of {', '.join(STRATEGIES)}.")
    force: bool = Field(False, description="Deploy even if a gate did not pass (needs reason).")
    reason: str = Field("", max_length=4000)
    steps: str | list[float] | None = Field(
        None, description='canary: traffic shares in %, "10,25,50,100" or [10, 25, 50, 100].'
    )
    interval: str | None = Field(
        None, max_length=32, description="canary/blue_green/watch: analysis every 5m."
    )
    keep_previous: str | None = Field(
        None, max_length=32, description="blue_green: keep the old champion loaded 1h."
    )
    watch: str | None = Field(
        None, max_length=32, description="all_at_once: watch and roll back for 10m."
    )


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why (recorded in the ledger).", max_length=4000)


class OptionalReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", description="Why (recorded in the ledger).", max_length=4000)


class RollbackBody(_Body):
    to_version: str | None = Field(None, description="Target (default: last known good).")
    reason: str = Field(description="Why (required; recorded in the ledger).", max_length=4000)
    force: bool = False


class RetentionBody(_Body):
    dry_run: bool = Field(True, description="Decide and report; change nothing.")
    rules: dict[str, Any] | None = Field(
        None,
        description=(
            "The policy's `retention` section (default: the default policy's), without "
            "`archive_uri`: the archive location is the server's configuration "
            "(`mlflow-plugin api --archive-uri`); a body that names one is refused (400)."
        ),
    )


class CicdBody(_Body):
    schedule: str | None = Field(None, description="Cron (UTC) for scheduled retraining.")
    triggers: dict[str, Any] | None = Field(None, description="The policy's `triggers` keys.")
    strategy: str | None = Field(None, description="Rollout strategy of retrained versions.")


def _model(name: str) -> str:
    check_model_name(name)
    if any(ord(c) < 32 for c in name):
        raise BadInput(f"invalid model name {name!r}: control characters")
    return name


def _may_change(who: Caller, name: str) -> str:
    """``name``, once MLflow said the caller may change it: every write route asks before it
    looks at the model's state, so a read-only member gets 403 whatever that state is."""
    who.registry.check_may_change(name)
    return name


def _outcome(outcome: Any) -> dict[str, Any]:
    event = outcome.event
    return {"message": outcome.message, "event": event.as_dict() if event else None}


# -- reading ---------------------------------------------------------------------------------
@router.get("/models", summary="The organisation's registered models and their aliases")
def list_models(who: CallerDep) -> dict[str, Any]:
    models = who.registry.list_models()
    return {
        "organization": who.workspace,
        "models": [{"name": m.name, "aliases": m.aliases} for m in models],
    }


@router.get("/models/{version}", summary="One version of a model")
def get_version(who: CallerDep, version: str, model: ModelQuery) -> dict[str, Any]:
    v = check_version(version)
    registry = who.registry
    info = registry.get_version(_model(model), v)
    aliases = registry.get_model(model).aliases
    return {
        "organization": who.workspace,
        "model": info.name,
        "version": info.version,
        "aliases": sorted(a for a, x in aliases.items() if x == info.version),
        "stage": info.stage,
        "tags": info.tags,
        "run_id": info.run_id,
        "created_ms": info.created_ms,
    }


@router.get("/status", summary="Champion, challenger, fallback, stages, last event")
def status(who: CallerDep, model: ModelQuery) -> dict[str, Any]:
    return who.controller.status(_model(model))


@router.get("/events", summary="The organisation's ledger, oldest first")
def events(
    who: CallerDep,
    model: Annotated[str | None, Query(max_length=256)] = None,
    event: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    from mlflow_plugin.ledger._ledger import parse_since
    from mlflow_plugin.types import check_event_type

    name = _model(model) if model is not None else None
    kind = check_event_type(event) if event is not None else None
    rows = who.controller.ledger.events(name, kind, parse_since(since))
    return {"organization": who.workspace, "events": [e.as_dict() for e in rows]}


@router.get("/metrics", summary="Deployment metrics of a model and its champion's metrics")
def metrics(who: CallerDep, model: ModelQuery) -> dict[str, Any]:
    name = _model(model)
    controller = who.controller
    champion = who.registry.get_model(name).aliases.get(CHAMPION)
    counts: dict[str, int] = {}
    last_deployment = None
    for e in controller.ledger.events(name):
        counts[e.event_type] = counts.get(e.event_type, 0) + 1
        if e.event_type == "deployment":
            last_deployment = e.as_dict()["timestamp"]
    return {
        "organization": who.workspace,
        "model": name,
        "champion": champion,
        "champion_metrics": who.registry.version_metrics(name, champion) if champion else {},
        "events": counts,
        "deployments": counts.get("deployment", 0),
        "rollbacks": counts.get("rollback", 0),
        "last_deployment": last_deployment,
    }


@router.get("/cicd", summary="The model's stored pipeline settings")
def get_cicd(who: CallerDep, model: ModelQuery) -> dict[str, Any]:
    import json

    tags = who.registry.get_model(_model(model)).tags
    raw = tags.get(PIPELINE_TAG)
    return {
        "organization": who.workspace,
        "model": model,
        "pipeline": json.loads(raw) if raw else None,
    }


# -- writing ---------------------------------------------------------------------------------
_OPTION_NAMES = (
    ("--steps", "steps"),
    ("--interval", "interval"),
    ("--keep-previous", "keep_previous"),
    ("--watch", "watch"),
    ("--strategy", "strategy"),
)


def _rollout_options(body: DeployBody) -> dict[str, Any]:
    """The CLI's ``promote`` options, checked the same way (messages name the body's keys)."""
    from mlflow_plugin.rollouts._options import rollout_options

    check_strategy(body.strategy)
    steps = body.steps
    if isinstance(steps, list):
        steps = ",".join(f"{s:g}" for s in steps)
    try:
        return rollout_options(body.strategy, steps, body.interval, body.keep_previous, body.watch)
    except BadInput as exc:
        message = exc.message
        for option, key in _OPTION_NAMES:
            message = message.replace(option, key)
        raise BadInput(message) from None


def _deploy(who: Caller, body: DeployBody) -> dict[str, Any]:
    version = check_version(body.version) if body.version is not None else None
    name = _model(body.model)
    options = _rollout_options(body)
    _may_change(who, name)
    with acting_as(who.actor):
        outcome = who.controller.promote(
            name,
            version,
            strategy=body.strategy,
            force=body.force,
            reason=body.reason,
            **options,
        )
    return _outcome(outcome)


@router.post("/deploy", summary="Make a version champion if its gates passed")
def deploy(who: CallerDep, body: DeployBody) -> dict[str, Any]:
    return _deploy(who, body)


@router.post("/promote", summary="The controller's promote (same as deploy)")
def promote(who: CallerDep, body: DeployBody) -> dict[str, Any]:
    return _deploy(who, body)


@router.post("/rollback", summary="Move the champion back to the last known good version")
def rollback(who: CallerDep, body: RollbackBody) -> dict[str, Any]:
    target = check_version(body.to_version, what="to_version") if body.to_version else None
    name = _may_change(who, _model(body.model))
    with acting_as(who.actor):
        outcome = who.controller.rollback(
            name, reason=body.reason, to_version=target, force=body.force
        )
    return _outcome(outcome)


@router.delete("/models/{version}", summary="Delete a version that nothing serves")
def delete_version(
    who: CallerDep,
    version: str,
    model: ModelQuery,
    reason: Annotated[str, Query(max_length=4000)] = "",
) -> dict[str, Any]:
    v = check_version(version)
    name = _may_change(who, _model(model))
    controller = who.controller
    registry = who.registry
    with acting_as(who.actor):
        registry.get_version(name, v)  # 404 before the lock is taken
        with registry.lock(name, intent={"op": "delete_version", "version": v, "actor": who.actor}):
            aliases = registry.get_model(name).aliases
            held = sorted(a for a in PROTECTED_ALIASES if aliases.get(a) == v)
            if held:
                raise Conflict(
                    f"{name} version {v} is {', '.join(held)}: move the alias before deleting it"
                )
            event = controller.ledger.record(
                "retention",
                name,
                version=v,
                from_version=aliases.get(CHAMPION, ""),
                message=f"deleted version {v} through the API" + (f": {reason}" if reason else ""),
                extra={TAG_PREFIX + "deleted_versions": v},
            )
            registry.delete_version(name, v)
    return {"message": f"deleted {name} version {v}", "event": event.as_dict()}


@router.post("/retention", summary="Archive and delete old versions by the retention rules")
def retention(who: CallerDep, body: RetentionBody) -> dict[str, Any]:
    from mlflow_plugin.errors import ConfigError
    from mlflow_plugin.policy import Policy
    from mlflow_plugin.retention import apply_retention

    name = _model(body.model)
    # The API process writes archives with its own credentials: where is never the caller's
    # choice (docs/retention.md, "Through the REST API").
    if body.rules is not None and "archive_uri" in body.rules:
        raise BadInput(
            "rules.archive_uri: the archive location is the API server's configuration "
            "(mlflow-plugin api --archive-uri), not part of a request; leave it out"
        )
    policy = Policy.default()
    section = dict(body.rules if body.rules is not None else policy.retention.to_dict())
    section["archive_uri"] = who.archive_uri
    try:
        policy = Policy.from_dict({**policy.to_dict(), "retention": section}, source="rules")
    except ConfigError as exc:
        if who.archive_uri is None and "archive_uri" in exc.message:
            raise BadInput(
                f"no archive location is configured for organisation {who.workspace!r} "
                "(mlflow-plugin api --archive-uri): retention through the API cannot delete"
            ) from exc
        raise
    if not body.dry_run:  # a dry run changes nothing: readers may ask for one
        _may_change(who, name)
    with acting_as(who.actor):
        report = apply_retention(who.controller, name, policy, dry_run=body.dry_run)
    return report.as_dict()


@router.post("/cicd", summary="Store the model's pipeline settings (the operator uses them)")
def cicd(who: CallerDep, body: CicdBody) -> dict[str, Any]:
    import json

    from mlflow_plugin.policy._cicd import parse_pipeline

    name = _model(body.model)
    doc = body.model_dump(exclude={"model"}, exclude_none=True)
    settings = parse_pipeline(doc, source="cicd")
    stored = settings.to_json()
    _may_change(who, name)
    controller = who.controller
    with acting_as(who.actor):
        with who.registry.lock(name, intent={"op": "cicd", "actor": who.actor}):
            info = who.registry.get_model(name)
            before = info.tags.get(PIPELINE_TAG)
            champion = info.aliases.get(CHAMPION, "")
            event = controller.ledger.record(
                "config_change",
                name,
                version=champion,
                from_version=champion,
                message=f"pipeline settings {'changed' if before else 'set'}: {stored}"[:4000],
                extra={PIPELINE_TAG: stored},
            )
            who.registry.set_model_tag(name, PIPELINE_TAG, stored)
    return {
        "organization": who.workspace,
        "model": name,
        "pipeline": json.loads(stored),
        "event": event.as_dict(),
    }


# -- rollouts (Argo Rollouts' verbs, as `mlflow-plugin rollout ...`) --------------------------
@router.get("/models/{name}/rollout", summary="The model's rollout (null when there is none)")
def rollout_status(who: CallerDep, name: str) -> dict[str, Any]:
    model = _model(name)
    return {
        "organization": who.workspace,
        "model": model,
        "rollout": who.controller.rollouts.status(model),
    }


def _rollout_verb(who: Caller, name: str, verb: str, reason: str) -> dict[str, Any]:
    model = _may_change(who, _model(name))
    rollouts = who.controller.rollouts
    if rollouts.state(model) is None:  # 404 for an unknown model, 409 for no rollout
        raise Conflict(f"{model!r} has no rollout in progress")
    with acting_as(who.actor):
        try:
            if verb == "pause":
                outcome = rollouts.pause(model, reason)
            elif verb == "resume":
                outcome = rollouts.resume(model)
            elif verb == "abort":
                outcome = rollouts.abort(model, reason)
            else:
                outcome = rollouts.promote(model, reason)
        except BadInput as exc:
            if type(exc) is not BadInput:  # NotFound, PermissionDenied: as they are
                raise
            raise BadInput(exc.message.replace("--reason", "reason")) from None
    return _outcome(outcome)


@router.post(
    "/models/{name}/rollout/pause", summary="Stop the analysis steps (traffic shares stay)"
)
def rollout_pause(who: CallerDep, name: str, body: ReasonBody) -> dict[str, Any]:
    return _rollout_verb(who, name, "pause", body.reason)


@router.post(
    "/models/{name}/rollout/resume", summary="Continue a paused rollout with a fresh window"
)
def rollout_resume(who: CallerDep, name: str) -> dict[str, Any]:
    return _rollout_verb(who, name, "resume", "")


@router.post(
    "/models/{name}/rollout/abort",
    summary="End the rollout: the new version gets no more traffic, the champion is untouched",
)
def rollout_abort(who: CallerDep, name: str, body: ReasonBody) -> dict[str, Any]:
    return _rollout_verb(who, name, "abort", body.reason)


@router.post(
    "/models/{name}/rollout/promote",
    summary="Skip the remaining steps: cut over (canary), switch (blue-green), end a watch",
)
def rollout_promote(
    who: CallerDep, name: str, body: OptionalReasonBody | None = None
) -> dict[str, Any]:
    return _rollout_verb(who, name, "promote", body.reason if body else "")
