"""Fixtures of the end-to-end tests with real accounts (community hosting)."""

from __future__ import annotations

import pytest

from tests.e2e.hosting.accounts import CannotInstall, install_for_accounts


@pytest.fixture(scope="session")
def install():
    """What the accounts run (see ``tests.e2e.hosting.accounts``); skipped with the reason if nothing can be."""
    try:
        with install_for_accounts() as found:
            yield found
    except CannotInstall as exc:
        pytest.skip(str(exc))
