"""``mlflow-plugin policy schema``: the policy file's JSON Schema, for editors.

Save it and point the editor at it, e.g. with the YAML language server (VS Code's YAML
extension) by a first line in ``flows/policy.yaml``::

    # yaml-language-server: $schema=policy.schema.json
"""

from __future__ import annotations

import json

import click

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """The policy file (flows/policy.yaml): gates, champion test, closed loop, rollouts."""


@policy.command()
def schema() -> None:
    """Print the JSON Schema of the policy file (completion and checks in editors)."""
    from mlflow_plugin.policy import policy_schema

    click.echo(json.dumps(policy_schema(), indent=2))
