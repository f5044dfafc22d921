"""Shared fixtures live in tests/harness.py."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.harness"]


@pytest.fixture(autouse=True)
def _own_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's data of each test lives in its tmp_path, never in the checkout's .run/."""
    monkeypatch.setenv("RESPONDER_RUN_DIR", str(tmp_path / "run"))
