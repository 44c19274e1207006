"""Test support: a protocol-faithful fake API server, pytest fixtures, hypothesis strategies."""
