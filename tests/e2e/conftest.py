"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import pytest

from tests.support.hosting import installed_for_accounts


@pytest.fixture(scope="session")
def install():
    """What real accounts run (see tests/support/hosting.py); made once per test run."""
    with installed_for_accounts() as install:
        yield install
