"""Fixtures of the end-to-end tests: ``install``, trioweb as other accounts can run it (see hostingkit)."""

from tests.e2e.hostingkit import install

__all__ = ["install"]
