"""The retention planner and the policy's retention section (pure: no server)."""

from __future__ import annotations

import pytest

from mlflow_plugin import ConfigError
from mlflow_plugin.policy import KeepLast, MaxAge, MinMetric, Policy, RetentionPolicy
from mlflow_plugin.retention import VersionFacts, plan_retention, recent_champions
from mlflow_plugin.types import Event

DAY_MS = 86_400_000
NOW = 1_000 * DAY_MS


def _facts(n: int, **metrics: dict[str, float]) -> list[VersionFacts]:
    return [
        VersionFacts(str(i), created_ms=NOW - (n - i) * DAY_MS, metrics=metrics.get(f"v{i}", {}))
        for i in range(1, n + 1)
    ]


def _policy(**retention: object) -> RetentionPolicy:
    return Policy.from_dict({"gates": {"f1": {"threshold": 0.4}}, "retention": retention}).retention


def _actions(decisions) -> dict[str, str]:
    return {d.version: d.action for d in decisions}


class TestPolicySection:
    def test_parses_rules_in_order_and_round_trips(self):
        """Rules keep their order; the built-in aliases are always kept; to_dict round-trips."""
        policy = Policy.from_dict(
            {
                "gates": {"f1": {"threshold": 0.4}},
                "retention": {
                    "archive_uri": "/a",
                    "protect_window": "30d",
                    "always_keep": ["gold"],
                    "rules": [
                        {"keep_last": 3},
                        {"min_metric": {"c_index": 0.6}},
                        {"max_age": "12w"},
                    ],
                },
            }
        )
        r = policy.retention
        assert r.rules == (KeepLast(3), MinMetric((("c_index", 0.6),)), MaxAge(84 * 86400.0))
        assert r.protect_window_s == 30 * 86400.0
        assert set(r.always_keep) >= {
            "champion",
            "fallback",
            "challenger",
            "canary",
            "preview",
            "gold",
        }
        assert Policy.from_dict(policy.to_dict()) == policy
        assert Policy.default().retention == RetentionPolicy()

    @pytest.mark.parametrize(
        "section, message",
        [
            ({"rules": [{"keep_last": 0}]}, r"retention.rules\[0\].keep_last: expected a positive"),
            (
                {"rules": [{"max_age": "soon"}], "archive_uri": "/a"},
                r"rules\[0\].max_age: expected a duration",
            ),
            ({"rules": [{"max_age": "3d"}]}, r"retention.archive_uri: required"),
            (
                {"rules": [{"min_metric": {"accuracy": 0.9}}], "archive_uri": "/a"},
                r"min_metric.accuracy: unknown key",
            ),
            ({"rules": [{"keep_last": 1, "max_age": "1d"}]}, r"rules\[0\]: expected exactly one"),
            ({"default": "purge"}, r"retention.default: expected keep or delete"),
            ({"always_keep": "champion"}, r"retention.always_keep: expected a list"),
            ({"protect_window": 1e308}, r"retention.protect_window: must be at most 3650d"),
            ({"protect_window": 10**400}, r"protect_window: must be at most 3650d"),
            ({"protect_window": float("nan")}, r"protect_window: must be at most 3650d"),
            (
                {"rules": [{"max_age": "3651d"}], "archive_uri": "/a"},
                r"rules\[0\].max_age: must be at most 3650d",
            ),
        ],
    )
    def test_bad_sections_fail_with_the_key_path(self, section, message):
        """Each mistake is one ConfigError naming the dotted key."""
        with pytest.raises(ConfigError, match=message):
            _policy(**section)


class TestPlan:
    def test_rules_apply_in_order_first_match_decides(self):
        """keep_last shields the newest from later rules; min_metric and max_age delete."""
        policy = _policy(
            archive_uri="/a",
            rules=[{"keep_last": 2}, {"min_metric": {"c_index": 0.6}}, {"max_age": "5d"}],
        )
        versions = _facts(8, v8={"c_index": 0.1}, v6={"c_index": 0.5}, v5={"c_index": 0.9})
        plan = plan_retention(policy, versions, {}, NOW)
        assert [d.version for d in plan] == [str(i) for i in range(8, 0, -1)]
        assert _actions(plan) == {
            "8": "keep",
            "7": "keep",
            "6": "delete",
            "5": "keep",
            "4": "keep",
            "3": "keep",
            "2": "delete",
            "1": "delete",
        }
        assert "c_index 0.5" in plan[2].reason and "max_age 5d" in plan[6].reason

    def test_protected_versions_are_never_deleted(self):
        """Aliases in always_keep and recent champions survive even `default: delete`."""
        policy = _policy(archive_uri="/a", default="delete", always_keep=["gold"])
        facts = [
            VersionFacts("1", 0, ("champion",)),
            VersionFacts("2", 0, ("gold",)),
            VersionFacts("3", 0, ("preview",)),
            VersionFacts("4", 0),
            VersionFacts("5", 0),
        ]
        plan = plan_retention(policy, facts, {"4": NOW}, NOW)
        assert _actions(plan) == {"5": "delete", "4": "keep", "3": "keep", "2": "keep", "1": "keep"}
        assert all(d.protected for d in plan if d.version != "5")

    def test_min_metric_follows_direction_and_skips_missing(self):
        """brier is lower-is-better; a version without the metric is not selected."""
        policy = _policy(archive_uri="/a", rules=[{"min_metric": {"brier": 0.2}}])
        facts = _facts(3, v1={"brier": 0.3}, v2={"brier": 0.1})
        assert _actions(plan_retention(policy, facts, {}, NOW)) == {
            "3": "keep",
            "2": "keep",
            "1": "delete",
        }

    def test_recent_champions_reads_the_ledger_window(self):
        """A champion replaced inside the window is protected; one replaced before it is not."""
        window_s = 10 * 86400
        events = [
            Event("deployment", "m", version="1", timestamp_ms=NOW - 30 * DAY_MS),
            Event("deployment", "m", version="2", from_version="1", timestamp_ms=NOW - 20 * DAY_MS),
            Event("deployment", "m", version="3", from_version="2", timestamp_ms=NOW - 5 * DAY_MS),
            Event("deployment", "m", version="4", from_version="3", timestamp_ms=NOW - 2 * DAY_MS),
            Event("rollback", "m", version="3", from_version="4", timestamp_ms=NOW - 1 * DAY_MS),
        ]
        assert set(recent_champions(events, window_s, NOW)) == {"2", "3", "4"}
