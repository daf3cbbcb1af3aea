"""The lip generator and its critics: shapes, every loss, the discriminator, the flow targets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from avsync.lipgen.critics import (
    CorrelationNets,
    CriticConfig,
    LipFlowNet,
    LipLandmarkNet,
    ThreeStreamDiscriminator,
    VideoAutoencoder,
    audio_derivative,
    correlation_loss,
    perceptual_loss,
)
from avsync.lipgen.model import GeneratorConfig, LipGenerator
from avsync.lipgen.training import (
    Critics,
    LossWeights,
    correlation_contrast,
    discriminator_loss,
    farneback_targets,
    generator_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")
B = 2


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "video": torch.rand(B, 3, 16, 64, 64, generator=g) * 2 - 1,
        "audio": torch.randn(B, 64, 40, generator=g),
        "identity": torch.rand(B, 3, 64, 64, generator=g) * 2 - 1,
        "wrong_audio": torch.randn(B, 64, 40, generator=g),
        "lips": torch.rand(B, 16, 40, 2, generator=g) * 64,
    }


def critics() -> Critics:
    cc = CriticConfig.debug()
    return Critics(LipFlowNet(cc), CorrelationNets(cc), VideoAutoencoder(cc), ThreeStreamDiscriminator(cc))


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_generator_shapes_range_and_audio_dependence(upsample: str) -> None:
    torch.manual_seed(0)
    # the plain decoder (a residual one starts as an exact copy of the identity, see below);
    # train mode: batch statistics, O(1) activations
    g = LipGenerator(replace(GeneratorConfig.debug(), residual=False, upsample=upsample))
    b = batch()
    audio = b["audio"].clone().requires_grad_(True)
    out = g(audio, b["identity"])
    assert out.shape == (B, 3, 16, 64, 64)
    assert out.abs().max() <= 1.0
    out[:, :, 3].sum().backward()
    assert audio.grad.abs().sum() > 0  # the audio reaches the frames
    assert (out[:, :, 0] - out[:, :, 8]).abs().mean() > 1e-4  # frames differ over time


def test_resize_convolution_decoder_draws_no_checkerboard() -> None:
    from avsync.lipgen.generate import checkerboard
    from avsync.lipgen.windows import to_uint8

    b = batch()
    cb = {}
    for up in ("transpose", "resize"):
        torch.manual_seed(0)
        g = LipGenerator(replace(GeneratorConfig.debug(), residual=False, upsample=up))
        cb[up] = checkerboard(to_uint8(g(b["audio"], b["identity"])).reshape(-1, 64, 64, 3))
    assert cb["resize"] < 0.5 * cb["transpose"]  # Odena et al.: the artefact is the operator's
    with pytest.raises(ValueError, match="upsample"):
        LipGenerator(replace(GeneratorConfig.debug(), upsample="bilinear"))


def test_residual_generator_starts_as_the_identity_and_learns_away_from_it() -> None:
    torch.manual_seed(0)
    g, b = LipGenerator(GeneratorConfig.debug()), batch()
    out = g(b["audio"], b["identity"])
    assert torch.allclose(out, b["identity"].clamp(-0.98, 0.98)[:, :, None].expand_as(out), atol=1e-6)
    opt = torch.optim.Adam(g.parameters(), 1e-2)
    for _ in range(3):
        loss = (g(b["audio"], b["identity"]) - b["video"]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = g(b["audio"], b["identity"])
    assert (out[:, :, 0] - out[:, :, 8]).abs().mean() > 1e-4  # frames now differ over time


def test_generator_config_rejects_bad_frame_count() -> None:
    with pytest.raises(ValueError):
        LipGenerator(GeneratorConfig(frames=12, latent_frames=8))


def test_critic_shapes() -> None:
    cc, b = CriticConfig.debug(), batch()
    flow = LipFlowNet(cc).video_flow(b["video"])
    assert flow.shape == (B, 2, 15, 16, 16)
    assert ThreeStreamDiscriminator(cc)(b["video"], flow, b["audio"]).shape == (B,)
    assert LipLandmarkNet(cc)(b["identity"]).shape == (B, 40, 2)
    ae = VideoAutoencoder(cc)
    assert ae(b["video"]).shape == b["video"].shape
    assert audio_derivative(b["audio"]).shape == (B, 60, 40)


class _Fixed(torch.nn.Module):
    """Correlation 'encoders' that return given features (known-answer cosine)."""

    def __init__(self, fa: torch.Tensor, ff: torch.Tensor) -> None:
        super().__init__()
        self.fa, self.ff = fa, ff

    def audio_features(self, _x: torch.Tensor) -> torch.Tensor:
        return self.fa

    def flow_features(self, _x: torch.Tensor) -> torch.Tensor:
        return self.ff


@pytest.mark.parametrize(("sign", "expected"), [(1.0, 0.0), (-1.0, 2.0)])
def test_correlation_loss_known_answer(sign: float, expected: float) -> None:
    f = torch.randn(B, 8, 15)
    loss = correlation_loss(_Fixed(f, sign * 3 * f), torch.zeros(B, 64, 40), torch.zeros(B, 2, 15, 16, 16))
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_correlation_contrast_prefers_matching_pairs() -> None:
    f = torch.randn(4, 8, 15)
    good, acc = correlation_contrast(_Fixed(f, f), torch.zeros(4, 64, 40), torch.zeros(4, 2, 15, 16, 16))
    bad, _ = correlation_contrast(
        _Fixed(f, f.roll(1, 0)), torch.zeros(4, 64, 40), torch.zeros(4, 2, 15, 16, 16)
    )
    assert acc.item() == 1.0 and good.item() < bad.item()


def test_perceptual_loss_zero_for_identical_and_positive_otherwise() -> None:
    ae, b = VideoAutoencoder(CriticConfig.debug()).eval(), batch()
    assert perceptual_loss(ae, b["video"], b["video"]).item() == pytest.approx(0.0, abs=1e-10)
    assert perceptual_loss(ae, b["video"], batch(1)["video"]).item() > 0


def test_generator_loss_terms_follow_weights() -> None:
    g, c, b = LipGenerator(GeneratorConfig.debug()), critics(), batch()
    _, fake, terms = generator_loss(g, c, b, LossWeights())
    assert set(terms) == {"rec", "corr", "perc", "gan"} and fake.shape == b["video"].shape
    total, _, terms = generator_loss(g, c, b, LossWeights(rec=1.0, corr=0.0, perc=0.0, gan=0.0))
    assert set(terms) == {"rec"} and total.item() == pytest.approx(terms["rec"])


def test_generator_loss_gradients_reach_the_generator_only_through_enabled_terms() -> None:
    g, c, b = LipGenerator(GeneratorConfig.debug()), critics(), batch()
    total, _, _ = generator_loss(g, c, b, LossWeights(rec=0.0, corr=1.0, perc=0.0, gan=0.0))
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


def test_discriminator_learns_real_vs_fake_and_mismatch() -> None:
    torch.manual_seed(0)
    cc, b = CriticConfig.debug(), batch()
    d, flow = ThreeStreamDiscriminator(cc), LipFlowNet(cc)
    fake = torch.zeros_like(b["video"])  # an obviously fake clip
    opt = torch.optim.Adam(d.parameters(), 1e-3)
    first = None
    for _ in range(25):
        loss = discriminator_loss(d, flow, b, fake, mismatch=0.5)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first
    d.eval()
    with torch.no_grad():
        real = d(b["video"], flow.video_flow(b["video"]), b["audio"])
        fk = d(fake, flow.video_flow(fake), b["audio"])
    assert (real > fk).all()


def test_farneback_targets_known_shift() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random((80, 80)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 2)
    frames = np.stack([np.stack([base[8:72, 8 - k : 72 - k]] * 3, -1) for k in (0, 2)])[
        None
    ]  # moves right 2 px
    flow = farneback_targets(frames)
    assert flow.shape == (1, 2, 1, 16, 16)
    centre = flow[0, :, 0, 4:12, 4:12].reshape(2, -1).mean(1)
    assert centre[0] == pytest.approx(2.0, abs=0.4) and abs(centre[1]) < 0.4
