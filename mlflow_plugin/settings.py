"""Settings read from the environment, in one place.

Every environment variable mlflow_plugin reads is read here, by a function called when the
value is needed (never at import: tests and parent processes set variables after it). Each
function keeps its variable's default, parsing and error message. Setting a variable for a
child process (``os.environ[...] = ...``, an ``env=`` mapping) is not a read and stays where
the child is started; click options with ``envvar=`` (``--tracking-uri``, ``--workspace``,
``--predictions``, doctor's ``--backend-store-uri``) are read by click.

Ours (``MLFLOW_PLUGIN_*``), each with its function here:

- ``ACTOR``: :func:`actor`, who acts (default: the OS user).
- ``AUDIT_EXPERIMENT``, ``EXPERIMENT``, ``RETRAIN_EXPERIMENT``, ``MONITORING_EXPERIMENT``:
  :func:`audit_experiment`, :func:`training_experiment`, :func:`retrain_experiment`,
  :func:`monitoring_experiment`, the experiments of the ledger, the steps, the operator's
  retraining runs and monitoring.
- ``STAGE_MIRROR``: :func:`stage_mirror_enabled`, mirror aliases to stages (true).
- ``LOCK_LEASE``, ``LOCK_TIMEOUT``: :func:`lock_lease` (30 s), :func:`lock_timeout` (120 s).
- ``REST_CLIENT``: :func:`rest_client_off`, ``off`` = MLflow's own client for the commands.
- ``MODEL_CACHE``: :func:`model_cache_dir`, the local model cache (``off``).
- ``CONNECT_TIMEOUT``: :func:`connect_timeout`, how long to wait for the tracking server (5 s).
- ``DOCTOR_MIN_FREE_GB``: :func:`doctor_min_free_gb`, ``doctor``'s disk check (1).
- ``WEBHOOK_SECRET``: :func:`webhook_secret`, the default of ``webhook-receiver --secret-env``.
- ``API_ARCHIVE_URIS``: :func:`api_archive_uris`, the default of ``api --archive-uri``
  (whitespace-separated ``URI`` and ``ORG=URI`` entries).
- ``KEY_FILE``, ``KEY_<WORKSPACE>``: :func:`key_file`, :func:`workspace_keys`, encryption keys.
- ``PREDICTIONS``: the operator commands' ``--predictions``, read by click (``envvar``).
- ``FAILPOINT``: a test hook, read by :mod:`mlflow_plugin._internal.failpoint` alone.

MLflow's, read where we do what MLflow's client would (the REST client, the steps' runs):
:func:`mlflow_tracking_uri`, :func:`mlflow_workspace`, :func:`mlflow_run_id`,
:func:`mlflow_experiment_id`, :func:`mlflow_experiment_name`, :func:`http_settings` (the
``MLFLOW_HTTP_REQUEST_*``, ``MLFLOW_HTTP_POOL_*``, ``MLFLOW_TRACKING_*`` credentials and TLS
variables, ``MLFLOW_ALLOW_HTTP_REDIRECTS``), :func:`mlflow_auth_plugin_or_sigv4`,
:func:`artifact_request_timeout`.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlflow_plugin.errors import BadInput, ConfigError

__all__ = [
    "AUDIT_EXPERIMENT_DEFAULT",
    "KEY_ENV_PREFIX",
    "KEY_FILE_ENV",
    "MONITORING_EXPERIMENT_DEFAULT",
    "RETRAIN_EXPERIMENT_DEFAULT",
    "TAG_PREFIX",
    "TRAINING_EXPERIMENT_DEFAULT",
    "WEBHOOK_SECRET_ENV",
    "HttpSettings",
    "acting_as",
    "actor",
    "api_archive_uris",
    "artifact_request_timeout",
    "audit_experiment",
    "connect_timeout",
    "doctor_min_free_gb",
    "env_flag",
    "env_seconds",
    "http_settings",
    "key_file",
    "lock_lease",
    "lock_timeout",
    "mlflow_auth_plugin_or_sigv4",
    "mlflow_experiment_id",
    "mlflow_experiment_name",
    "mlflow_run_id",
    "mlflow_tracking_uri",
    "mlflow_workspace",
    "model_cache_dir",
    "monitoring_experiment",
    "rest_client_off",
    "retrain_experiment",
    "stage_mirror_enabled",
    "training_experiment",
    "webhook_secret",
    "workspace_keys",
]

TAG_PREFIX = "mlflow_plugin."
AUDIT_EXPERIMENT_DEFAULT = "mlflow_plugin-deployments"
TRAINING_EXPERIMENT_DEFAULT = "mlflow_plugin-training"
RETRAIN_EXPERIMENT_DEFAULT = "mlflow_plugin-retraining"
MONITORING_EXPERIMENT_DEFAULT = "mlflow_plugin-monitoring"
WEBHOOK_SECRET_ENV = "MLFLOW_PLUGIN_WEBHOOK_SECRET"
KEY_FILE_ENV = "MLFLOW_PLUGIN_KEY_FILE"
KEY_ENV_PREFIX = "MLFLOW_PLUGIN_KEY_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_OFF = ("off", "0", "false", "no")


def _stripped(name: str) -> str:
    return os.environ.get(name, "").strip()


def env_flag(name: str, default: bool) -> bool:
    """Read a boolean environment variable; anything but true/false spellings is a ConfigError."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds in ``$name`` (``default`` when unset or blank)."""
    raw = _stripped(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise BadInput(f"{name}={raw!r} must be positive")
    return value


def _number(name: str, default: float) -> float:
    """``$name`` as a number; ``default`` when unset, blank or not a number (MLflow's way)."""
    raw = _stripped(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


# -- who acts ------------------------------------------------------------------------------

#: The caller a server acts for (the REST API's authenticated user), per request.
_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mlflow_plugin_actor", default=None
)


@contextlib.contextmanager
def acting_as(who: str) -> Iterator[None]:
    """Within the block (this thread, and the calls it hands to
    :func:`mlflow_plugin._internal.concurrency.parallel`), :func:`actor` is ``who``."""
    token = _ACTOR.set(who)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def actor() -> str:
    """Who acts: the caller bound by :func:`acting_as`, else ``$MLFLOW_PLUGIN_ACTOR``, else the
    OS user."""
    bound = _ACTOR.get()
    if bound:
        return bound
    explicit = _stripped("MLFLOW_PLUGIN_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- experiments ---------------------------------------------------------------------------


def audit_experiment() -> str:
    return _stripped("MLFLOW_PLUGIN_AUDIT_EXPERIMENT") or AUDIT_EXPERIMENT_DEFAULT


def training_experiment() -> str:
    """``$MLFLOW_PLUGIN_EXPERIMENT``: where the steps' runs go (default
    ``mlflow_plugin-training``) unless MLflow's own variables say otherwise."""
    return _stripped("MLFLOW_PLUGIN_EXPERIMENT") or TRAINING_EXPERIMENT_DEFAULT


def retrain_experiment() -> str:
    return _stripped("MLFLOW_PLUGIN_RETRAIN_EXPERIMENT") or RETRAIN_EXPERIMENT_DEFAULT


def monitoring_experiment() -> str:
    return _stripped("MLFLOW_PLUGIN_MONITORING_EXPERIMENT") or MONITORING_EXPERIMENT_DEFAULT


# -- the controller, its lock and its client -----------------------------------------------


def stage_mirror_enabled() -> bool:
    return env_flag("MLFLOW_PLUGIN_STAGE_MIRROR", True)


def lock_lease() -> float:
    """``$MLFLOW_PLUGIN_LOCK_LEASE`` seconds (default 30)."""
    raw = os.environ.get("MLFLOW_PLUGIN_LOCK_LEASE", "30")
    try:
        lease = float(raw)
    except ValueError:
        raise BadInput(f"MLFLOW_PLUGIN_LOCK_LEASE={raw!r} is not a number of seconds") from None
    if not 0.5 <= lease <= 3600:
        raise BadInput(f"MLFLOW_PLUGIN_LOCK_LEASE={raw!r} must be between 0.5 and 3600 seconds")
    return lease


def lock_timeout() -> float:
    """``$MLFLOW_PLUGIN_LOCK_TIMEOUT`` seconds (default 120): how long to wait for the lock."""
    return env_seconds("MLFLOW_PLUGIN_LOCK_TIMEOUT", 120.0)


def rest_client_off() -> bool:
    """``$MLFLOW_PLUGIN_REST_CLIENT`` is ``off`` (``0``, ``false``, ``no``): MLflow's client."""
    return _stripped("MLFLOW_PLUGIN_REST_CLIENT").lower() in _OFF


# -- training, doctor, webhooks, encryption ------------------------------------------------


def model_cache_dir() -> Path | None:
    """``$MLFLOW_PLUGIN_MODEL_CACHE``: the model cache's directory (default
    ``~/.cache/mlflow_plugin/models``), or None when it is ``off``."""
    raw = _stripped("MLFLOW_PLUGIN_MODEL_CACHE")
    if raw.lower() in _OFF:
        return None
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "mlflow_plugin" / "models"


def connect_timeout() -> float:
    """``$MLFLOW_PLUGIN_CONNECT_TIMEOUT`` seconds (default 5): how long to wait for the server."""
    raw = _stripped("MLFLOW_PLUGIN_CONNECT_TIMEOUT")
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        value = 5.0
    return value if value > 0 else 5.0


def doctor_min_free_gb() -> float:
    """``$MLFLOW_PLUGIN_DOCTOR_MIN_FREE_GB`` (default 1): ``doctor``'s least free disk space."""
    return float(os.environ.get("MLFLOW_PLUGIN_DOCTOR_MIN_FREE_GB", "1"))


def webhook_secret(name: str = WEBHOOK_SECRET_ENV) -> str:
    """The webhook receiver's shared secret, from ``$name`` ("" when unset)."""
    return os.environ.get(name, "")


def api_archive_uris() -> list[str]:
    """``$MLFLOW_PLUGIN_API_ARCHIVE_URIS`` split on whitespace: the API's archive locations,
    ``URI`` (every organisation) or ``ORG=URI`` ([] when unset)."""
    return os.environ.get("MLFLOW_PLUGIN_API_ARCHIVE_URIS", "").split()


def key_file(environ: Mapping[str, str] | None = None) -> str:
    """``$MLFLOW_PLUGIN_KEY_FILE`` as given ("" when unset), in ``environ`` (default: the
    process's environment)."""
    return (os.environ if environ is None else environ).get(KEY_FILE_ENV, "")


def workspace_keys(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The keys in ``$name`` (an ``MLFLOW_PLUGIN_KEY_<WORKSPACE>``), stripped ("" when unset),
    in ``environ`` (default: the process's environment)."""
    return (os.environ if environ is None else environ).get(name, "").strip()


# -- MLflow's variables, where we do what its client does ----------------------------------


def mlflow_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` as given ("" when unset)."""
    return os.environ.get("MLFLOW_TRACKING_URI", "")


def mlflow_workspace() -> str | None:
    """``$MLFLOW_WORKSPACE``, stripped; None when unset or blank."""
    return (os.environ.get("MLFLOW_WORKSPACE") or "").strip() or None


def mlflow_run_id() -> str | None:
    """``$MLFLOW_RUN_ID`` (set by ``mlflow run`` for the entry point's run); None when unset
    or empty."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def mlflow_experiment_id() -> str | None:
    """``$MLFLOW_EXPERIMENT_ID``; None when unset or empty."""
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or None


def mlflow_experiment_name() -> str:
    """``$MLFLOW_EXPERIMENT_NAME``, stripped ("" when unset)."""
    return _stripped("MLFLOW_EXPERIMENT_NAME")


def mlflow_auth_plugin_or_sigv4() -> bool:
    """An MLflow auth plugin (``$MLFLOW_TRACKING_AUTH``) or AWS SigV4 signing
    (``$MLFLOW_TRACKING_AWS_SIGV4``): request signing only MLflow's client implements."""
    if _stripped("MLFLOW_TRACKING_AUTH"):
        return True
    return _stripped("MLFLOW_TRACKING_AWS_SIGV4").lower() in _TRUE


def artifact_request_timeout() -> float:
    """``$MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds for a scoped caller's artifact calls (default
    15)."""
    return float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "15"))


@dataclass(frozen=True)
class HttpSettings:
    """MLflow's HTTP client settings, read by :func:`http_settings`, as MLflow reads them.

    Attributes:
        max_retries: ``$MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (7).
        backoff_factor: ``$MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` (2).
        backoff_jitter: ``$MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`` (1.0).
        pool_connections: ``$MLFLOW_HTTP_POOL_CONNECTIONS`` (10).
        pool_maxsize: ``$MLFLOW_HTTP_POOL_MAXSIZE`` (10).
        timeout: ``$MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds (120).
        username, password, token: ``$MLFLOW_TRACKING_USERNAME``, ``_PASSWORD``, ``_TOKEN``.
        server_cert: ``$MLFLOW_TRACKING_SERVER_CERT_PATH``.
        insecure_tls: ``$MLFLOW_TRACKING_INSECURE_TLS`` is true.
        client_cert: ``$MLFLOW_TRACKING_CLIENT_CERT_PATH``.
        allow_redirects: ``$MLFLOW_ALLOW_HTTP_REDIRECTS`` (true).
    """

    max_retries: int
    backoff_factor: float
    backoff_jitter: float
    pool_connections: int
    pool_maxsize: int
    timeout: float
    username: str | None
    password: str | None
    token: str | None
    server_cert: str | None
    insecure_tls: bool
    client_cert: str | None
    allow_redirects: bool


def http_settings() -> HttpSettings:
    """MLflow's HTTP client variables, read now (a number that does not parse is its default,
    as in MLflow)."""
    return HttpSettings(
        max_retries=int(_number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7)),
        backoff_factor=_number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2),
        backoff_jitter=_number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0),
        pool_connections=int(_number("MLFLOW_HTTP_POOL_CONNECTIONS", 10)),
        pool_maxsize=int(_number("MLFLOW_HTTP_POOL_MAXSIZE", 10)),
        timeout=_number("MLFLOW_HTTP_REQUEST_TIMEOUT", 120),
        username=os.environ.get("MLFLOW_TRACKING_USERNAME") or None,
        password=os.environ.get("MLFLOW_TRACKING_PASSWORD") or None,
        token=os.environ.get("MLFLOW_TRACKING_TOKEN") or None,
        server_cert=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None,
        insecure_tls=_stripped("MLFLOW_TRACKING_INSECURE_TLS").lower() in _TRUE,
        client_cert=os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
        allow_redirects=os.environ.get("MLFLOW_ALLOW_HTTP_REDIRECTS", "true").lower()
        in ("true", "1"),
    )
