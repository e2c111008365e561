"""The from-scratch MAGVIT-v2-style encoder and decoder (``arch="magvit"``, the ``magvit18`` bundled model).

After MAGVIT-v2 (arXiv 2310.05737): a causal 3D CNN that maps ``1 + 4k`` frames to ``1 + k`` latent frames at 1/8 of
the resolution (strided convolutions down, depth-to-space up, adaptive group norm in the decoder), so the first frame
is tokenized on its own and an image is a one-frame video. To run fast on a CPU the network starts with a
space-to-depth stem (no convolution at full resolution) and keeps few channels at 1/4 resolution.
Layouts: ``(B, C, T, H, W)``; pixels in [-1, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.layers import (AdaptiveGroupNorm, CausalConv3d, FrameGroupNorm, ResBlock, depth_to_space,
                                      space_to_depth, time_depth_to_space)

if TYPE_CHECKING:
    from vtok.codec.models.config import TokenizerConfig


class Encoder(nn.Module):
    """``(B, 3, 1+4k, H, W)`` in [-1, 1] → ``(B, D, 1+k, H/8, W/8)`` latent (H, W multiples of 8)."""

    def __init__(self, cfg: TokenizerConfig, out_ch: int):
        super().__init__()
        c1, c2 = cfg.stem_ch, cfg.ch
        self.conv_in = CausalConv3d(3 * 16, c1, (1, 3, 3))
        self.stem = nn.ModuleList(ResBlock(c1, (1, 3, 3)) for _ in range(cfg.stem_blocks))
        self.down1 = CausalConv3d(c1, c2, 3, stride=(2, 2, 2))
        self.mid1 = nn.ModuleList(ResBlock(c2, 3) for _ in range(cfg.blocks))
        self.down2 = CausalConv3d(c2, c2, 3, stride=(2, 1, 1))
        self.mid2 = nn.ModuleList(ResBlock(c2, 3) for _ in range(cfg.blocks))
        self.norm_out = FrameGroupNorm(8, c2)
        self.conv_out = CausalConv3d(c2, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(space_to_depth(x, 4))
        for blk in self.stem:
            h = blk(h)
        h = self.down1(F.silu(h))
        for blk in self.mid1:
            h = blk(h)
        h = self.down2(h)
        for blk in self.mid2:
            h = blk(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """``(B, D, 1+k, H', W')`` quantized latent → ``(B, 3, 1+4k, 8H', 8W')`` in about [-1, 1]."""

    def __init__(self, cfg: TokenizerConfig, in_ch: int):
        super().__init__()
        c1, c2 = cfg.stem_ch, cfg.ch
        self.conv_in = CausalConv3d(in_ch, c2, 3)
        self.mid1 = nn.ModuleList(ResBlock(c2, 3, latent_ch=in_ch) for _ in range(cfg.blocks))
        self.up_t1 = CausalConv3d(c2, 2 * c2, 3)
        self.mid2 = nn.ModuleList(ResBlock(c2, 3, latent_ch=in_ch) for _ in range(cfg.blocks))
        self.up_t2 = CausalConv3d(c2, 2 * c2, (3, 1, 1))
        self.up_s = CausalConv3d(c2, 4 * c1, (1, 3, 3))
        self.stem = nn.ModuleList(ResBlock(c1, (1, 3, 3), latent_ch=in_ch) for _ in range(cfg.stem_blocks))
        self.norm_out = AdaptiveGroupNorm(c1, in_ch, 8)
        self.conv_out = CausalConv3d(c1, 3 * 16, (1, 3, 3))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(q)
        for blk in self.mid1:
            h = blk(h, q)
        h = time_depth_to_space(self.up_t1(F.silu(h)))
        for blk in self.mid2:
            h = blk(h, q)
        h = time_depth_to_space(self.up_t2(F.silu(h)))
        h = depth_to_space(self.up_s(h), 2)
        for blk in self.stem:
            h = blk(h, q)
        h = self.conv_out(F.silu(self.norm_out(h, q)))
        return depth_to_space(h, 4)
