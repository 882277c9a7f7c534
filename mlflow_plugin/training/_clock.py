"""The stopwatch that says where a pipeline's time goes (``import``, ``data``, ``training``,
``gates``, ``registry``, ``tracking``...), reported by ``main`` (docs/ARCHITECTURE.md, "HTTP round
trips and the tracking server").
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

__all__ = ["CLOCK", "Clock", "warm_imports"]


class Clock:
    """Wall time per category (``import``, ``data``, ``training``, ``gates``, ``registry``...).

    Categories do not nest: a ``with clock("registry")`` inside ``with clock("training")`` is
    taken out of ``training``, so the parts add up to the whole.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._stack: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, category: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:  # pause the enclosing category
            outer, since = self._stack[-1]
            self.totals[outer] = self.totals.get(outer, 0.0) + now - since
        self._stack.append((category, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.totals[category] = self.totals.get(category, 0.0) + end - since
            if self._stack:
                outer, _ = self._stack[-1]
                self._stack[-1] = (outer, end)

    def reset(self) -> None:
        self.totals.clear()
        self._stack.clear()

    def summary(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1])}

    def to_json(self) -> str:
        return json.dumps(self.summary())


#: The process-wide stopwatch (one pipeline per process).
CLOCK = Clock()


def warm_imports() -> None:
    """Import the heavy libraries up front, under ``import``, so the steps' figures are clean."""
    with CLOCK("import"):
        import lifelines  # noqa: F401
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
        import mlflow  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
        import sklearn.linear_model  # noqa: F401
        import sksurv.metrics  # noqa: F401

        import mlflow_plugin.metrics._classification  # noqa: F401
        import mlflow_plugin.metrics._survival  # noqa: F401
        import mlflow_plugin.training._model  # noqa: F401
