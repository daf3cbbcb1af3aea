"""Known answers for large offsets: plant +-1, +-2, +-4 s (and +-0.4 s, inside the normal range: does
the wide search harm those?) on real clips and search for them.

    python benchmarks/big_offsets.py FILE [FILE ...] [--methods landmark_c3,avcorr]
        [--offsets-ms 400,1000,2000,4000]

Each clip's face analysis is done once; each planted offset is made two ways, in memory, from the
clip's decoded audio (what ``load_audio`` returns for such files):
- samples: the samples moved and trimmed/padded with silence, the length kept (what
  ``avsync fix --offset-ms`` / shift_audio write; the overlap shrinks by the offset);
- container: the whole audio with its start time moved (what ffmpeg ``-itsoffset`` writes).
For each case, the default automatic search (avsync.search): the normal +-15-frame answer, the most
confident refined wide peak (+-5 s coarse avcorr when the normal answer is unreliable, then the
method's fine search around the best peaks), the answer given, and the scoring time. "found" means
within one frame of planted + the clip's own offset (the normal search on the clip as it is:
some published clips are a few frames off themselves).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import time
from pathlib import Path

from avsync.features import audio_features, shift_samples
from avsync.inference import CONFIDENCE_THRESHOLD, analyse_video
from avsync.io import load_audio, probe
from avsync.models.registry import create_model, needs_neural
from avsync.search import synchronise_wide
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES, frames_to_ms, ms_to_frames


def cases(offsets_ms: list[int]) -> list[tuple[str, int]]:
    out = [("-", 0)]
    for d in offsets_ms:
        for sign in (1, -1):
            out += [("samples", sign * d), ("container", sign * d)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--methods", default="landmark_c3", help="comma-separated")
    ap.add_argument("--offsets-ms", default="400,1000,2000,4000")
    args = ap.parse_args()
    offsets = [int(x) for x in args.offsets_ms.split(",") if x.strip()]
    methods = [create_model(m) for m in args.methods.split(",") if m.strip()]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}\n")
    print("| method | clip | planted ms | moved by | normal: ms (conf) | best wide peak: ms (conf) | "
          "answer: ms (conf) | found? | scoring s |")
    print("|---|---|---|---|---|---|---|---|---|")
    tally = {m.name: [0, 0, 0, 0] for m in methods}  # found, total, reliable, harmed
    for f in args.files:
        fps = probe(f).fps
        analysis = analyse_video(f, keep_crops=any(needs_neural(m) for m in methods))
        track = load_audio(f)
        for method, (how, planted_ms) in itertools.product(methods, cases(offsets)):
            if how == "samples":
                samples = shift_samples(track.samples, ms_to_frames(planted_ms, fps), fps)
                audio = audio_features(samples, track.start_s)
            else:
                audio = audio_features(track.samples, track.start_s + planted_ms / 1000)
            t0 = time.perf_counter()
            _, cs, info = synchronise_wide(analysis, audio, fps, method, DEFAULT_MAX_OFFSET_FRAMES,
                                           drift=False)
            wall = time.perf_counter() - t0
            got_ms = frames_to_ms(cs.offset_frames, fps)
            normal_ms = frames_to_ms(info.normal_offset_frames, fps)
            wide = ("-" if info.wide_offset_frames is None else
                    f"{frames_to_ms(info.wide_offset_frames, fps):+.0f} ({info.wide_confidence:.1f})")
            tol = 1000 / fps + 1e-6
            if planted_ms == 0:
                base_ms, verdict = normal_ms, "(own offset)"
            else:
                ok = abs(got_ms - planted_ms - base_ms) <= tol
                t = tally[method.name]
                t[0], t[1] = t[0] + ok, t[1] + 1
                t[2] += ok and cs.confidence >= CONFIDENCE_THRESHOLD
                t[3] += not ok and abs(normal_ms - planted_ms - base_ms) <= tol
                verdict = "yes" if ok else "NO"
            print(f"| {method.name} | {f.name} | {planted_ms:+d} | {how} | "
                  f"{normal_ms:+.0f} ({info.normal_confidence:.1f}) | {wide} | "
                  f"{got_ms:+.0f} ({cs.confidence:.1f}) | {verdict} | {wall:.1f} |", flush=True)
    for name, (found, total, reliable, harmed) in tally.items():
        print(f"\n{name}: planted offsets found within one frame: {found}/{total}, of them reliable "
              f"(>= {CONFIDENCE_THRESHOLD}): {reliable}; right normal answers made wrong by the wide "
              f"search: {harmed}")


if __name__ == "__main__":
    main()
