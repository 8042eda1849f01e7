"""Talking to upstreams: HTTP helpers that fetch what an index does not hand over directly."""
