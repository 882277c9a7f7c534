"""The ledger: every deployment, rejection, rollback and configuration change is an MLflow run
in experiment ``mlflow_plugin-deployments``, hash-chained per model.

- :mod:`._ledger`: :class:`Ledger`, writing and reading events (``events``, ``status``);
- :mod:`._chain`: the hash chain as pure functions (``verify-ledger``);
- :mod:`._event_tags`: an event as run tags and back;
- :mod:`._migrate`: sealing events written before the chain existed;
- :mod:`._commands`: ``mlflow-plugin verify-ledger``.

Importing the package is cheap: each member's module is imported on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow_plugin._internal.lazy import lazy_attributes

if TYPE_CHECKING:
    from mlflow_plugin.ledger._chain import (
        GENESIS,
        HASH_TAG,
        MODEL_DIGEST_TAG,
        PREV_HASH_TAG,
        SEQ_TAG,
        ChainEntry,
        event_hash,
        head,
        model_digest,
        verify,
    )
    from mlflow_plugin.ledger._event_tags import (
        event_from,
        event_tags,
        run_name,
    )
    from mlflow_plugin.ledger._ledger import (
        TAGS,
        ChainReport,
        Ledger,
        Migration,
        PreparedEvent,
        parse_since,
    )
    from mlflow_plugin.ledger._migrate import (
        MIGRATED_TAG,
        SEQ_BEFORE_TAG,
        migrate,
    )

__all__ = [
    "ChainEntry",
    "ChainReport",
    "GENESIS",
    "HASH_TAG",
    "Ledger",
    "MIGRATED_TAG",
    "MODEL_DIGEST_TAG",
    "Migration",
    "PREV_HASH_TAG",
    "PreparedEvent",
    "SEQ_BEFORE_TAG",
    "SEQ_TAG",
    "TAGS",
    "event_from",
    "event_hash",
    "event_tags",
    "head",
    "migrate",
    "model_digest",
    "parse_since",
    "run_name",
    "verify",
]

_LAZY = {
    "TAGS": "_ledger",
    "ChainReport": "_ledger",
    "Ledger": "_ledger",
    "Migration": "_ledger",
    "PreparedEvent": "_ledger",
    "parse_since": "_ledger",
    "GENESIS": "_chain",
    "HASH_TAG": "_chain",
    "MODEL_DIGEST_TAG": "_chain",
    "PREV_HASH_TAG": "_chain",
    "SEQ_TAG": "_chain",
    "ChainEntry": "_chain",
    "event_hash": "_chain",
    "head": "_chain",
    "model_digest": "_chain",
    "verify": "_chain",
    "event_from": "_event_tags",
    "event_tags": "_event_tags",
    "run_name": "_event_tags",
    "MIGRATED_TAG": "_migrate",
    "SEQ_BEFORE_TAG": "_migrate",
    "migrate": "_migrate",
}

# PEP 562: the members' modules are imported on first use.
__getattr__, __dir__ = lazy_attributes(
    globals(), {name: f"{__name__}.{module}" for name, module in _LAZY.items()}, __all__
)
