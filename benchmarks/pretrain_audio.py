"""Pre-train the landmark model's audio tower on speech without video (issue 11, audio lever).

    python benchmarks/pretrain_audio.py --out /work/cache/audiopre/tower.safetensors
        [--clips ../shared/data/realclips] [--steps 1500] [--seed 0]

Speech: the realclips ``audio-only`` rows, except those that are the audio of a video clip
(their notes say "paired with", "identical to the audio track" or "audio of the"; those
speakers are in the video folds), and the LibriVox / CMU recordings of Debian's
``pocketsphinx-testdata``. Labels: pocketsphinx all-phone recognition, cached next to --out.
Writes the tower's conv blocks (``avsync.train.audio_pretrain.save_tower``) and
``<out>.json`` (the sources, seconds, held-out phone accuracy before/after, the majority rate).
Use it with ``benchmarks/cv.py --variant audiopre --audio-init <out>``.

``--split FILE`` adds the ``train`` rows of a split file (``src/avsync/data/realclips_split.jsonl``:
the speech of the video clips the shipped model trains on). ``--also LIST`` adds the media files
listed in LIST (one path per line; e.g. the training folds' video clips, whose audio is then
labelled the same way; ``benchmarks/cv.py --phase audio-lists`` writes one list per fold).
``--espeak-minutes M`` adds M minutes of espeak-ng speech (English voices, random speed and
pitch) reading the licence texts of /usr/share/common-licenses, labelled the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
PAIRED_NOTES = ("paired with", "identical to the audio track", "audio of the")
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd")
VARIANTS = ("", "+m1", "+m3", "+m5", "+f1", "+f2", "+f4")


def sources(clips: Path) -> list[Path]:
    """Audio-only realclips rows that are not some video clip's own audio, then Debian's testdata."""
    out = []
    with open(clips / "MANIFEST.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            note = row.get("speaker_note", "").lower()
            if row["kind"] == "audio-only" and not any(
                    p in note and "not the audio of" not in note for p in PAIRED_NOTES):
                out.append(clips / row["path"])
    out += sorted(TESTDATA.rglob("*.wav")) if TESTDATA.is_dir() else []
    return out


def espeak_files(dest: Path, minutes: float, seed: int) -> list[Path]:
    """espeak-ng readings of licence texts, about 10 s each, until ``minutes`` of speech."""
    import random
    import re
    import subprocess
    import wave

    rng = random.Random(seed)
    text = " ".join(p.read_text(errors="ignore") for p in sorted(Path("/usr/share/common-licenses").glob("*"))
                    if p.is_file())
    sentences = [s.strip() for s in re.split(r"(?<=[.;:])\s+", re.sub(r"\s+", " ", text))
                 if 20 <= len(s.strip()) <= 400 and re.search("[a-z]", s)]
    rng.shuffle(sentences)
    dest.mkdir(parents=True, exist_ok=True)
    out, total_s, i = [], 0.0, 0
    while total_s < 60 * minutes and i < len(sentences):
        chunk = ""
        while i < len(sentences) and len(chunk) < 150:
            chunk, i = f"{chunk} {sentences[i]}", i + 1
        wav = dest / f"espeak_{len(out):04d}.wav"
        if not wav.is_file():
            voice = rng.choice(VOICES) + rng.choice(VARIANTS)
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rng.randint(140, 200)), "-p",
                            str(rng.randint(30, 70)), "-w", str(wav), chunk], check=True)
        with wave.open(str(wav)) as w:
            total_s += w.getnframes() / w.getframerate()
        out.append(wav)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared/data/realclips")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--espeak-minutes", type=float, default=0.0)
    ap.add_argument("--also", type=Path, default=None, help="a file listing more media paths")
    ap.add_argument("--split", type=Path, default=None, help="add the train rows of this split file")
    ap.add_argument("--labels-cache", type=Path, default=None,
                    help="pickle of labelled files shared between runs (default: next to --out)")
    args = ap.parse_args(argv)
    import torch

    from avsync.io import load_audio
    from avsync.train import build_model
    from avsync.train.audio_pretrain import PretrainConfig, labelled_audio, pretrain_audio_tower, save_tower

    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    paths = sources(args.clips)
    if args.espeak_minutes > 0:
        paths += espeak_files(args.out.parent / "espeak", args.espeak_minutes, args.seed)
    if args.split is not None:
        rows = [json.loads(x) for x in args.split.read_text().splitlines() if x.strip()]
        paths += sorted({args.clips / r["path"] for r in rows if r["split"] == "train"})
    if args.also is not None:
        paths += [Path(x) for x in args.also.read_text().split("\n") if x.strip()]
    cache = args.labels_cache or args.out.parent / "labelled.pkl"
    known = {f.name: f for f in pickle.loads(cache.read_bytes())} if cache.is_file() else {}
    t0 = time.perf_counter()
    files = [known.get(str(p)) or labelled_audio(str(p), load_audio(p).samples) for p in paths]
    if len(known) < len(files) or any(str(p) not in known for p in paths):
        cache.write_bytes(pickle.dumps(list({**known, **{f.name: f for f in files}}.values())))
        print(f"labelled {len(files)} files in {time.perf_counter() - t0:.0f} s", flush=True)
    tower = build_model("landmark", "small").audio
    t0 = time.perf_counter()
    summary = pretrain_audio_tower(tower, files, PretrainConfig(steps=args.steps, seed=args.seed))
    summary |= {"seconds": round(time.perf_counter() - t0, 1), "model": "landmark small",
                "espeak_minutes": args.espeak_minutes, "also": str(args.also) if args.also else None,
                "split": str(args.split) if args.split else None,
                "sources": [str(Path(f.name).relative_to(args.clips.parent)) if args.clips.parent in
                            Path(f.name).parents else f.name for f in files]}
    save_tower(args.out, tower, {k: v for k, v in summary.items() if k != "sources"})
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "sources"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
