"""pytest plugin registered by kinformer's entry point: fixtures for users' operator tests."""
