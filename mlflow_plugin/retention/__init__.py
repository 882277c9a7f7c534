"""Retention that knows the ledger: archive, then delete, the versions a policy no longer needs.

``apply_retention(controller, model, policy, dry_run=...)`` is what ``mlflow-plugin retention``
and the operator's schedule call. Never deleted: the versions behind the aliases in the policy's
``always_keep`` (champion, fallback, challenger, canary, preview and any added) and every version
that was champion within ``protect_window`` according to the ledger. Every deleted version was
archived first (digests checked) and listed in a ``retention`` ledger event. See
docs/ARCHITECTURE.md, "Retention and doctor".
"""

from __future__ import annotations

from mlflow_plugin.retention._apply import (
    MAX_DELETIONS_PER_RUN,
    RetentionReport,
    apply_retention,
    recorded_archive_uri,
    retention_task,
)
from mlflow_plugin.retention._archive import (
    RESTORED_FROM_TAG,
    ArchiveError,
    ArchiveRecord,
    archive_version,
    archive_workspace,
    read_archive,
    restore_version,
)
from mlflow_plugin.retention._plan import Decision, VersionFacts, plan_retention, recent_champions

__all__ = [
    "ArchiveError",
    "ArchiveRecord",
    "Decision",
    "MAX_DELETIONS_PER_RUN",
    "RESTORED_FROM_TAG",
    "RetentionReport",
    "VersionFacts",
    "apply_retention",
    "archive_version",
    "archive_workspace",
    "plan_retention",
    "read_archive",
    "recent_champions",
    "recorded_archive_uri",
    "restore_version",
    "retention_task",
]
