"""Frame conversion (decoded YUV -> RGB at the analysis size): PyAV's per-frame call against one
swscale converter kept per thread (io.frames._to_rgb), same pixels, ms per frame.

    python benchmarks/convert_frames.py VIDEO [VIDEO ...] [--frames 200] [--max-side 640]

Decodes the first ``--frames`` frames of each file once, then times only the conversion,
alternating the two ways over 3 rounds (medians), and checks that the pixels are identical.
A decoded frame's ``to_ndarray(format=..., width=...)`` builds a new swscale context (PyAV keeps
one per frame object, and each decoded frame is a new object): timed here as a new
``VideoReformatter`` per call, since calling ``to_ndarray`` again on the same frames would reuse it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--max-side", type=int, default=640)
    args = ap.parse_args()
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter

    from avsync.io.frames import _to_rgb

    print("| file | size | pixel format | PyAV per-frame call ms | kept converter ms | ratio | identical |")
    print("|---|---|---|---|---|---|---|")
    for path in args.videos:
        with av.open(str(path)) as c:
            c.streams.video[0].thread_type = "AUTO"
            frames = []
            for f in c.decode(video=0):
                frames.append(f)
                if len(frames) == args.frames:
                    break
        w, h = frames[0].width, frames[0].height
        k = args.max_side / max(w, h)
        nw, nh = max(1, int(round(w * k))), max(1, int(round(h * k)))

        def per_frame(f, nw=nw, nh=nh):  # what a newly decoded frame's to_ndarray(width=...) pays
            return VideoReformatter().reformat(f, format="rgb24", width=nw, height=nh,
                                               interpolation="AREA").to_ndarray()

        def kept(f):
            return _to_rgb(f, args.max_side)

        same = all(np.array_equal(per_frame(f), kept(f)) for f in frames)
        times: dict[str, list[float]] = {"per": [], "kept": []}
        for _ in range(3):
            for name, fn in (("per", per_frame), ("kept", kept)):
                t0 = time.perf_counter()
                for f in frames:
                    fn(f)
                times[name].append((time.perf_counter() - t0) / len(frames) * 1000)
        a, b = float(np.median(times["per"])), float(np.median(times["kept"]))
        print(f"| {path.name} | {w}x{h} -> {nw}x{nh} | {frames[0].format.name} | {a:.3f} | {b:.3f} | "
              f"{a / b:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
