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


EXAMPLE_CLIP = Path(__file__).resolve().parents[1] / "examples" / "grid_bbaf2n.mp4"
GRID_FALLBACK = "LipNet/evaluation/samples/GRID/bbaf2n.mpg"


@pytest.fixture(scope="session")
def example_clip() -> Path:
    """The shipped in-sync example (GRID bbaf2n, 25 fps, 3 s).

    Falls back to the same GRID clip among the real clips; skips when neither exists.
    """
    if EXAMPLE_CLIP.is_file() and EXAMPLE_CLIP.stat().st_size > 0:
        return EXAMPLE_CLIP
    fallback = REALCLIPS_DIR / GRID_FALLBACK
    if fallback.is_file():
        return fallback
    pytest.skip(f"example clip not available ({EXAMPLE_CLIP} nor {fallback})")


@pytest.fixture(scope="session")
def example_frames(example_clip: Path):
    """(T, H, W, 3) uint8 RGB frames of the example clip, decoded once."""
    import numpy as np

    from avsync.io import iter_video_frames

    return np.stack([f.image for f in iter_video_frames(example_clip, max_side=None)])


@pytest.fixture(scope="session")
def realclip(realclips: Path):
    """``realclip(relpath)``: a clip of the real-data folder; skips when that file is missing."""

    def get(relpath: str) -> Path:
        p = realclips / relpath
        if not p.is_file():
            pytest.skip(f"real clip {relpath} not available")
        return p

    return get


@pytest.fixture
def one_thread():
    """One intra-op torch thread for small ops on a shared 2-core machine (as fast, never spins);
    the previous count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def same_result(got, ref, abs_tol: float = 2e-3) -> bool:
    """Two result objects (JSON-like) equal up to ``abs_tol`` on floats: the same file scored in
    another process with another thread count sums floats in another order, which moves curve
    scores and confidences in their last printed decimals; offsets and flags must be identical."""
    if isinstance(got, dict) and isinstance(ref, dict):
        return got.keys() == ref.keys() and all(same_result(got[k], ref[k], abs_tol) for k in got)
    if isinstance(got, list | tuple) and isinstance(ref, list | tuple):
        return len(got) == len(ref) and all(same_result(a, b, abs_tol) for a, b in zip(got, ref, strict=True))
    if isinstance(got, float) and isinstance(ref, float):
        return abs(got - ref) <= abs_tol
    return got == ref
