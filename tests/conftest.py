"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REALCLIPS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "realclips"


@pytest.fixture(scope="session")
def realclips() -> Path:
    """Folder of real test clips (../shared/data/realclips); skips the test when it is absent."""
    if not REALCLIPS_DIR.is_dir():
        pytest.skip(f"real clips not available at {REALCLIPS_DIR}")
    return REALCLIPS_DIR
