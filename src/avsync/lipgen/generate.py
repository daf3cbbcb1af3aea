"""Generate lip movements from speech and one lip (or face) image, of any length.

Long audio is generated clip after clip: 16-frame windows every 8 frames (the paper's overlap
8), the last one aligned to the end; overlapping frames are blended with triangular weights
(1 at a window's centre, small at its edges), so window borders do not jump. The result is
written as an mp4 with the speech muxed in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from avsync.errors import AvsyncError, NoFaceError, SilentAudioError
from avsync.features import is_silent, log_mel
from avsync.lipgen.model import AUDIO_ROWS, FRAMES, GEN_FPS, IMAGE_SIZE, ROWS_PER_FRAME, LipGenerator
from avsync.models.neural import standardise_logmel
from avsync.models.trained import weights_path

DEFAULT_GENERATOR: Path = weights_path("generator")
"""The shipped generator: the masked residual edit of the identity image (avsync.lipgen.residual;
trained by ``benchmarks/train_generator.py --residual``; model card generator.md)."""

PAPER_GENERATOR: Path = weights_path("generator_paper")
"""The paper-architecture generator (Chen et al. 2018; benchmarks/generation.py), shipped as the
reference row of the generation table (model card generator_paper.md); ``--checkpoint`` it."""

DUB_GENERATOR: Path = PAPER_GENERATOR
"""What ``generate --video`` (dubbing) uses by default: the paper model, whose stronger motion
put the lips closer to the new speech than the residual generator's gentle edit on the dubbing
pairs (docs/BENCHMARKS.md, "Lip generation v4"); dubbing is judged by sync, not by how close
the mouth stays to one identity frame."""

LIP_IMAGE_MAX_SIDE: int = 160
"""An image in which no face is found is taken as a lip crop when no side exceeds this."""


def window_starts(n_frames: int, frames: int = FRAMES, hop: int = FRAMES // 2) -> list[int]:
    """Starts of the windows covering ``n_frames`` frames (hop 8; the last ends at the end)."""
    if n_frames <= frames:
        return [0]
    starts = list(range(0, n_frames - frames + 1, hop))
    if starts[-1] + frames < n_frames:
        starts.append(n_frames - frames)
    return starts


def blend_weights(frames: int = FRAMES) -> np.ndarray:
    """Triangular weights of one window's frames, (frames,) float32, all > 0."""
    k = np.arange(frames, dtype=np.float32)
    return 1.0 - np.abs(k - (frames - 1) / 2) / (frames / 2)


def audio_rows(logmel_std: np.ndarray, n_frames: int) -> np.ndarray:
    """Frame-aligned rows: frame k (at k / 25 s) gets rows 4k-2 .. 4k+1 (10 ms hops centred on
    i * 10 ms); rows before the start / after the end repeat the edge. (max(n_frames, 16) * 4, n_mels)."""
    n = max(n_frames, FRAMES) * ROWS_PER_FRAME
    idx = np.clip(np.arange(n) - ROWS_PER_FRAME // 2, 0, len(logmel_std) - 1)
    return logmel_std[idx]


@torch.no_grad()
def generate_frames(
    generator: LipGenerator,
    logmel_std: np.ndarray,
    identity_rgb: np.ndarray,
    n_frames: int,
    on_window: Callable[[int, int], None] | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """(n_frames, 64, 64, 3) uint8 lip frames at 25 fps for standardised log-mel rows on the
    10 ms grid starting at t = 0 (logmel_std (N, n_mels)) and one (64, 64, 3) uint8 lip image."""
    from avsync.lipgen.windows import to_uint8, to_video_tensor

    device = next(generator.parameters()).device
    generator.eval()
    rows = audio_rows(logmel_std, n_frames)
    total = max(n_frames, FRAMES)
    starts = window_starts(total)
    ident = to_video_tensor(identity_rgb[None, None])[:, :, 0].to(device)
    acc = np.zeros((total, IMAGE_SIZE, IMAGE_SIZE, 3), np.float64)
    wsum = np.zeros(total, np.float64)
    w = blend_weights()
    for b in range(0, len(starts), batch_size):
        chunk = starts[b : b + batch_size]
        audio = (
            torch.from_numpy(
                np.stack([rows[s * ROWS_PER_FRAME : s * ROWS_PER_FRAME + AUDIO_ROWS] for s in chunk])
            )
            .float()
            .to(device)
        )
        video = to_uint8(generator(audio, ident.expand(len(chunk), -1, -1, -1)))
        for s, clip in zip(chunk, video, strict=True):
            acc[s : s + FRAMES] += w[:, None, None, None] * clip
            wsum[s : s + FRAMES] += w
        if on_window is not None:
            on_window(min(b + batch_size, len(starts)), len(starts))
    return np.clip(np.rint(acc / wsum[:, None, None, None]), 0, 255).astype(np.uint8)[:n_frames]


def checkerboard(frames: np.ndarray) -> float:
    """Mean magnitude of the 2 x 2 checkerboard pattern (the Nyquist frequency, where stride-2
    transposed convolutions leave their artefact) in (T, H, W, 3) uint8 frames, grey levels."""
    x = frames.astype(np.float32).mean(axis=-1)
    c = x[:, :-1, :-1] - x[:, 1:, :-1] - x[:, :-1, 1:] + x[:, 1:, 1:]
    return float(np.abs(c).mean() / 4)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, 64, 64, 3) uint8 -> (T, size, size, 3) uint8. Upscaling first removes the Nyquist
    frequency with a [1, 2, 1] / 4 binomial filter (the checkerboard of the transposed
    convolutions, which an upscale would magnify into a visible grid), then interpolates
    bicubically; downscaling averages pixel areas."""
    import cv2

    if size < frames.shape[1]:
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    k = np.array([0.25, 0.5, 0.25], np.float32)
    out = []
    for f in frames:
        smooth = cv2.sepFilter2D(f.astype(np.float32), -1, k, k, borderType=cv2.BORDER_REFLECT)
        big = cv2.resize(smooth, (size, size), interpolation=cv2.INTER_CUBIC)
        out.append(np.clip(np.rint(big), 0, 255).astype(np.uint8))
    return np.stack(out)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; AvsyncError when it cannot be read."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise AvsyncError(f"{p}: no such image file")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise AvsyncError(f"{p}: not a readable image (PNG, JPEG, BMP, ...)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def lip_image(path: str | Path, face_backend: str = "mediapipe") -> tuple[np.ndarray, str]:
    """(64 x 64 RGB lip crop, how it was found: "face" or "lip crop") from a face photo or a lip image.

    A face found by the landmarker gives the aligned mouth crop (the training framing); an image
    without a face is used as a lip crop when it is small (<= LIP_IMAGE_MAX_SIDE); otherwise
    NoFaceError.
    """
    import cv2

    from avsync.face.landmarks import create_landmarker
    from avsync.face.mouth import mouth_crop

    img = read_image(path)
    scale = 640 / max(img.shape[:2])
    probe = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    landmarker = create_landmarker(face_backend, max_faces=1)
    try:
        faces = landmarker.detect(np.ascontiguousarray(probe), 0.0)
    finally:
        landmarker.close()
    if faces:
        return mouth_crop(probe, faces[0].landmarks, IMAGE_SIZE, IMAGE_SIZE, grey=False), "face"
    if max(img.shape[:2]) <= LIP_IMAGE_MAX_SIDE:
        return cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA), "lip crop"
    raise NoFaceError(
        f"{path}: no face found in the image (give a face photo, or a lip crop of at most "
        f"{LIP_IMAGE_MAX_SIDE} px)"
    )


def speech_logmel(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(16 kHz mono samples, standardised log-mel rows from t = 0) of an audio (or video) file."""
    from avsync.io import load_audio

    audio = load_audio(path)
    samples = audio.samples
    if is_silent(samples):
        raise SilentAudioError(f"{path}: the audio is silent")
    return samples, standardise_logmel(log_mel(samples))


def load_generator(checkpoint: str | Path | None = None) -> LipGenerator:
    """The generator of a bundle (default: the shipped one)."""
    from avsync.lipgen.bundle import load_bundle

    path = Path(checkpoint) if checkpoint is not None else DEFAULT_GENERATOR
    if checkpoint is None and not path.is_file():
        raise AvsyncError(
            "no generator is shipped with this install; pass --checkpoint runs/gen/generator.safetensors"
        )
    nets, _ = load_bundle(path, ("generator",))
    return nets["generator"]


def generate(
    audio_path: str | Path,
    image_path: str | Path,
    out_path: str | Path,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    size: int = IMAGE_SIZE,
    on_window: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write ``out_path`` (mp4): lips of the image's identity saying the audio, at 25 fps,
    ``size`` x ``size`` pixels (resized from 64 by :func:`resize_frames`), with the audio muxed
    in. Returns a summary."""
    from avsync.io import check_output_path, write_av

    out = check_output_path(out_path, overwrite=overwrite, protect=(audio_path, image_path))
    samples, logmel = speech_logmel(audio_path)
    identity, found = lip_image(image_path)
    generator = load_generator(checkpoint)
    n_frames = max(1, int(np.floor(len(samples) / 16000 * GEN_FPS)))
    frames = generate_frames(generator, logmel, identity, n_frames, on_window)
    if size != IMAGE_SIZE:
        frames = resize_frames(frames, size)
    write_av(out, frames, GEN_FPS, samples[: int(round(n_frames / GEN_FPS * 16000))], overwrite=True)
    return {
        "path": str(out),
        "frames": n_frames,
        "fps": GEN_FPS,
        "duration_s": n_frames / GEN_FPS,
        "identity": found,
        "size": size,
    }
