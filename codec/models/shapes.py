"""The tokenizer's shape arithmetic: ``1 + 4k`` frames of ``8a × 8b`` pixels make ``1 + k`` latent frames of
``a × b`` tokens (MAGVIT-v2, arXiv 2310.05737: the first frame alone, then four frames a latent frame), and how a
clip of another size is padded to that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPATIAL_STRIDE = 8
TEMPORAL_STRIDE = 4


def padded_size(t: int, h: int, w: int) -> tuple[int, int, int]:
    """Smallest ``(1 + 4k, 8a, 8b)`` that holds ``(t, h, w)``."""
    tp = 1 + TEMPORAL_STRIDE * -(-(t - 1) // TEMPORAL_STRIDE)
    return tp, -(-h // SPATIAL_STRIDE) * SPATIAL_STRIDE, -(-w // SPATIAL_STRIDE) * SPATIAL_STRIDE


def token_shape(t: int, h: int, w: int) -> tuple[int, int, int]:
    """Token grid ``(T', H', W')`` of a ``t``-frame ``h``×``w`` video."""
    tp, hp, wp = padded_size(t, h, w)
    return 1 + (tp - 1) // TEMPORAL_STRIDE, hp // SPATIAL_STRIDE, wp // SPATIAL_STRIDE


def pad_video(x: torch.Tensor) -> torch.Tensor:
    """Edge-replicate ``(B, C, T, H, W)`` to the padded size (later frames repeat the last one)."""
    _, _, t, h, w = x.shape
    tp, hp, wp = padded_size(t, h, w)
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h, 0, 0), mode="replicate")
    if tp != t:
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, tp - t, -1, -1)], dim=2)
    return x
