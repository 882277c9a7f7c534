"""The organisations fixture (defined in api_fixtures.py, which the tests also import)."""

from __future__ import annotations

from api_fixtures import orgs

__all__ = ["orgs"]
