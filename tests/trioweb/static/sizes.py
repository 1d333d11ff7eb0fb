"""Sizes the static-file tests share."""

BIG_SIZE = 3 * 1024 * 1024 + 12345  # several sendfile rounds, not a multiple of anything
