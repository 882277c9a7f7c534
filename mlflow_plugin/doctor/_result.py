"""What a doctor check answers (:class:`CheckResult`, redacted as it is made), what it is asked
(:class:`DoctorOptions`), and :func:`guard`, which turns whatever a check raises into its
``fail`` line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow_plugin.errors import MlflowPluginError, redact

__all__ = ["GB", "CheckResult", "DoctorOptions", "guard"]

GB = 1024**3


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's table."""

    check: str
    status: str  # pass | warn | fail | skip
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        # Every line the doctor prints passes here: credentials in a URI never reach the table
        # or the JSON (the same redaction as every error message).
        object.__setattr__(self, "detail", redact(self.detail))
        object.__setattr__(self, "fix", redact(self.fix))

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorOptions:
    """What to check and against which limits.

    Attributes:
        tracking_uri: the tracking server.
        models: models to check; None means every model the ledger knows.
        policy: policy file (``default``: ``flows/policy.yaml``, else the built-in policy).
        min_free_bytes: least free space on each checked path (default 1 GB).
        paths: local paths whose disk is checked (default: the working directory, the
            temporary directory, and the local archive and prediction-log directories).
        backend_store_uri: the server's database, when known: its schema is compared with
            MLflow's alembic head (otherwise the running server vouches for it).
        prediction_log: SQLAlchemy URI of the serving prediction log.
        heartbeat_max_age_s: an operator heartbeat older than this fails.
        require_sql: fail unless the backend is SQL (webhooks and workspaces need it).
    """

    tracking_uri: str
    models: list[str] | None = None
    policy: str = "default"
    min_free_bytes: int = GB
    paths: tuple[str, ...] = ()
    backend_store_uri: str | None = None
    prediction_log: str = "sqlite:///predictions.db"
    heartbeat_max_age_s: float = 900.0
    require_sql: bool = True
    timeout_s: float = 5.0
    _policy: Any = field(default=None, repr=False)


def guard(name: str, fn: Callable[[], CheckResult], fix: str = "") -> CheckResult:
    try:
        return fn()
    except MlflowPluginError as exc:
        return CheckResult(name, "fail", exc.message, fix)
    except Exception as exc:  # noqa: BLE001 - a check reports, it never crashes the doctor
        return CheckResult(name, "fail", f"{type(exc).__name__}: {' '.join(str(exc).split())}", fix)
