"""The public surface: ``__all__`` lists are sorted and name what the modules export."""

from __future__ import annotations

import importlib

import pytest

import mlflow_plugin

PUBLIC_MODULES = [
    "mlflow_plugin",
    "mlflow_plugin.metrics",
    "mlflow_plugin.policy",
    "mlflow_plugin.evaluation",
    "mlflow_plugin.ledger",
    "mlflow_plugin.registry",
    "mlflow_plugin.integrity",
    "mlflow_plugin.mlflow_io",
    "mlflow_plugin.rollouts",
    "mlflow_plugin.controller",
    "mlflow_plugin.training",
    "mlflow_plugin.webhooks",
    "mlflow_plugin.retention",
    "mlflow_plugin.testing",
    "mlflow_plugin.serving",
    "mlflow_plugin.monitoring",
    "mlflow_plugin.operator",
    "mlflow_plugin.encryption",
]


class TestExportedMembers:
    @pytest.mark.parametrize("name", PUBLIC_MODULES)
    def test_all_is_sorted_and_resolvable(self, name):
        """Every ``__all__`` entry exists, and the list is sorted (httpx's convention)."""
        module = importlib.import_module(name)
        exported = list(module.__all__)
        assert exported == sorted(exported, key=str.casefold) or exported == sorted(exported)
        for member in exported:
            assert hasattr(module, member), f"{name}.{member}"

    def test_errors_form_one_tree(self):
        """Every public exception derives from MlflowPluginError and has an exit code."""
        for member in mlflow_plugin.__all__:
            obj = getattr(mlflow_plugin, member)
            if isinstance(obj, type) and issubclass(obj, Exception):
                assert issubclass(obj, mlflow_plugin.MlflowPluginError)
                assert obj.exit_code in (1, 2, 3, 4, 5)

    def test_import_is_cheap(self):
        """Importing the package does not import mlflow (2.5 s) — the CLI depends on it."""
        import subprocess
        import sys

        code = "import sys, mlflow_plugin, mlflow_plugin.cli; print('mlflow' in sys.modules)"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "False"
