"""Embedded brokers: the ``run`` fixture (tests/helpers/fixtures.py)."""

from tests.helpers.fixtures import run  # noqa: F401
