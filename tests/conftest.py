"""Shared fixtures live in tests/harness.py."""

pytest_plugins = ["tests.harness"]
