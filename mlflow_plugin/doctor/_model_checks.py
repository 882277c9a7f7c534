"""The per-model checks of ``mlflow-plugin doctor``: champion, stage mirror, lock, fallback,
ledger chain, artifact digests and the operator's heartbeat (docs/ARCHITECTURE.md, "Retention
and doctor")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from mlflow_plugin.controller import FALLBACK_ENABLED_TAG, Controller
from mlflow_plugin.doctor import _adapters
from mlflow_plugin.doctor._result import CheckResult, DoctorOptions, guard
from mlflow_plugin.errors import MlflowPluginError
from mlflow_plugin.types import CHAMPION, FALLBACK

__all__ = ["model_checks"]


def model_checks(controller: Controller, model: str, o: DoctorOptions) -> Iterator[CheckResult]:
    registry = controller.registry
    try:
        info = registry.get_model(model)
    except MlflowPluginError as exc:
        yield CheckResult(f"{model}: model", "fail", exc.message, "check the model name")
        return
    champion, fallback = info.aliases.get(CHAMPION), info.aliases.get(FALLBACK)
    name = f"{model}: champion"
    yield (
        CheckResult(name, "pass", f"version {champion}")
        if champion
        else CheckResult(
            name, "fail", "no champion alias", f"mlflow-plugin promote {model} --version V"
        )
    )
    yield guard(f"{model}: stage mirror", lambda: _mirror(controller, model))
    yield guard(f"{model}: lock", lambda: _lock(registry, model))
    yield guard(
        f"{model}: ledger chain",
        lambda: _chain(controller.ledger, model),
        f"mlflow-plugin verify-ledger {model}",
    )
    for role, version in (("champion", champion), ("fallback", fallback)):
        check = f"{model}: {role} artifacts"
        if version is None:
            yield CheckResult(check, "skip", f"no {role}")
            continue
        yield guard(
            check,
            lambda v=version, c=check: _digest(registry, model, v, c),  # type: ignore[misc]
            f"mlflow-plugin verify {model} --version {version}",
        )
    enabled = info.tags.get(FALLBACK_ENABLED_TAG) == "true"
    name = f"{model}: fallback"
    if enabled and fallback:
        yield CheckResult(name, "pass", f"enabled, version {fallback}")
    else:
        yield CheckResult(
            name,
            "fail",
            "enabled but no fallback version" if enabled else "disabled",
            f"mlflow-plugin fallback enable {model}",
        )
    yield guard(f"{model}: operator heartbeat", lambda: _heartbeat(registry, model, info.tags, o))


def _mirror(controller: Controller, model: str) -> CheckResult:
    if not controller.stage_mirror:
        return CheckResult(f"{model}: stage mirror", "skip", "stage mirror switched off")
    drift = _adapters.stage_drift(controller, model)
    if drift:
        return CheckResult(
            f"{model}: stage mirror",
            "fail",
            "out of sync: " + ", ".join(drift),
            f"mlflow-plugin reconcile {model}",
        )
    return CheckResult(f"{model}: stage mirror", "pass", "stages follow the aliases")


def _lock(registry: Any, model: str) -> CheckResult:
    name = f"{model}: lock"
    status = _adapters.lock_status(registry, model)
    if status is None:
        return CheckResult(name, "pass", "no lock held")
    expires = datetime.fromtimestamp(float(status.get("expires") or 0), tz=UTC).isoformat(
        timespec="seconds"
    )
    if status.get("stale"):
        return CheckResult(
            name,
            "fail",
            f"stale lock left by {status.get('holder')} (lease ended {expires})",
            f"mlflow-plugin reconcile {model} (breaks it and records the interrupted operation)",
        )
    return CheckResult(
        name,
        "warn",
        f"held by {status.get('holder')} until {expires}",
        "an operation is running; run doctor again when it ends",
    )


def _chain(ledger: Any, model: str) -> CheckResult:
    name = f"{model}: ledger chain"
    report = _adapters.verify_chain(ledger, model)
    if report.ok:
        return CheckResult(name, "pass", f"{report.events} event(s), chain intact")
    return CheckResult(
        name,
        "fail",
        "; ".join(report.problems) or "chain broken",
        f"mlflow-plugin verify-ledger {model}; investigate who edited the audit runs",
    )


def _digest(registry: Any, model: str, version: str, check: str) -> CheckResult:
    report = _adapters.verify_version(registry, model, version)
    if report.trusted_on_first_use:
        return CheckResult(
            check,
            "warn",
            f"version {version}: no digest recorded",
            f"mlflow-plugin sign {model} --version {version}",
        )
    if report.ok:
        digest = str(report.digest)[:12]
        return CheckResult(check, "pass", f"version {version} sha256 {digest}… verified")
    return CheckResult(
        check,
        "fail",
        f"version {version}: " + ("; ".join(report.problems) or "digest mismatch"),
        f"mlflow-plugin rollback {model} --reason 'tampered artifacts', then restore v{version}",
    )


def _heartbeat(registry: Any, model: str, tags: dict[str, str], o: DoctorOptions) -> CheckResult:
    name = f"{model}: operator heartbeat"
    fix = "start `mlflow-plugin operator` (or schedule `mlflow-plugin tick`)"
    lease = _adapters.operator_lease(tags)
    if lease is not None and lease[1] > time.time():
        until = datetime.fromtimestamp(lease[1], tz=UTC).isoformat(timespec="seconds")
        return CheckResult(name, "pass", f"operator {lease[0]} holds its lease until {until}")
    beat = _adapters.operator_heartbeat(tags)
    if beat is None:
        return CheckResult(name, "fail", "no heartbeat and no live operator lease", fix)
    age = time.time() - beat.timestamp()
    when = beat.isoformat(timespec="seconds")
    if age > o.heartbeat_max_age_s:
        return CheckResult(name, "fail", f"last beat {when} ({age / 60:.0f} min ago)", fix)
    return CheckResult(name, "pass", f"last beat {when} ({age:.0f}s ago)")
