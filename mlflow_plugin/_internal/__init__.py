"""Plumbing shared by the packages, with no product meaning of its own (never imports mlflow):

- :mod:`.background`: a queue drained by one daemon thread (serving's writers, alerts);
- :mod:`.concurrency`: independent HTTP round trips run at once;
- :mod:`.lazy`: PEP 562 lazy attributes for package ``__init__`` modules;
- :mod:`.asgi`: ASGI middleware of the HTTP servers (body limits);
- :mod:`.sql`: SQLAlchemy URIs for the project's own tables;
- :mod:`.feature_ranges`: each numeric feature's training range, kept in the model's metadata;
- :mod:`.failpoint`: the crash tests' failpoints (a no-op unless a test names one);
- :mod:`.validation`: pydantic's errors as our one-line ``ConfigError`` (policy, parameters).
"""

__all__: list[str] = []
