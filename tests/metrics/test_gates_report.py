"""The gate report: verdict, JSON round trip, Markdown."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_plugin.metrics import GateReport, GateResult, GateStatus

finite = st.floats(allow_nan=False, allow_infinity=False)
results = st.builds(
    GateResult,
    name=st.sampled_from(["c_index", "f1", "precision", "brier", "finite"]),
    status=st.sampled_from(list(GateStatus)),
    value=st.none() | finite,
    threshold=st.none() | finite,
    comparator=st.sampled_from([">", ">=", "<", "<=", "=="]),
    champion_value=st.none() | finite,
    champion_bound=st.none() | finite,
    reason=st.text(max_size=40),
)


def _row(name: str, status: GateStatus) -> GateResult:
    return GateResult(name, status, 0.6, 0.5, ">", reason="because | why")


class TestGateReport:
    @settings(max_examples=50, deadline=None)
    @given(gates=st.lists(results, max_size=6))
    def test_json_round_trip(self, gates: list[GateResult]) -> None:
        """from_json(to_json()) gives an equal report, verdict included."""
        report = GateReport(tuple(gates))
        again = GateReport.from_json(report.to_json())
        assert again == report
        assert again.passed == report.passed

    def test_passed_only_when_every_gate_passed(self) -> None:
        """One failed or undefined gate fails the report; failed_gates lists both kinds."""
        ok = _row("c_index", GateStatus.PASSED)
        assert GateReport((ok,)).passed
        report = GateReport(
            (ok, _row("f1", GateStatus.FAILED), _row("brier", GateStatus.UNDEFINED))
        )
        assert not report.passed
        assert report.failed_gates == ("f1", "brier")
        assert report.undefined_gates == ("brier",)

    def test_empty_report_does_not_pass(self) -> None:
        """A report with no gate never passes."""
        assert not GateReport(()).passed

    def test_json_has_status_strings(self) -> None:
        """The JSON carries readable statuses and the verdict."""
        data = json.loads(GateReport((_row("f1", GateStatus.UNDEFINED),)).to_json())
        assert data["passed"] is False
        assert data["gates"][0]["status"] == "undefined"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("{", "gate report: not JSON"),
            ("[]", "gate report: expected a mapping"),
            ('{"schema": 2, "gates": []}', "gate report: unsupported schema 2"),
            ('{"gates": [{"name": "f1"}]}', r"gate report: gates\[0\]\.status: expected str"),
            (
                '{"gates": [{"name": "f1", "status": "ok", "comparator": ">"}]}',
                r"gate report: gates\[0\]\.status: expected one of passed, failed, undefined",
            ),
            (
                '{"gates": [{"name": "f1", "status": "passed", "comparator": ">", "x": 1}]}',
                r"gate report: gates\[0\]: unknown field 'x'",
            ),
        ],
    )
    def test_from_json_rejects_bad_reports(self, text: str, message: str) -> None:
        """Malformed reports raise ValueError naming the field."""
        with pytest.raises(ValueError, match=f"^{message}"):
            GateReport.from_json(text)

    def test_markdown_table(self) -> None:
        """to_markdown renders a header, one row per gate, and escapes pipes."""
        report = GateReport((_row("c_index", GateStatus.PASSED), _row("f1", GateStatus.FAILED)))
        text = report.to_markdown()
        assert text.startswith("**Gates failed: f1**")
        assert "| gate | status | value | condition | champion | reason |" in text
        assert "| c_index | passed | 0.6 | > 0.5 |  | because \\| why |" in text
        assert len(text.strip().splitlines()) == 6
