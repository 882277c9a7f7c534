"""SQLAlchemy URIs for the project's own tables (the prediction log, outcomes): one driver rule
and one way to print a URI without its password."""

from __future__ import annotations

__all__ = ["redact_sql_uri", "sqlalchemy_uri"]


def sqlalchemy_uri(uri: str) -> str:
    """``postgresql://`` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only it is here."""
    if not uri.startswith("postgresql://"):
        return uri
    import importlib.util

    if (
        importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
    return uri


def redact_sql_uri(uri: str) -> str:
    """``uri`` with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a message
        return "<uri>"
