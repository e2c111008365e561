"""Building blocks of the causal 3D-CNN tokenizer.

After MAGVIT-v2, "Language Model Beats Diffusion — Tokenizer is Key to Visual Generation" (arXiv 2310.05737):
causal 3D convolutions (all temporal padding before the first frame, so output frame t depends on input frames
<= t only), strided convolutions for downsampling, depth-to-space for upsampling, and adaptive group normalization
in the decoder conditioned on the quantized latent.

All tensors are ``(batch, channels, time, height, width)``. Normalization is per frame (statistics over channels of a
group and the frame's pixels, never over time), which keeps every layer causal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class CausalConv3d(nn.Module):
    """3D convolution that pads ``k_t - 1`` copies of the first frame before the clip and nothing after.

    Spatial padding is replicate padding of ``k // 2`` pixels on each side, so a ``stride``-``s`` convolution maps
    ``H`` to ``H / s`` when ``H`` is a multiple of ``s``. A temporal stride of 2 maps ``1 + 2k`` frames to ``1 + k``
    and output frame 0 sees input frame 0 only.

    Args:
        in_ch, out_ch: channels. kernel: int or (kt, kh, kw). stride: int or (st, sh, sw).
    Shapes: ``(B, in_ch, T, H, W) -> (B, out_ch, T', H / sh, W / sw)``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel=3, stride=1, bias: bool = True):
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        kt, kh, kw = self.kernel
        st, sh, sw = self.stride
        # Spatial: "same" padding for odd kernels when stride divides the size (asymmetric for even strides).
        self.pad_h = ((kh - 1) // 2, (kh - sh) - (kh - 1) // 2 if kh >= sh else 0)
        self.pad_w = ((kw - 1) // 2, (kw - sw) - (kw - 1) // 2 if kw >= sw else 0)
        self.pad_t = kt - 1
        self.conv = nn.Conv3d(in_ch, out_ch, self.kernel, stride=self.stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_h != (0, 0) or self.pad_w != (0, 0):
            x = F.pad(x, (*self.pad_w, *self.pad_h, 0, 0), mode="replicate")
        if self.pad_t:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.pad_t, -1, -1), x], dim=2)
        return self.conv(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (never across time), so normalization stays causal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


def upsample_latent(z: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Nearest, causal upsampling of a latent ``(B, C, T', H', W')`` to ``(B, C, t, h, w)``.

    Output frame ``i`` reads latent frame ``ceil(i * (T'-1) / (t-1))`` — frame 0 from latent 0, each later group of
    ``(t-1)/(T'-1)`` frames from the latent frame that first saw them — so no frame reads a later latent frame.
    """
    tl = z.shape[2]
    if tl != t:
        r = (t - 1) // max(tl - 1, 1)
        idx = (torch.arange(t, device=z.device) + r - 1) // max(r, 1)
        z = z.index_select(2, idx.clamp(max=tl - 1))
    if z.shape[3] != h or z.shape[4] != w:
        z = z.repeat_interleave(h // z.shape[3], dim=3).repeat_interleave(w // z.shape[4], dim=4)
    return z


class AdaptiveGroupNorm(nn.Module):
    """Per-frame GroupNorm whose scale and shift come from the quantized latent (MAGVIT-v2's decoder norm).

    Args: channels, latent_ch (quantized latent channels), groups.
    Shapes: ``x (B, C, T, H, W)``, ``z (B, latent_ch, T', H', W')`` with ``H`` a multiple of ``H'``.
    """

    def __init__(self, channels: int, latent_ch: int, groups: int = 8):
        super().__init__()
        self.norm = FrameGroupNorm(groups, channels, affine=False)
        self.to_scale_shift = nn.Conv3d(latent_ch, 2 * channels, 1)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ss = self.to_scale_shift(z)
        ss = upsample_latent(ss, x.shape[2], x.shape[3], x.shape[4])
        scale, shift = ss.chunk(2, dim=1)
        return self.norm(x) * (1 + scale) + shift


class ResBlock(nn.Module):
    """Pre-activation residual block: norm → SiLU → causal conv, twice, plus the identity.

    Args: channels; kernel (int or (kt, kh, kw)); latent_ch (if given, both norms are AdaptiveGroupNorm on it).
    Shapes: ``(B, C, T, H, W) -> (B, C, T, H, W)``; ``forward(x, z=None)``.
    """

    def __init__(self, channels: int, kernel=3, latent_ch: int | None = None, groups: int = 8):
        super().__init__()
        self.adaptive = latent_ch is not None
        if self.adaptive:
            self.norm1 = AdaptiveGroupNorm(channels, latent_ch, groups)
            self.norm2 = AdaptiveGroupNorm(channels, latent_ch, groups)
        else:
            self.norm1 = FrameGroupNorm(groups, channels)
            self.norm2 = FrameGroupNorm(groups, channels)
        self.conv1 = CausalConv3d(channels, channels, kernel)
        self.conv2 = CausalConv3d(channels, channels, kernel)
        # Start each block close to the identity: helps the short CPU training runs.
        nn.init.zeros_(self.conv2.conv.weight)
        nn.init.zeros_(self.conv2.conv.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x, z) if self.adaptive else self.norm1(x)
        h = self.conv1(F.silu(h))
        h = self.norm2(h, z) if self.adaptive else self.norm2(h)
        h = self.conv2(F.silu(h))
        return x + h


def space_to_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B, C*r*r, T, H/r, W/r)`` (pixel-unshuffle of every frame)."""
    b, c, t, h, w = x.shape
    y = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, c, h, w), r)
    return y.reshape(b, t, c * r * r, h // r, w // r).transpose(1, 2)


def depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, C*r*r, T, H, W) -> (B, C, T, H*r, W*r)`` (pixel-shuffle of every frame)."""
    b, c, t, h, w = x.shape
    y = F.pixel_shuffle(x.transpose(1, 2).reshape(b * t, c, h, w), r)
    return y.reshape(b, t, c // (r * r), h * r, w * r).transpose(1, 2)


def time_depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """``(B, 2C, T, H, W) -> (B, C, 2T - 1, H, W)``: each frame becomes two, the very first output frame is dropped.

    Channel half ``s`` becomes output frame ``2t + s``; dropping frame 0 keeps ``1 + k`` frames ↦ ``1 + 2k`` frames,
    the causal inverse of a temporal stride of 2.
    """
    b, c2, t, h, w = x.shape
    c = c2 // 2
    y = x.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
    return y[:, :, 1:]
