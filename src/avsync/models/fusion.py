"""Late fusion of sync methods: standardised score curves summed.

Each member scores the same candidate shifts; each member's curve is standardised over the
shifts (zero mean, unit standard deviation, so that a correlation in [-1, 1] and a minus
embedding distance weigh the same), weighted and summed. A member whose curve is flat or
missing (NaN everywhere, e.g. no audio at those shifts) contributes nothing; NaN shifts stay
NaN. The fused curve goes through the same peak picking, null rolls and confidence as any
method's, so its confidence keeps its meaning (peak against the circular-shift null).

Motivation (docs/BENCHMARKS.md): the training-free ``avcorr`` reads mouth-opening signals
against 1-3 kHz energy, the trained ``landmark`` model reads lip shape sequences against the
log-mel; their errors are not the same, and before issue 3 fusing them helped short windows
most.

Registered fusions: ``fused`` (avcorr + landmark), ``fused_c3`` (+ c3), ``landmark_c3``
(landmark + c3, the default from 2026-12-01 to 2026-12-02) and ``stacked`` (avcorr + landmark +
c3 with weights learned on out-of-fold curves of the speaker cross-validation, stored in
``weights/stacked.json``; the registry's default since 2026-12-02: docs/BENCHMARKS.md "Speaker
cross-validation"). C3 needs 11 frames, so shorter inputs are scored by the other members alone.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avsync.errors import AvsyncError
from avsync.models.registry import SyncInput, create_model, register_model


def standardise(curve: np.ndarray) -> np.ndarray:
    """(K,) scores -> (K,) zero-mean unit-std over the finite entries (all zeros when flat)."""
    curve = np.asarray(curve, np.float64)
    ok = np.isfinite(curve)
    out = np.full(curve.shape, np.nan)
    if ok.sum() < 2:
        out[ok] = 0.0
        return out
    sd = curve[ok].std()
    out[ok] = (curve[ok] - curve[ok].mean()) / sd if sd > 1e-12 else 0.0
    return out


@dataclass(frozen=True)
class FusionConfig:
    """members: registry names (or checkpoint paths) fused; weights: one per member."""

    members: tuple[str, ...] = ("avcorr", "landmark")
    weights: tuple[float, ...] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.members) < 2 or len(self.members) != len(self.weights):
            raise ValueError("a fusion needs at least 2 members and one weight per member")


@dataclass
class FusedMethod:
    """Several methods' standardised curves, weighted and summed (see the module docstring)."""

    config: FusionConfig = field(default_factory=FusionConfig)
    name: str = "fused"
    _members: list[Any] = field(default_factory=list, init=False, repr=False)
    _pool: Any = field(default=None, init=False, repr=False)
    _seconds: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._members = [create_model(m) for m in self.config.members]
        self._seconds = [0.0] * len(self._members)

    @property
    def needs_neural(self) -> bool:
        return any(getattr(m, "needs_neural", False) for m in self._members)

    @property
    def members(self) -> list[Any]:
        """The member methods, in ``config.members`` order."""
        return list(self._members)

    @property
    def min_frames(self) -> int:
        """Shortest input any member can score (the others then contribute nothing)."""
        return min(getattr(m, "min_frames", 1) for m in self._members)

    def thread_copy(self) -> FusedMethod | None:
        """The same fusion over thread copies of its members (None if a member has none)."""
        from avsync.models.threads import thread_copy

        members = [thread_copy(m) for m in self._members]
        if any(m is None for m in members):
            return None
        clone = copy.copy(self)
        clone._members, clone._pool, clone._seconds = members, None, [0.0] * len(members)
        return clone

    @contextmanager
    def members_in_parallel(self, n_threads: int) -> Iterator[None]:
        """Inside the block, ``score`` runs the members on up to ``n_threads`` threads at once,
        the one that has taken longest so far first. The same answers: each member scores with
        its own objects and caches, as in turn; only the order in time changes. For one track
        scored alone (``inference.synchronise``), where the other cores would wait."""
        from concurrent.futures import ThreadPoolExecutor

        n = min(n_threads, len(self._members))
        if n < 2 or self._pool is not None:
            yield
            return
        with ThreadPoolExecutor(n, thread_name_prefix="avsync-members") as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def _longest_first(self) -> list[int]:
        """Member indices, the one that has taken longest so far first; before any has run, the
        pair models first (one forward per window AND shift: the most work), then other neural
        methods, then the rest: with fewer threads than members the longest starts at once."""
        def prior(m: Any) -> int:
            return 2 if getattr(m, "output", None) == "pair" else int(bool(getattr(m, "needs_neural", False)))

        return sorted(range(len(self._members)),
                      key=lambda i: (-self._seconds[i], -prior(self._members[i])))

    def _member_score(self, i: int, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self._members[i].score(inp, shifts_frames)
        self._seconds[i] += time.perf_counter() - t0
        return out

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        idx = range(len(self._members))
        if self._pool is None:
            curves = [self._member_score(i, inp, shifts_frames) for i in idx]
        else:
            running = {i: self._pool.submit(self._member_score, i, inp, shifts_frames)
                       for i in self._longest_first()}
            curves = [running[i].result() for i in idx]
        return fuse_curves(curves, self.config.weights)

    def _member_requests(self, i: int, requests: list, shifts_frames: np.ndarray) -> list[np.ndarray]:
        from avsync.segments import score_requests

        t0 = time.perf_counter()
        out = score_requests(self._members[i], requests, shifts_frames)
        self._seconds[i] += time.perf_counter() - t0
        return out

    def score_requests(self, requests: list, shifts_frames: np.ndarray) -> list[np.ndarray]:
        """segments.score_requests: each member answers the whole list, then each curve is
        fused. In ``members_in_parallel`` the members run on the pool's threads without waiting
        for each other between requests (the one expected to take longest first), and that
        member, when it has a ``warm_copy`` (the trained models), hands the requests after the
        first (a segment's drift windows) to a copy of itself on another thread once it has
        scored the first input (a segment's own curve: the lip flow and tower features the
        others reuse), and goes on with that input's null rolls. The same curves as in turn up to
        float rounding (the copy's new tower features may come from batches of other sizes)."""
        idx = range(len(self._members))
        if self._pool is None:
            tables = [self._member_requests(i, requests, shifts_frames) for i in idx]
        else:
            order = self._longest_first()
            running = {i: self._pool.submit(self._member_requests_shared if k == 0 else self._member_requests,
                                            i, requests, shifts_frames) for k, i in enumerate(order)}
            tables = [running[i].result() for i in idx]
        return [np.array([fuse_curves([t[r][j] for t in tables], self.config.weights)
                          for j in range(len(tables[0][r]))]) for r in range(len(requests))]

    def _member_requests_shared(self, i: int, requests: list, shifts_frames: np.ndarray) -> list[np.ndarray]:
        """``_member_requests`` with requests[1:] on a warm copy of member i (score_requests)."""
        from avsync.segments import null_scores, score_requests

        member = self._members[i]
        if not hasattr(member, "warm_copy") or len(requests) < 2 or self._pool is None:
            return self._member_requests(i, requests, shifts_frames)
        t0 = time.perf_counter()
        first = requests[0]
        base = np.asarray(member.score(first.inp, shifts_frames), np.float64)  # fills the caches
        rest = self._pool.submit(score_requests, member.warm_copy(), requests[1:], shifts_frames)
        out = [np.vstack([base[None], null_scores(member, first, shifts_frames)]), *rest.result()]
        self._seconds[i] += time.perf_counter() - t0
        return out


def fuse_curves(curves: list[np.ndarray], weights: tuple[float, ...] | list[float]) -> np.ndarray:
    """Members' (K,) curves -> the (K,) fused curve: the weighted sum of the standardised curves
    of the members that have any finite score (all NaN when none has)."""
    k = len(curves[0])
    total, used = np.zeros(k), 0
    for c, w in zip(curves, weights, strict=True):
        z = standardise(c)
        if np.isfinite(z).any():
            total, used = total + w * z, used + 1
    return total if used else np.full(k, np.nan)


register_model("fused", "fusion",
               "avcorr + landmark: both methods' standardised shift curves summed")(FusedMethod)


@register_model("fused_c3", "fusion", "avcorr + landmark + c3: three standardised shift curves summed")
def _fused_c3() -> FusedMethod:
    return FusedMethod(FusionConfig(("avcorr", "landmark", "c3"), (1.0, 1.0, 1.0)), name="fused_c3")


@register_model("landmark_c3", "fusion", "landmark + c3: two trained methods' standardised curves summed")
def _landmark_c3() -> FusedMethod:
    return FusedMethod(FusionConfig(("landmark", "c3"), (1.0, 1.0)), name="landmark_c3")


def fusion_from_file(path: str | Path, name: str | None = None) -> FusedMethod:
    """A fusion whose members and weights are stored in a JSON file (weights fitted elsewhere,
    e.g. by ``benchmarks/cv.py`` on out-of-fold curves, never constants in the code):
    ``{"members": [names], "weights": [floats], ...provenance}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        cfg = FusionConfig(tuple(str(m) for m in data["members"]), tuple(float(w) for w in data["weights"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AvsyncError(f"{p}: not a fusion weights file ({type(exc).__name__}: {exc})") from exc
    return FusedMethod(cfg, name=name or p.stem)


def stacked_weights_path() -> Path:
    """Where the shipped ``stacked`` fusion weights live (``benchmarks/cv.py --write-fusion``)."""
    from importlib import resources

    return Path(str(resources.files("avsync") / "weights" / "stacked.json"))


@register_model("stacked", "fusion", "avcorr + landmark + c3, weights learned by speaker cross-validation "
                "(weights/stacked.json)")
def _stacked() -> FusedMethod:
    return fusion_from_file(stacked_weights_path(), name="stacked")
