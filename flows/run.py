"""MLproject entry script: ``python flows/run.py <step> --option value ...``.

The steps live in :mod:`mlflow_plugin.training`; this file only hands the command line over, so
``mlflow run . -e <step>`` and ``mlflow-plugin <step>`` run the same code. The project checkout
goes first on ``sys.path``: ``mlflow run .`` runs *this* project, installed or not (a conda
environment built from ``conda.yaml`` only has the dependencies).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow_plugin.training._commands import steps  # noqa: E402

if __name__ == "__main__":
    steps(prog_name="flows/run.py")
