"""Fixtures of the distrib tests: a front forwarding ~alice to a personal server."""

from __future__ import annotations

import pytest

from tests.trioweb.distrib.personal import front_to_personal


@pytest.fixture
async def front(start_site, nursery, tmp_path):
    site, _ = await front_to_personal(start_site, nursery, tmp_path)
    return site
