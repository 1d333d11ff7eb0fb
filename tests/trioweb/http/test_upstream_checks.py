"""check_fields (the rules for a relayed head's fields) against their field-by-field definition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioweb.http import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    BadUpstreamResponse,
    check_fields,
    has_forbidden_characters,
    is_token,
)

# Token characters, and the ones that break a name or a value (space, colon, CR, LF, NUL, tab...).
ALPHABET = b"aZ09-!~ :\r\n\x00\t\x7f,"
pieces = st.binary(min_size=0, max_size=6).map(lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b))


@given(st.lists(st.tuples(pieces, pieces), max_size=8))
def test_check_fields_refuses_exactly_what_one_field_would(headers):
    bad = any(not is_token(name) or has_forbidden_characters(value) for name, value in headers)
    if bad:
        with pytest.raises(BadUpstreamResponse):
            check_fields(headers)
    else:
        check_fields(headers)


def test_count_and_size_limits():
    check_fields([(b"x", b"v")] * MAX_HEADERS)
    with pytest.raises(BadUpstreamResponse):
        check_fields([(b"x", b"v")] * (MAX_HEADERS + 1))
    with pytest.raises(BadUpstreamResponse):
        check_fields([(b"x", b"v" * MAX_HEADER_BYTES)])
