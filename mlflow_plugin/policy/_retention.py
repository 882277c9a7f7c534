"""The policy's ``retention`` section: which registered versions may be archived and deleted.

Rules are ordered, in the style of container-registry lifecycle policies: each version that is
not protected is decided by the first rule that selects it; a version no rule selects gets the
``default`` action (``keep`` unless set to ``delete``)::

    retention:
      archive_uri: file:///srv/mlflow-archive  # where versions are copied before deletion
      protect_window: 90d     # a version that was champion this recently is never deleted
      always_keep: [baseline] # aliases kept in addition to champion, fallback, challenger,
                              # canary and preview (those five cannot be removed)
      rules:
        - keep_last: 3                 # keep the 3 newest versions still undecided
        - min_metric: {c_index: 0.6}   # delete versions whose c_index is worse than 0.6
        - max_age: 180d                # delete versions older than 180 days
      default: keep                    # keep | delete: versions no rule selected

Durations are a number of days or text with a unit: ``90d``, ``12h``, ``30m``, ``2w``, ``45s``.
``min_metric`` follows each metric's direction (:data:`GATE_DIRECTIONS`): for ``brier`` it
selects versions whose Brier score is above the bound. A version without the metric is never
selected by ``min_metric`` (retention does not delete on missing evidence).
How the rules are applied: :func:`mlflow_plugin.retention.plan_retention`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_plugin.policy._policy import _Loader

__all__ = [
    "PROTECTED_ALIASES",
    "KeepLast",
    "MaxAge",
    "MinMetric",
    "RetentionPolicy",
    "RetentionRule",
    "format_duration",
]

#: Aliases whose versions retention never deletes, whatever the policy says.
PROTECTED_ALIASES = ("champion", "fallback", "challenger", "canary", "preview")
DEFAULT_PROTECT_WINDOW_S = 90 * 86400.0

_KEYS = ("archive_uri", "protect_window", "always_keep", "rules", "default")
_RULE_KEYS = ("keep_last", "min_metric", "max_age")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class KeepLast:
    """Keep the ``count`` newest versions that earlier rules left undecided."""

    count: int

    def describe(self) -> str:
        return f"keep_last {self.count}"


@dataclass(frozen=True)
class MinMetric:
    """Delete versions whose metric is worse than its bound (``bounds``: metric -> bound)."""

    bounds: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        return "min_metric " + ", ".join(f"{m} {b:g}" for m, b in self.bounds)


@dataclass(frozen=True)
class MaxAge:
    """Delete versions registered more than ``seconds`` ago."""

    seconds: float

    def describe(self) -> str:
        return f"max_age {format_duration(self.seconds)}"


RetentionRule = KeepLast | MinMetric | MaxAge


@dataclass(frozen=True)
class RetentionPolicy:
    """A validated ``retention`` section (the default keeps everything).

    Attributes:
        rules: ordered rules; the first that selects a version decides it.
        default: ``keep`` or ``delete``: the action for versions no rule selected.
        always_keep: aliases whose versions are never deleted (includes
            :data:`PROTECTED_ALIASES`).
        protect_window_s: a version that was champion within this many seconds is kept.
        archive_uri: artifact-store URI (``file://``, a path, ``s3://``...) the versions are
            copied to before deletion; required as soon as the policy can delete.
    """

    rules: tuple[RetentionRule, ...] = ()
    default: str = "keep"
    always_keep: tuple[str, ...] = PROTECTED_ALIASES
    protect_window_s: float = DEFAULT_PROTECT_WINDOW_S
    archive_uri: str | None = None

    @property
    def can_delete(self) -> bool:
        return self.default == "delete" or any(not isinstance(r, KeepLast) for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        for rule in self.rules:
            if isinstance(rule, KeepLast):
                rules.append({"keep_last": rule.count})
            elif isinstance(rule, MinMetric):
                rules.append({"min_metric": dict(rule.bounds)})
            else:
                rules.append({"max_age": format_duration(rule.seconds)})
        return {
            "archive_uri": self.archive_uri,
            "protect_window": format_duration(self.protect_window_s),
            "always_keep": [a for a in self.always_keep if a not in PROTECTED_ALIASES],
            "rules": rules,
            "default": self.default,
        }


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: ``90d``, ``12h``, ``45s``."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_retention(loader: _Loader, value: object) -> RetentionPolicy:
    """Validate the ``retention`` mapping (errors carry the dotted path, see ``_Loader``)."""
    from mlflow_plugin.policy._gate_spec import GATE_DIRECTIONS

    if value is None:
        return RetentionPolicy()
    doc = loader.mapping("retention", value, _KEYS)
    archive_uri = doc.get("archive_uri")
    if archive_uri is not None and (not isinstance(archive_uri, str) or not archive_uri.strip()):
        loader.fail("retention.archive_uri", "expected a non-empty URI or path")
    window = DEFAULT_PROTECT_WINDOW_S
    if doc.get("protect_window") is not None:
        window = _duration(loader, "retention.protect_window", doc["protect_window"])
    always = list(PROTECTED_ALIASES)
    extra = doc.get("always_keep") or []
    if not isinstance(extra, list) or not all(isinstance(a, str) and a.strip() for a in extra):
        loader.fail("retention.always_keep", "expected a list of alias names")
    always += [a for a in extra if a not in always]
    default = doc.get("default", "keep")
    if default not in ("keep", "delete"):
        loader.fail("retention.default", f"expected keep or delete, got {default!r}")
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        loader.fail("retention.rules", "expected a list of rules")
    rules: list[RetentionRule] = []
    for i, raw in enumerate(raw_rules):
        path = f"retention.rules[{i}]"
        rule = loader.mapping(path, raw, _RULE_KEYS)
        if len(rule) != 1:
            loader.fail(path, f"expected exactly one of {', '.join(_RULE_KEYS)}")
        ((kind, arg),) = rule.items()
        if kind == "keep_last":
            if isinstance(arg, bool) or not isinstance(arg, int) or arg < 1:
                loader.fail(f"{path}.keep_last", f"expected a positive integer, got {arg!r}")
            rules.append(KeepLast(arg))
        elif kind == "max_age":
            rules.append(MaxAge(_duration(loader, f"{path}.max_age", arg)))
        else:
            bounds = loader.mapping(f"{path}.min_metric", arg, tuple(GATE_DIRECTIONS))
            if not bounds:
                loader.fail(f"{path}.min_metric", "expected at least one metric: bound")
            rules.append(
                MinMetric(
                    tuple(
                        (str(m), loader.number(f"{path}.min_metric.{m}", b))
                        for m, b in bounds.items()
                    )
                )
            )
    policy = RetentionPolicy(
        rules=tuple(rules),
        default=str(default),
        always_keep=tuple(always),
        protect_window_s=window,
        archive_uri=archive_uri.strip() if archive_uri else None,
    )
    if policy.can_delete and policy.archive_uri is None:
        loader.fail("retention.archive_uri", "required when a rule or the default deletes versions")
    return policy


def _duration(loader: _Loader, path: str, value: object) -> float:
    if isinstance(value, bool):
        loader.fail(path, f"expected a duration such as 90d, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) * 86400.0
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        loader.fail(path, f"expected a duration such as 90d, 12h or 2w, got {value!r}")
    if seconds < 0:
        loader.fail(path, "must not be negative")
    return seconds
