"""``python -m mlflow_plugin.cli``: the same as the ``mlflow-plugin`` console script."""

import sys

from mlflow_plugin.cli import main

sys.exit(main(prog_name="mlflow-plugin"))
