"""Where the API archives each organisation's versions before retention deletes them: server
configuration (``mlflow-plugin api --archive-uri``), never a request's choice; the API
process writes there with its own credentials (docs/ARCHITECTURE.md, "Retention")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mlflow_plugin.errors import BadInput
from mlflow_plugin.mlflow_io._workspace import check_workspace

__all__ = ["ArchiveLocations"]


@dataclass(frozen=True)
class ArchiveLocations:
    """Archive URIs by organisation, and one for every other organisation.

    Archives are written under ``<uri>/<organisation>/<model>/v<version>`` whichever applies,
    so organisations sharing a location never share an archive.

    Attributes:
        by_org: organisation (workspace) -> archive URI.
        default: the archive URI of organisations not in ``by_org`` (None: none).
    """

    by_org: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def parse(cls, entries: Iterable[str]) -> ArchiveLocations:
        """From ``URI`` (every organisation) and ``ORG=URI`` entries.

        Raises:
            BadInput: an empty URI, a malformed organisation, or one given twice.
        """
        by_org: dict[str, str] = {}
        default: str | None = None
        for entry in entries:
            org, sep, uri = entry.partition("=")
            if not sep or any(c in org for c in ":/\\"):  # a URI (that may contain "=")
                org, uri = "", entry
            uri = uri.strip()
            if not uri:
                raise BadInput(f"--archive-uri {entry!r}: no URI")
            if not org:
                if default is not None:
                    raise BadInput("--archive-uri: more than one location for every organisation")
                default = uri
                continue
            check_workspace(org.strip(), what="--archive-uri organisation")
            if org.strip() in by_org:
                raise BadInput(f"--archive-uri: organisation {org.strip()!r} given twice")
            by_org[org.strip()] = uri
        return cls(by_org, default)

    def for_org(self, workspace: str) -> str | None:
        """The archive URI configured for ``workspace`` (None: retention cannot delete)."""
        return self.by_org.get(workspace, self.default)
