"""Shared test setup: make the repository root importable under a bare `pytest` run, and the
tiny weights, written once per test session."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """The tiny SD 1.x weights (`python -m animate.tiny`), in a folder of the session's own."""
    from animate.tiny import write_tiny_weights  # torch and diffusers: only for tests that need them

    return write_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny")
