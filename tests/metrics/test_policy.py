"""The gate policy: defaults, YAML loading and load-time validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mlflow_plugin import ConfigError
from mlflow_plugin.cli import main
from mlflow_plugin.policy import GateSpec, Policy, SanityPolicy, policy_schema

POLICY_FILE = Path(__file__).resolve().parents[2] / "flows" / "policy.yaml"


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid policy document with top-level overrides."""
    return {"gates": {"c_index": {"threshold": 0.5}}, **overrides}


class TestDefaultPolicy:
    def test_default_values(self) -> None:
        """Defaults: C-index > 0.5 and >= champion + 0.0, F1 > 0.4, precision > 0.3, Brier < 0.3."""
        policy = Policy.default()
        assert [(g.name, g.comparator, g.threshold) for g in policy.gates] == [
            ("c_index", ">", 0.5),
            ("f1", ">", 0.4),
            ("precision", ">", 0.3),
            ("brier", "<", 0.3),
        ]
        assert policy.gate("c_index").min_delta_vs_champion == 0.0
        assert not policy.gate("f1").compares_with_champion
        assert policy.sanity == SanityPolicy(probability_atol=1e-6)
        assert policy.horizon is None

    def test_shipped_file_equals_default(self) -> None:
        """flows/policy.yaml loads to exactly Policy.default()."""
        assert Policy.from_yaml(POLICY_FILE) == Policy.default()

    def test_dict_round_trip(self) -> None:
        """from_dict(to_dict()) gives the same policy back."""
        policy = Policy.from_dict(
            _doc(
                gates={
                    "recall": {
                        "threshold": 0.2,
                        "inclusive": True,
                        "min_relative_change_vs_champion": 0.1,
                    }
                },
                horizon=26,
            )
        )
        assert Policy.from_dict(policy.to_dict()) == policy

    def test_frozen(self) -> None:
        """Policies are immutable values."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            Policy.default().horizon = 3.0  # type: ignore[misc]


class TestPolicyFromDict:
    def test_minimal_document(self) -> None:
        """Only gates.<name>.threshold is required; direction comes from the metric."""
        policy = Policy.from_dict({"gates": {"brier": {"threshold": 0.25}}})
        assert policy.gates == (GateSpec("brier", 0.25, higher_is_better=False),)
        assert policy.gates[0].comparator == "<"

    def test_integers_become_floats(self) -> None:
        """An integer threshold or horizon is accepted and stored as float."""
        policy = Policy.from_dict(_doc(gates={"c_index": {"threshold": 0}}, horizon=52))
        assert isinstance(policy.gates[0].threshold, float)
        assert policy.horizon == 52.0

    @pytest.mark.parametrize(
        ("document", "message"),
        [
            (_doc(gatez={}), "gatez: unknown key; expected one of gates, sanity, horizon"),
            (
                {"gates": {"f1": {"threshold": 0.4, "treshold": 0.5}}},
                "gates.f1.treshold: unknown key",
            ),
            (_doc(sanity={"atol": 0.1}), "sanity.atol: unknown key"),
            ({"gates": {"f1_score": {"threshold": 0.4}}}, "gates.f1_score: unknown key"),
            ({"gates": {"f1": {"threshold": "high"}}}, "gates.f1.threshold: expected a number"),
            ({"gates": {"f1": {"threshold": True}}}, "gates.f1.threshold: expected a number"),
            ({"gates": {"f1": {"threshold": 1.5}}}, "gates.f1.threshold: must be <= 1"),
            ({"gates": {"f1": {"threshold": -0.1}}}, "gates.f1.threshold: must be >= 0"),
            (
                {"gates": {"f1": {"threshold": float("nan")}}},
                "gates.f1.threshold: expected a finite",
            ),
            ({"gates": {"f1": {}}}, "gates.f1.threshold: required"),
            ({"gates": {"f1": {"threshold": None}}}, "gates.f1.threshold: required"),
            ({"gates": {"f1": 0.4}}, "gates.f1: expected a mapping, got float"),
            (
                {"gates": {"f1": {"threshold": 0.4, "inclusive": "yes"}}},
                "gates.f1.inclusive: expected true or false",
            ),
            (
                {"gates": {"brier": {"threshold": 0.3, "higher_is_better": True}}},
                "gates.brier.higher_is_better: brier is lower-is-better",
            ),
            (
                {"gates": {"c_index": {"threshold": 0.5, "min_delta_vs_champion": "0"}}},
                "gates.c_index.min_delta_vs_champion: expected a number",
            ),
            (
                {"gates": {"c_index": {"threshold": 0.5, "min_relative_change_vs_champion": 2}}},
                "gates.c_index.min_relative_change_vs_champion: must be <= 1",
            ),
            (
                _doc(sanity={"probability_atol": "1e-6"}),
                "sanity.probability_atol: expected a number, got text '1e-6' (write it with a dot",
            ),
            (_doc(horizon=0), "horizon: must be > 0"),
            (_doc(horizon=[52]), "horizon: expected a number, got list"),
            ({"gates": {}}, "gates: at least one gate is required"),
            ({"gates": None}, "gates: expected a mapping"),
            ({"sanity": {}}, "gates: required"),
            (None, "gates: required (the policy is empty)"),
            ([1, 2], "policy: expected a mapping at the top level, got list"),
        ],
    )
    def test_bad_document(self, document: object, message: str) -> None:
        """A bad document raises ConfigError whose one line starts with the dotted key path."""
        with pytest.raises(ConfigError) as info:
            Policy.from_dict(document)
        assert str(info.value).startswith(message)
        assert "\n" not in str(info.value)
        assert info.value.exit_code == 2


class TestPolicyFromYaml:
    def test_source_in_message(self, tmp_path: Path) -> None:
        """Errors from a file name the file after the dotted path."""
        path = tmp_path / "policy.yaml"
        path.write_text("gates:\n  f1: {threshold: 0.4, higher_is_better: maybe}\n")
        with pytest.raises(ConfigError, match=rf"^gates\.f1\.higher_is_better: .* \(in {path}\)$"):
            Policy.from_yaml(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError naming the path."""
        with pytest.raises(ConfigError, match="^policy file not found: .*nope.yaml$"):
            Policy.from_yaml(tmp_path / "nope.yaml")

    def test_yaml_syntax_error(self, tmp_path: Path) -> None:
        """Invalid YAML is one line with the position of the problem."""
        path = tmp_path / "policy.yaml"
        path.write_text("gates:\n  f1: {threshold: 0.4\n")
        with pytest.raises(
            ConfigError, match=r"^cannot parse policy file .* at line \d+, column \d+$"
        ):
            Policy.from_yaml(str(path))

    def test_duplicate_key(self, tmp_path: Path) -> None:
        """A key given twice is refused with its position instead of silently overwritten."""
        path = tmp_path / "policy.yaml"
        path.write_text("gates:\n  f1: {threshold: 0.4}\n  f1: {threshold: 0.6}\n")
        with pytest.raises(ConfigError, match=r"duplicate key 'f1' at line 3, column 3$"):
            Policy.from_yaml(path)

    def test_loads_yaml_file(self, tmp_path: Path) -> None:
        """A small file loads into frozen dataclasses."""
        path = tmp_path / "policy.yaml"
        path.write_text(
            "gates:\n  c_index: {threshold: 0.6, min_delta_vs_champion: -0.01}\n"
            "sanity: {probability_atol: 1.0e-3}\nhorizon: 26\n"
        )
        policy = Policy.from_yaml(path)
        assert policy.gate("c_index") == GateSpec("c_index", 0.6, True, min_delta_vs_champion=-0.01)
        assert policy.sanity.probability_atol == 1e-3
        assert policy.horizon == 26.0


def _schema_properties(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """The properties a schema node allows, through ``$ref`` and ``anyOf`` (nullable sections)."""
    if "$ref" in node:
        return _schema_properties(schema, schema["$defs"][node["$ref"].split("/")[-1]])
    for option in node.get("anyOf", ()):
        found = _schema_properties(schema, option)
        if found:
            return found
    if node.get("type") == "array" and "items" in node:
        return _schema_properties(schema, node["items"])
    return dict(node.get("properties", {}))


def _unknown_keys(
    schema: dict[str, Any], node: dict[str, Any], doc: object, path: str
) -> list[str]:
    """Dotted paths of the keys of ``doc`` the schema does not declare."""
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    properties = _schema_properties(schema, node)
    missing = []
    for key, value in items:
        if isinstance(key, int):
            missing += _unknown_keys(schema, node, value, f"{path}[{key}]")
        elif key not in properties:
            missing.append(f"{path}.{key}".lstrip("."))
        else:
            missing += _unknown_keys(schema, properties[key], value, f"{path}.{key}")
    return missing


class TestPolicySchema:
    def test_schema_command_prints_the_schema(self) -> None:
        """`mlflow-plugin policy schema` exits 0 with the JSON Schema of the policy file."""
        result = CliRunner().invoke(main, ["policy", "schema"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        schema = json.loads(result.output)
        assert schema == policy_schema()
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert schema["required"] == ["gates"]
        assert schema["additionalProperties"] is False

    def test_shipped_file_matches_the_schema(self) -> None:
        """Every key of flows/policy.yaml, at every depth, is a property of the schema."""
        schema = policy_schema()
        document = yaml.safe_load(POLICY_FILE.read_text())
        assert set(document) <= set(schema["properties"])
        assert _unknown_keys(schema, schema, document, "") == []

    def test_documented_closed_loop_sections_load_and_match_the_schema(self) -> None:
        """The commented-out triggers, rollback_if and alerts of flows/policy.yaml are valid."""
        commented = POLICY_FILE.read_text().split("Uncomment to use", 1)[1].splitlines()[1:]
        sections = yaml.safe_load("\n".join(line.removeprefix("# ") for line in commented))
        assert set(sections) == {"triggers", "rollback_if", "alerts"}
        document = {**yaml.safe_load(POLICY_FILE.read_text()), **sections}
        assert Policy.from_dict(document).triggers is not None
        schema = policy_schema()
        assert _unknown_keys(schema, schema, document, "") == []

    def test_bounds_reach_the_schema(self) -> None:
        """Bounds are JSON Schema keywords (minimum, maximum), never pydantic's own names."""
        text = json.dumps(policy_schema())
        assert '"ge"' not in text and '"le"' not in text
        rollout = policy_schema()["$defs"]["RolloutSection"]["properties"]
        assert rollout["min_requests"]["minimum"] == 1
        assert rollout["alpha"]["exclusiveMinimum"] == 0 and rollout["alpha"]["maximum"] == 0.5


class TestNullAndWholeNumbers:
    def test_null_means_the_default_inside_a_section(self) -> None:
        """A key set to null inside a section is as if it were left out."""
        policy = Policy.from_dict(
            _doc(champion_test={"method": None}, rollout={"alpha": None}, sanity=None)
        )
        assert policy == Policy.from_dict(_doc())

    def test_a_null_gate_is_refused(self) -> None:
        """`f1:` with nothing under it is an unfinished gate, not a missing one."""
        with pytest.raises(ConfigError, match=r"^gates\.f1: expected a mapping, got nothing"):
            Policy.from_dict({"gates": {"c_index": {"threshold": 0.5}, "f1": None}})

    def test_whole_numbers_may_be_written_as_floats(self) -> None:
        """200.0 is the whole number 200; 2.5 is refused as not whole."""
        policy = Policy.from_dict(_doc(champion_test={"resamples": 200.0}))
        assert policy.champion_test.resamples == 200
        assert isinstance(policy.champion_test.resamples, int)
        with pytest.raises(ConfigError, match=r"^alerts\.retries: expected a whole number"):
            Policy.from_dict(_doc(alerts={"retries": 2.5}))
