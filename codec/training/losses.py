"""Training losses: reconstruction, LPIPS (offline backbone), and an optional adversarial loss.

* LPIPS, Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (arXiv 1801.03924),
  built offline by ``models.perceptual``.
* A 2D PatchGAN discriminator on frames (Isola et al., arXiv 1611.07004) with hinge loss and the LeCAM regularizer
  (Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data", arXiv 2104.03310), as MAGVIT-v2
  uses; off unless its weight is set, and switched on only after a warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.perceptual import build_lpips

class PatchDiscriminator(nn.Module):
    """2D PatchGAN on single frames. Input ``(N, 3, H, W)`` in [-1, 1] → logits ``(N, 1, H/8, W/8)``."""

    def __init__(self, ch: int = 64, layers: int = 3):
        super().__init__()
        mods = [nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, layers):
            mods += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.GroupNorm(8, c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        mods += [nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.LeakyReLU(0.2), nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeCAM:
    """Exponential moving averages of the discriminator's real/fake outputs and the LeCAM penalty built on them."""

    def __init__(self, decay: float = 0.999):
        self.decay = decay
        self.real = 0.0
        self.fake = 0.0

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> None:
        self.real = self.decay * self.real + (1 - self.decay) * float(real_logits.detach().mean())
        self.fake = self.decay * self.fake + (1 - self.decay) * float(fake_logits.detach().mean())

    def penalty(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return (F.relu(real_logits - self.fake).pow(2).mean() + F.relu(self.real - fake_logits).pow(2).mean())


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def frames_of(x: torch.Tensor, max_frames: int | None = None) -> torch.Tensor:
    """``(B, C, T, H, W)`` → ``(B*T', C, H, W)``, keeping at most ``max_frames`` random frames of each clip."""
    b, c, t, h, w = x.shape
    if max_frames is not None and t > max_frames:
        idx = torch.randperm(t)[:max_frames].sort().values.to(x.device)
        x = x.index_select(2, idx)
        t = max_frames
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class TokenizerLoss(nn.Module):
    """Reconstruction objective: ``l1 * |x - y| + lpips_weight * LPIPS(x, y)`` (+ the quantizer's own losses).

    Args: lpips_weight (0 disables LPIPS); lpips_frames (frames per clip that LPIPS sees, to save compute);
    lpips_backbone (path). ``forward(x, y, quantizer_losses)`` → (total, dict of float parts).
    """

    def __init__(self, l1_weight: float = 1.0, lpips_weight: float = 0.1, lpips_frames: int = 4,
                 lpips_backbone=None):
        super().__init__()
        self.l1_weight = l1_weight
        self.lpips_weight = lpips_weight
        self.lpips_frames = lpips_frames
        self.lpips = build_lpips(lpips_backbone) if lpips_weight > 0 else None

    def forward(self, x: torch.Tensor, y: torch.Tensor, quantizer_losses: dict):
        parts = {"l1": (x - y).abs().mean()}
        total = self.l1_weight * parts["l1"]
        if self.lpips is not None:
            # The same random frames of x and y: select from both at once.
            xy = frames_of(torch.cat([x, y]), self.lpips_frames)
            xs, ys = xy.chunk(2)
            parts["lpips"] = self.lpips(ys.float(), xs.float()).mean()
            total = total + self.lpips_weight * parts["lpips"]
        for k, v in quantizer_losses.items():
            parts[k] = v
            total = total + v
        return total, {k: float(v.detach()) for k, v in parts.items()}
