"""The checks of ``mlflow-plugin doctor`` (docs/ARCHITECTURE.md, "Retention and doctor").

Each check returns a :class:`CheckResult`: ``pass``, ``warn`` (worth a look, not a failure),
``fail`` or ``skip`` (could not run, e.g. the server is down), a one-line detail and how to fix
it. Checks never raise: whatever goes wrong becomes the check's ``fail`` line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from mlflow_plugin._internal.sql import redact_sql_uri, sqlalchemy_uri
from mlflow_plugin.controller import Controller
from mlflow_plugin.doctor._model_checks import model_checks
from mlflow_plugin.doctor._result import GB, CheckResult, DoctorOptions, guard

__all__ = ["DOCTOR_EXPERIMENT", "CheckResult", "DoctorOptions", "run_checks"]

DOCTOR_EXPERIMENT = "mlflow_plugin-doctor"


def run_checks(options: DoctorOptions) -> Iterator[CheckResult]:
    """Every check, in table order (a generator: the CLI prints each as it completes)."""
    server = guard("tracking server", lambda: _server(options))
    yield server
    yield guard("policy file", lambda: _policy(options), "fix the key named in the detail")
    yield guard("disk space", lambda: _disk(options))
    yield guard(
        "prediction log writable",
        lambda: _prediction_log(options),
        "point --prediction-log at a writable database",
    )
    remote = ("backend", "database schema", "artifact store")
    if server.status == "fail":
        for name in remote:
            yield CheckResult(name, "skip", "tracking server unreachable", "fix the server first")
        return
    yield guard("backend", lambda: _backend(options))
    yield guard(
        "database schema",
        lambda: _schema(options),
        "back up the database, then `mlflow db upgrade <database_uri>`",
    )
    yield guard(
        "artifact store",
        lambda: _artifacts(options),
        "check the server's --artifacts-destination (permissions, credentials, space)",
    )
    controller = Controller.from_uri(options.tracking_uri)
    models = options.models
    if models is None:
        models = sorted({e.model for e in controller.ledger.events() if e.model})
    for model in models:
        yield from model_checks(controller, model, options)


# -- server-wide ------------------------------------------------------------------------------
def _get(url: str, timeout: float) -> str:
    """GET ``url``; credentials in it (``http://user:password@host``) go as HTTP Basic auth, as
    MLflow's client sends them (urllib would read ``user:password@host`` as the host)."""
    import requests

    resp = requests.get(url, timeout=timeout)
    resp.raise_for_status()
    return resp.text.strip()


def _server(o: DoctorOptions) -> CheckResult:
    import mlflow
    import requests

    uri = o.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return CheckResult(
            "tracking server", "pass", f"local store {uri} (MLflow {mlflow.__version__})"
        )
    try:
        _get(uri.rstrip("/") + "/health", o.timeout_s)
        version = _get(uri.rstrip("/") + "/version", o.timeout_s)
    except (requests.RequestException, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]
        return CheckResult(
            "tracking server",
            "fail",
            f"{uri} unreachable: {reason}",
            "start `mlflow server` or fix MLFLOW_TRACKING_URI",
        )
    return CheckResult("tracking server", "pass", f"{uri} answers, MLflow {version}")


def _policy(o: DoctorOptions) -> CheckResult:
    from mlflow_plugin.policy import DEFAULT_POLICY, load_policy

    policy = load_policy(o.policy)
    o._policy = policy
    source = (
        o.policy
        if o.policy not in ("", "default")
        else (DEFAULT_POLICY if Path(DEFAULT_POLICY).is_file() else "built-in default")
    )
    rules = len(policy.retention.rules)
    return CheckResult(
        "policy file", "pass", f"{source}: {len(policy.gates)} gates, {rules} retention rule(s)"
    )


def _local_dir(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).resolve()
    if "://" in uri or uri.startswith(("s3:", "gs:", "wasbs:", "mlflow-artifacts:")):
        return None
    return Path(uri).resolve()


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _disk(o: DoctorOptions) -> CheckResult:
    paths = [Path(p) for p in o.paths] or [Path.cwd(), Path(tempfile.gettempdir())]
    if not o.paths:
        archive = o._policy.retention.archive_uri if o._policy is not None else None
        paths += [p for p in (_local_dir(archive), _local_dir(o.prediction_log)) if p]
    low, seen = [], []
    by_device: dict[int, Path] = {}  # one line per file system
    for path in (_existing(p.resolve()) for p in paths):
        by_device.setdefault(path.stat().st_dev, path)
    for path in by_device.values():
        free = shutil.disk_usage(path).free
        seen.append(f"{path} {free / GB:.1f} GB")
        if free < o.min_free_bytes:
            low.append(f"{path} has {free / GB:.2f} GB free")
    need = f"{o.min_free_bytes / GB:g} GB"
    if low:
        return CheckResult(
            "disk space",
            "fail",
            f"below {need}: " + "; ".join(low),
            "free space or move the stores to a larger disk",
        )
    return CheckResult("disk space", "pass", f">= {need} free: " + ", ".join(seen))


def _prediction_log(o: DoctorOptions) -> CheckResult:
    from sqlalchemy import create_engine, text

    table = f"mlflow_plugin_doctor_{uuid.uuid4().hex[:8]}"
    engine = create_engine(sqlalchemy_uri(o.prediction_log))
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} (probe VARCHAR(16))"))
            conn.execute(text(f"INSERT INTO {table} (probe) VALUES ('ok')"))
            value = conn.execute(text(f"SELECT probe FROM {table}")).scalar()
            conn.execute(text(f"DROP TABLE {table}"))
    finally:
        engine.dispose()
    if value != "ok":  # pragma: no cover - a database that loses a row in its own transaction
        return CheckResult("prediction log writable", "fail", "probe row not read back")
    return CheckResult(
        "prediction log writable", "pass", f"{redact_sql_uri(o.prediction_log)} accepts writes"
    )


def _backend(o: DoctorOptions) -> CheckResult:
    fix = "run the server on a SQL database: `mlflow server --backend-store-uri postgresql://...`"
    if o.backend_store_uri:
        scheme = o.backend_store_uri.split(":", 1)[0].split("+", 1)[0]
        if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
            return CheckResult(
                "backend", "pass", f"SQL ({scheme}): webhooks and workspaces available"
            )
        return CheckResult(
            "backend",
            "fail" if o.require_sql else "warn",
            f"{scheme} store: no webhooks or workspaces",
            fix,
        )
    from mlflow import MlflowClient

    try:
        MlflowClient(o.tracking_uri).list_webhooks(max_results=1)
    except Exception as exc:  # noqa: BLE001 - the server's answer is the evidence
        text = " ".join(str(exc).split())[:160]
        return CheckResult(
            "backend",
            "fail" if o.require_sql else "warn",
            f"webhooks unavailable (not a SQL backend?): {text}",
            fix,
        )
    return CheckResult("backend", "pass", "SQL: the server answers the webhooks API")


def _schema(o: DoctorOptions) -> CheckResult:
    uri = o.backend_store_uri
    if not uri or "://" not in uri:
        from mlflow import MlflowClient

        MlflowClient(o.tracking_uri).search_registered_models(max_results=1)
        return CheckResult(
            "database schema",
            "pass",
            "server answers queries (MLflow will not start on an out-of-date "
            "schema); pass --backend-store-uri to compare revisions",
        )
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
    from sqlalchemy import create_engine

    engine = create_engine(sqlalchemy_uri(uri))
    try:
        current = _get_schema_version(engine)
    finally:
        engine.dispose()
    head = _get_latest_schema_revision()
    if current != head:
        return CheckResult("database schema", "fail", f"revision {current}, MLflow expects {head}")
    return CheckResult("database schema", "pass", f"revision {head} (alembic head)")


def _artifacts(o: DoctorOptions) -> CheckResult:
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient(o.tracking_uri)
    exp = client.get_experiment_by_name(DOCTOR_EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(DOCTOR_EXPERIMENT)
    run = client.create_run(exp_id, tags={"mlflow.runName": "doctor-probe"})
    token = uuid.uuid4().hex
    try:
        client.log_text(run.info.run_id, token, "probe.txt")
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run.info.run_id, "probe.txt", tmp)
            back = Path(local).read_text(encoding="utf-8")
        repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=o.tracking_uri)
        repo.delete_artifacts()
    finally:
        client.delete_run(run.info.run_id)
    if back != token:
        return CheckResult("artifact store", "fail", "wrote a probe but read back something else")
    return CheckResult("artifact store", "pass", f"wrote and read back {run.info.artifact_uri}")


# -- per model --------------------------------------------------------------------------------
def results_json(results: list[CheckResult]) -> str:
    failed = [r.check for r in results if r.status == "fail"]
    return json.dumps(
        {"ok": not failed, "failed": failed, "checks": [r.as_dict() for r in results]}, indent=2
    )
