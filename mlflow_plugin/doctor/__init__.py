"""``mlflow-plugin doctor``: production readiness in one command.

Server-wide checks (tracking server and its MLflow version, SQL backend, database schema,
artifact store round trip, disk space, policy file, prediction log) and, per managed model,
champion set, stage mirror in sync, no leftover lock, ledger chain intact, champion and fallback
artifact digests, fallback enabled, operator heartbeat recent. See docs/ARCHITECTURE.md,
"Retention and doctor".
"""

from __future__ import annotations

from mlflow_plugin.doctor._adapters import HEARTBEAT_TAG
from mlflow_plugin.doctor._checks import CheckResult, DoctorOptions, run_checks

__all__ = ["HEARTBEAT_TAG", "CheckResult", "DoctorOptions", "run_checks"]
