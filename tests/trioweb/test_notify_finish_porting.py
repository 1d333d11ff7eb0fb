"""``notifyFinish`` used the Twisted way (a Deferred) fails with a message saying what to write instead."""

from __future__ import annotations

import gc
import warnings

import pytest

from trioweb.resource import NOT_DONE_YET, Resource
from trioweb.testing import fetch


class DeferredStyle(Resource):
    isLeaf = True

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method

    def render_GET(self, request):
        notice = request.notifyFinish()
        getattr(notice, self.method)(lambda _: None)
        return NOT_DONE_YET


@pytest.mark.parametrize("method", ["addCallback", "addErrback", "addBoth", "addCallbacks"])
async def test_deferred_methods_raise_with_the_porting_hint(method):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = await fetch(DeferredStyle(method), b"/")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]  # no wait was started
    assert response.code == 500
    body = bytes(response.body)
    assert b"await request.notifyFinish()" in body and b"docs/porting.md" in body


async def test_other_failures_keep_their_details_in_the_log_only():
    class Fails(Resource):
        isLeaf = True

        def render_GET(self, request):
            raise RuntimeError("secret detail")

    response = await fetch(Fails(), b"/")
    assert response.code == 500 and b"secret detail" not in bytes(response.body)

