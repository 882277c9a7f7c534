"""The stage mirror: champion -> ``Production``, challenger -> ``Staging``, a replaced champion
-> ``Archived`` (for tools that still read the deprecated stages). Pure planning; the controller
makes the writes."""

from __future__ import annotations

from mlflow_plugin.types import VersionInfo

__all__ = ["mirror_plan"]


def mirror_plan(
    versions: dict[str, VersionInfo], champion: str | None, challenger: str | None
) -> list[tuple[str, str, str]]:
    """Stage changes ``(version, from, to)`` that make stages follow the aliases.

    No champion means nothing serves: no version stays in ``Production``.
    """
    if challenger == champion:
        challenger = None
    plan = []
    for v in versions.values():
        if v.version == champion:
            want = "Production"
        elif v.version == challenger:
            want = "Staging"
        elif v.stage == "Production":
            want = "Archived"
        elif v.stage == "Staging":
            want = "None"
        else:
            continue
        if v.stage != want:
            plan.append((v.version, v.stage, want))
    return plan
