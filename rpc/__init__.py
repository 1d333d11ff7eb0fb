"""A PB-style RPC over trio streams, with msgpack on the wire."""
