"""Lip movement generator of "Lip Movements Generation at a Glance" (Chen et al., ECCV 2018).

Speech (0.64 s of log-mel) + one RGB lip image of the target identity -> 16 RGB lip frames:

* audio encoder: (B, 64, n_mels) log-mel, 4 rows (10 ms hops) per 25 fps frame -> 2D convs that
  reduce frequency and keep ``latent_frames`` time steps -> (B, Ca, Tl);
* identity encoder: (B, 3, 64, 64) -> 2D convs (stride 2) -> (B, Ci, 8, 8);
* fusion by duplication and channel concatenation (the paper's Fig. 3): the audio feature of
  each time step is copied over the 8 x 8 grid, the image feature is copied Tl times, both are
  concatenated along channels -> (B, Ca + Ci, Tl, 8, 8);
* decoder: 3D residual blocks, then 3D transposed convolutions to (B, 3, 16, 64, 64), tanh
  (``upsample="resize"``: nearest-neighbour upsampling + convolution instead, no checkerboard).

Deviations (see docs/BENCHMARKS.md): 40 mel bands at 16 kHz with 10 ms hops instead of 128 bands
at 41.1 kHz (the project's audio front end; 4 audio steps per frame are kept); the temporal
upsampling is one stride-2 transposed conv (Tl = 8 -> 16) and the later ones upsample space only,
sized for CPU training; ``skip=True`` adds the identity encoder's 16 x 16 feature map (copied
over time) to the decoder, a U-Net skip as in Chung et al. ("You said that?") that keeps the
identity's texture when training data are few; ``residual=True`` makes the decoder's last
layer an edit of the identity image, ``tanh(atanh(identity) + decoder)``, zero at
initialisation, so an untrained generator repeats the identity image and training only has to
learn the motion (with the plain decoder, our first run on 6 minutes of video drew mouths that
moved with the speech but lost the identity's colours: SSIM 0.52 vs 0.64 for the repeated image).

Pure tensor code: no I/O, no device choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avsync.models.syncnet import PresetMixin

FRAMES: int = 16
"""Frames generated at once (0.64 s at 25 fps)."""

GEN_FPS: float = 25.0
"""Frame rate of the generated clips (the paper's)."""

ROWS_PER_FRAME: int = 4
AUDIO_ROWS: int = FRAMES * ROWS_PER_FRAME
IMAGE_SIZE: int = 64


@dataclass(frozen=True)
class GeneratorConfig(PresetMixin):
    """audio_channels / id_channels: conv widths of the two encoders (3 stride-2 stages for the
    image: 64 -> 8); latent: width of the fused 3D feature; n_res: 3D residual blocks;
    dec_channels: widths after each of the three transposed convs; latent_frames: time steps
    of the fused feature (FRAMES / 2); skip: identity skip at 16 x 16; residual: the decoder
    edits the identity image instead of drawing each frame from scratch (see module doc);
    upsample: "transpose" (the paper's transposed convolutions) or "resize" (nearest-neighbour
    upsampling then a 3 x 3 convolution: no checkerboard artefacts, Odena et al. 2016);
    mask_sigma_px: (x, y) radii in crop pixels of a fixed soft mask around the crop centre (the
    mouth, see :func:`mouth_mask`) that multiplies the residual edit, so that with
    ``residual=True`` everything outside the mouth region stays the identity image exactly;
    (0, 0) = no mask; half_res: the decoder stops at 32 x 32 and its edit is upsampled
    bilinearly to 64 x 64 (about 3x cheaper to train; a smooth edit of a sharp identity image);
    edit_scale: factor on the residual edit (a shrinkage towards the identity image chosen after
    training, :func:`avsync.lipgen.residual.tune_edit_scale`); mouth_blur_px: Gaussian blur
    (sigma, crop pixels) of the output inside the mouth mask (the expected frame under the crop's
    sub-pixel jitter is smoother than any one frame; chosen with edit_scale; 0 = none)."""

    audio_channels: tuple[int, ...] = (32, 64, 96)
    id_channels: tuple[int, int, int] = (32, 64, 96)
    latent: int = 64
    n_res: int = 2
    dec_channels: tuple[int, int, int] = (48, 32, 16)
    latent_frames: int = 8
    n_mels: int = 40
    frames: int = FRAMES
    audio_rows: int = AUDIO_ROWS
    image_size: int = IMAGE_SIZE
    skip: bool = True
    residual: bool = False  # False in checkpoints written before the field existed
    upsample: str = "transpose"  # "transpose" in checkpoints written before the field existed
    mask_sigma_px: tuple[float, float] = (0.0, 0.0)  # (0, 0): no mask (checkpoints before the field)
    half_res: bool = False  # False in checkpoints written before the field existed
    edit_scale: float = 1.0  # 1.0 in checkpoints written before the field existed
    mouth_blur_px: float = 0.0  # 0.0 in checkpoints written before the field existed

    @classmethod
    def debug(cls) -> GeneratorConfig:
        return cls(
            audio_channels=(8, 8, 16), id_channels=(8, 8, 16), latent=16, n_res=1, dec_channels=(8, 8, 8),
            residual=True,
        )

    @classmethod
    def small(cls) -> GeneratorConfig:
        return cls(residual=True)


def mouth_mask(size: int, sigma_px: tuple[float, float]) -> torch.Tensor:
    """(size, size) float32 soft mask, 1 at the crop centre (the outer-lip centroid of the
    landmark-aligned crop) falling to 0: exp(-0.5 r^4) with r^2 = (dx/sx)^2 + (dy/sy)^2, a
    flat-topped ellipse (0.61 at r = 1, 0.04 at r = 1.6). All ones when a sigma is 0."""
    sx, sy = sigma_px
    if sx <= 0 or sy <= 0:
        return torch.ones(size, size)
    c = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    r2 = (c[None, :] / sx) ** 2 + (c[:, None] / sy) ** 2
    return torch.exp(-0.5 * r2**2)


def conv2d(c_in: int, c_out: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    """Conv 3x3 + BatchNorm + ReLU (the paper's "Conv")."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


def conv3d(c_in: int, c_out: int, stride: int | tuple[int, int, int] = 1) -> nn.Sequential:
    """Conv 3x3x3 + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)
    )


class ResBlock3d(nn.Module):
    """x + BN(conv(ReLU(BN(conv(x))))), then ReLU; channels and size kept."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3d(channels, channels),
            nn.Conv3d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm3d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class AudioEncoder(nn.Module):
    """(B, rows, n_mels) log-mel -> (B, C, steps): frequency halved by every conv, time by the
    2nd and 3rd, then pooled to ``steps`` time steps and averaged over frequency."""

    def __init__(self, channels: tuple[int, ...], steps: int) -> None:
        super().__init__()
        layers, c_in = [], 1
        for i, c in enumerate(channels):
            layers.append(conv2d(c_in, c, (2 if i in (1, 2) else 1, 2)))
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.steps = steps
        self.out_channels = c_in

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.convs(audio.unsqueeze(1))  # (B, C, rows', mels')
        return nn.functional.adaptive_avg_pool2d(x, (self.steps, 1)).squeeze(-1)


class IdentityEncoder(nn.Module):
    """(B, 3, 64, 64) in [-1, 1] -> (B, C3, 8, 8), and the (B, C2, 16, 16) map for the skip."""

    def __init__(self, channels: tuple[int, int, int]) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.s1 = nn.Sequential(conv2d(3, c1, 2), conv2d(c1, c1))  # 32 x 32
        self.s2 = conv2d(c1, c2, 2)  # 16 x 16
        self.s3 = conv2d(c2, c3, 2)  # 8 x 8

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f16 = self.s2(self.s1(image))
        return self.s3(f16), f16


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """3D transposed conv, kernel 4 and stride 2 in time and space, + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose3d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)
    )


class SpatialUp(nn.Module):
    """3D transposed conv with kernel (1, 4, 4) and stride (1, 2, 2) + BN + ReLU: (B, C, T, H, W)
    -> (B, C', T, 2H, 2W). Computed frame by frame as a 2D transposed conv (the same operator;
    PyTorch's CPU ConvTranspose3d is several times slower)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)
        self.norm = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.conv(x.transpose(1, 2).reshape(b * t, c, h, w))
        y = y.reshape(b, t, -1, 2 * h, 2 * w).transpose(1, 2)
        return torch.relu(self.norm(y))


class ResizeUp(nn.Module):
    """Resize-convolution: nearest-neighbour x2 upsampling (time too when ``time``) then a 3 x 3
    convolution + BN + ReLU, (B, C, T, H, W) -> (B, C', T', 2H, 2W). Every output pixel sees the
    same number of input pixels, so there is no checkerboard (Odena et al., Distill 2016)."""

    def __init__(self, c_in: int, c_out: int, time: bool = False) -> None:
        super().__init__()
        self.scale = (2.0, 2.0, 2.0) if time else (1.0, 2.0, 2.0)
        self.conv = nn.Conv3d(c_in, c_out, (3, 3, 3) if time else (1, 3, 3), 1,
                              (1, 1, 1) if time else (0, 1, 1), bias=False)
        self.norm = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return torch.relu(self.norm(self.conv(x)))


class LipGenerator(nn.Module):
    """audio (B, 64, n_mels) clip-standardised log-mel + identity (B, 3, 64, 64) in [-1, 1]
    -> video (B, 3, 16, 64, 64) in [-1, 1] (channels, time, height, width)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.frames != 2 * c.latent_frames or c.image_size != 64:
            raise ValueError("the decoder makes 2 * latent_frames frames of 64 x 64")
        if c.upsample not in ("transpose", "resize"):
            raise ValueError(f"upsample must be 'transpose' or 'resize', got {c.upsample!r}")
        self.audio = AudioEncoder(c.audio_channels, c.latent_frames)
        self.identity = IdentityEncoder(c.id_channels)
        self.fuse = nn.Sequential(
            nn.Conv3d(self.audio.out_channels + c.id_channels[2], c.latent, 1, bias=False),
            nn.BatchNorm3d(c.latent),
            nn.ReLU(inplace=True),
        )
        self.res = nn.Sequential(*[ResBlock3d(c.latent) for _ in range(c.n_res)])
        d1, d2, d3 = c.dec_channels
        resize = c.upsample == "resize"
        self.up1 = ResizeUp(c.latent, d1, time=True) if resize else _up(c.latent, d1)  # (16, 16, 16)
        self.skip = nn.Conv3d(c.id_channels[1], d1, 1) if c.skip else None
        self.up2 = ResizeUp(d1, d2) if resize else SpatialUp(d1, d2)  # (16, 32, 32)
        if c.half_res:
            self.up3 = nn.Identity()  # (16, 32, 32), upsampled after self.out
            d3 = d2
        else:
            self.up3 = ResizeUp(d2, d3) if resize else SpatialUp(d2, d3)  # (16, 64, 64)
        self.out = nn.Conv3d(d3, 3, (3, 3, 3), 1, 1)
        if c.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.register_buffer("mask", mouth_mask(c.image_size, c.mask_sigma_px), persistent=False)

    def forward(self, audio: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        a = self.audio(audio)  # (B, Ca, Tl)
        f8, f16 = self.identity(identity)  # (B, Ci, 8, 8), (B, C2, 16, 16)
        t = a.shape[-1]
        fused = torch.cat(
            [
                a[:, :, :, None, None].expand(-1, -1, -1, *f8.shape[-2:]),
                f8[:, :, None].expand(-1, -1, t, -1, -1),
            ],
            dim=1,
        )
        x = self.up1(self.res(self.fuse(fused)))  # (B, d1, 16, 16, 16)
        if self.skip is not None:
            x = x + self.skip(f16[:, :, None])
        delta = self.out(self.up3(self.up2(x)))
        if self.config.half_res:
            delta = nn.functional.interpolate(delta, scale_factor=(1.0, 2.0, 2.0), mode="trilinear",
                                              align_corners=False)
        delta = delta * (self.mask * self.config.edit_scale)
        if self.config.residual:
            base = torch.atanh(identity.clamp(-0.98, 0.98))[:, :, None]
            return self._soften(torch.tanh(base + delta))
        return self._soften(torch.tanh(delta))

    def _soften(self, video: torch.Tensor) -> torch.Tensor:
        """Blend in a Gaussian blur (mouth_blur_px) of every frame, weighted by the mouth mask."""
        sigma = self.config.mouth_blur_px
        if sigma <= 0:
            return video
        r = max(1, int(round(3 * sigma)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=video.dtype, device=video.device) / sigma) ** 2)
        k = k / k.sum()
        b, c, t, h, w = video.shape
        x = video.transpose(1, 2).reshape(b * t * c, 1, h, w)
        x = nn.functional.pad(x, (r, r, r, r), mode="replicate")
        x = nn.functional.conv2d(nn.functional.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
        blurred = x.reshape(b, t, c, h, w).transpose(1, 2)
        return video + self.mask * (blurred - video)
