"""`detect --fast` against the default on every real clip, paired, with speaker intervals.

    python benchmarks/fast_paired.py [--clips ../shared/data/realclips] [--method stacked]
        [--cache cache/eval] [--fast-cache cache/eval-fast] [--shifts -12,-6,0,6,12]

Each real clip is analysed twice (the default face analysis and ``fast=True``: landmarks on
every other frame, interpolated between); its longest face track is the clip's track, and the
units are the whole clip plus 1.5 / 3 / 6 s excerpts from its middle (benchmarks/cv_curves.py
``units``: frames and the audio under them, as if the file were that short). Every unit's audio
is shifted by each known shift (the shifted-case protocol) and searched +-15 frames with the
method's null (4 rolls, no drift), exactly as ``detect`` scores a track.

Measures, by duration bucket (< 2, 2-4, 4-8, >= 8 s): shift consistency (|pred(k) - pred(0) - k|
<= 1, the cross-validation's headline measure, which does not depend on the published clips' own
offsets) and the share of own-audio units called reliable (confidence >= 3); for each, the
paired difference fast - default with a 95 % bootstrap interval over speaker groups.

Caveat: the shipped models were trained on most of these clips (75 of the realclips split's
speakers), so both variants are scored in-sample; ``--split val`` keeps the 14 held-out clips
(too few for tight intervals). What is measured is the change the front end makes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv_curves import GRID, TrackData, units  # noqa: E402

from avsync.data.splits import speaker_group  # noqa: E402
from avsync.evaluation.cache import cache_key, cached_analysis, load_analysis, save_analysis  # noqa: E402
from avsync.evaluation.clips import load_clips  # noqa: E402
from avsync.evaluation.crossval import cluster_bootstrap, duration_bucket  # noqa: E402
from avsync.features import audio_features, shift_samples  # noqa: E402
from avsync.inference import CONFIDENCE_THRESHOLD, MIN_TRACK_FRAMES, analyse_video  # noqa: E402
from avsync.io import probe  # noqa: E402
from avsync.models.registry import create_model  # noqa: E402
from avsync.segments import evidence_of  # noqa: E402

BUCKETS = ("<2", "2-4", "4-8", ">=8")


def fast_analysis(path: Path, cache: Path):
    cfile = cache / f"{path.stem[:40]}-{cache_key(path, True)}-fast.npz"
    if not cfile.is_file():
        a = analyse_video(path, keep_crops=True, fast=True)
        cache.mkdir(parents=True, exist_ok=True)
        save_analysis(a, a.rate_fps or probe(path).fps, cfile)
    return load_analysis(cfile)


def main_track(analysis, clip) -> TrackData | None:
    tracks = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES and t.mouth]
    if not tracks:
        return None
    t = max(tracks, key=lambda t: t.n_frames)
    from avsync.face.landmarks import BLENDSHAPE_NAMES
    from avsync.face.mouth import SIGNAL_NAMES
    from avsync.face.rows import rows_array

    b0 = SIGNAL_NAMES.index(BLENDSHAPE_NAMES[0])
    sig = t.signal_matrix()
    return TrackData(clip.path.name, clip.path, clip.speaker, float(analysis.fps),
                     np.asarray(t.time_s, np.float64), sig.astype(np.float32), rows_array(t.mouth),
                     rows_array(t.lips).astype(np.float32),
                     sig[:, b0: b0 + len(BLENDSHAPE_NAMES)].astype(np.float32), np.asarray(t.valid, bool))


def readings(track: TrackData, model, shifts: list[int]) -> list[tuple[str, str, dict]]:
    """(unit label, bucket, {shift: (offset frames, confidence)}) per unit of the track."""
    out = []
    for u in units(track):
        res = {}
        for k in shifts:
            feats = audio_features(shift_samples(u.samples, k, u.track.fps), u.start_s)
            cs = evidence_of(model, u.track.sync_input(feats), GRID, 4, False).curve_score(GRID)
            res[k] = (float(cs.offset_frames), float(cs.confidence))
        out.append((u.label, duration_bucket(u.duration_s), res))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--method", default="stacked")
    ap.add_argument("--cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--fast-cache", type=Path, default=Path("cache/eval-fast"))
    ap.add_argument("--shifts", default="-12,-6,0,6,12")
    ap.add_argument("--split", default="all", choices=["all", "val"])
    args = ap.parse_args()
    shifts = [int(x) for x in args.shifts.split(",")]
    assert 0 in shifts
    model = create_model(args.method)
    clips = load_clips(args.clips)
    if args.split == "val":
        from avsync.data.splits import REALCLIPS_SPLIT, read_split

        val = {v.path.resolve() for v in read_split(REALCLIPS_SPLIT, root=args.clips)[1]}
        clips = [c for c in clips if c.path.resolve() in val]
    cons = {v: {b: [] for b in BUCKETS} for v in ("default", "fast")}  # (value, group, unit id)
    rel = {v: {b: [] for b in BUCKETS} for v in ("default", "fast")}
    for n, c in enumerate(clips):
        g = speaker_group(c.speaker)
        try:
            tracks = {"default": main_track(cached_analysis(c.path, args.cache, keep_crops=True), c),
                      "fast": main_track(fast_analysis(c.path, args.fast_cache), c)}
        except Exception as exc:  # noqa: BLE001  (said and skipped)
            print(f"skip {c.path}: {exc}", file=sys.stderr)
            continue
        if any(t is None for t in tracks.values()):
            print(f"skip {c.path}: no usable track in one variant", file=sys.stderr)
            continue
        for v, tr in tracks.items():
            for label, b, res in readings(tr, model, shifts):
                p0 = int(round(res[0][0]))
                ok = [abs(int(round(res[k][0])) - p0 - k) <= 1 for k in shifts if k]
                cons[v][b].append((float(np.mean(ok)), g, f"{c.path}#{label}"))
                rel[v][b].append((float(res[0][1] >= CONFIDENCE_THRESHOLD), g, f"{c.path}#{label}"))
        print(f"{n + 1}/{len(clips)} {c.path.name}", file=sys.stderr, flush=True)
    print(f"Method `{args.method}`, {len(clips)} real clips ({args.split}), shifts {shifts}, "
          f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.date.today()}.\n")
    print("| measure | bucket | units | default % | fast % | "
          "fast - default, points [95 % CI over speaker groups] |")
    print("|---|---|---|---|---|---|")
    for name, table in (("shift consistency", cons), ("reliable, own audio", rel)):
        for b in BUCKETS:
            d = {u: (x, g) for x, g, u in table["default"][b]}
            f = {u: (x, g) for x, g, u in table["fast"][b]}
            both = sorted(set(d) & set(f))
            if not both:
                continue
            diff = [100 * (f[u][0] - d[u][0]) for u in both]
            est, lo, hi = cluster_bootstrap(diff, [d[u][1] for u in both])
            print(f"| {name} | {b} s | {len(both)} | {100 * np.mean([d[u][0] for u in both]):.1f} | "
                  f"{100 * np.mean([f[u][0] for u in both]):.1f} | {est:+.1f} [{lo:+.1f}, {hi:+.1f}] |")


if __name__ == "__main__":
    main()
