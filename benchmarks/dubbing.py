"""Dubbing benchmark: does ``avsync generate --video V --audio A`` put V's lips in sync with A?

    python benchmarks/dubbing.py --clips ../shared/data/realclips --out runs/dub \
        VIDEO=AUDIO [VIDEO=AUDIO ...]   (paths relative to --clips)

For every pair: the dubbed video, and the original video re-encoded the same way with the new
audio muxed in (the baseline a dub must beat), both scored by ``avsync metrics`` (our SyncNet:
LSE-D lower is better, LSE-C higher is better, best offset in frames); also the original with its
own audio, for scale. Prints a markdown table (and writes OUT/dubbing.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from avsync.io import iter_video_frames, load_audio, probe
from avsync.io.stream_writer import write_stream
from avsync.lipgen.dub import dub
from avsync.lipgen.video_metrics import video_metrics


def with_new_audio(video: Path, audio: Path, out: Path, duration_s: float) -> Path:
    """``video``'s frames (re-encoded) before ``duration_s`` with ``audio``'s first ``duration_s``."""
    info = probe(video)
    frames = (f.image for f in iter_video_frames(video, max_side=None) if f.time_s < duration_s - 1e-6)
    samples = load_audio(audio).samples[: int(round(duration_s * 16000))]
    write_stream(out, frames, info.fps, (info.width, info.height), samples)
    return out


def row(name: str, m: dict) -> str:
    return (f"| {name} | {m['lse_d']:.3f} | {m['lse_c']:.3f} | {m['sync_offset_frames']:+d} | "
            f"{m['cpbd']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--out", type=Path, default=Path("runs/dub"))
    ap.add_argument("pairs", nargs="+", metavar="VIDEO=AUDIO")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["| video (new audio) | LSE-D | LSE-C | offset (frames) | CPBD |", "|---|---|---|---|---|"]
    results = []
    for k, pair in enumerate(args.pairs):
        v_rel, _, a_rel = pair.partition("=")
        video, audio = args.clips / v_rel, args.clips / a_rel
        t0 = time.perf_counter()
        summary = dub(video, audio, args.out / f"dub{k}.mp4", overwrite=True)
        dub_s = time.perf_counter() - t0
        base = with_new_audio(video, audio, args.out / f"orig{k}.mp4", float(summary["duration_s"]))
        m = {name: video_metrics(p) for name, p in
             (("dubbed", args.out / f"dub{k}.mp4"), ("original + new audio", base), ("original", video))}
        results.append({"video": v_rel, "audio": a_rel, "dub_s": dub_s, "summary": summary, "metrics": m})
        lines += [
            f"| **{v_rel}** (audio of {a_rel}), {summary['frames']} frames, dubbed in {dub_s:.0f} s "
            "| | | | |",
            row("dubbed by `avsync generate --video`", m["dubbed"]),
            row("original video + the new audio", m["original + new audio"]),
            row("original video + its own audio (for scale)", m["original"]),
        ]
    (args.out / "dubbing.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
