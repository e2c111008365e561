"""Building blocks of the causal 3D-CNN tokenizer.

After MAGVIT-v2, "Language Model Beats Diffusion — Tokenizer is Key to Visual Generation" (arXiv 2310.05737):
causal 3D convolutions (all temporal padding before the first frame, so output frame t depends on input frames
<= t only), strided convolutions for downsampling, depth-to-space for upsampling, and adaptive group normalization
in the decoder conditioned on the quantized latent.

All tensors are ``(batch, channels, time, height, width)``, except in the 2D-per-frame layers at the end (TAEF2's
block, temporal pool and grow; ``codec/models/tae.py``), which take frames folded into the batch. Normalization is per frame
(statistics over channels of a group and the frame's pixels, never over time), which keeps every layer causal.
Temporal pool / grow follow the tiny video autoencoders of TAESD's family (TAEHV).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.fused import conv_relu
from vtok.codec.models.streaming import FRAME_PIXELS, Stream, group_frames, in_strips, kept


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


# --- 2D-per-frame video layers (TAEF2-shaped; ``codec/models/tae.py``) --------------------------------------------------
# Frames folded into the batch, ``(B·T, C, H, W)``, with ``t`` frames per clip; causal the same way as above.

def conv3(cin: int, cout: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)


def fold(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(B, C, T, H, W)`` → ``(B·T, C, H, W)`` and ``T``."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), t


def unfold(x: torch.Tensor, t: int) -> torch.Tensor:
    """Inverse of ``fold``."""
    n, c, h, w = x.shape
    return x.reshape(n // t, t, c, h, w).transpose(1, 2)


def previous_frames(x: torch.Tensor, t: int, before: torch.Tensor | None = None) -> torch.Tensor:
    """Folded frames → each frame's predecessor: ``before`` (``(B, C, H, W)``, the frame preceding this chunk of a
    stream) for frame 0, or frame 0 itself at the start, as in a causal convolution. One frame a clip: that frame
    or ``before`` as it is, no copy. The result keeps ``x``'s memory format (channels-last from the frames' bytes),
    so that the tap's convolution runs in the layout of the block's others."""
    if t == 1:
        return x if before is None else before
    n, c, h, w = x.shape
    p = torch.empty_like(x)
    v, pv = x.unflatten(0, (n // t, t)), p.unflatten(0, (n // t, t))
    pv[:, 1:] = v[:, :-1]
    pv[:, 0] = v[:, 0] if before is None else before
    return p


class TaeBlock(nn.Module):
    """TAEF2's block: ``relu(x + conv(relu(conv(relu(conv(x))))))``, optionally after ``x += pool(x)``.

    ``temporal`` adds a 3×3 previous-frame tap to the first convolution (zero at start: the per-frame block).
    Args: ch; pool (the 1×1 → GroupNorm(4) → 1×1 channel-mixing branch of TAEF2's 1/8 stage); temporal.
    Shapes: folded frames ``(B·T, ch, H, W)``, with ``t`` frames per clip.
    """

    def __init__(self, ch: int = 64, pool: bool = False, temporal: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv3(ch, ch), nn.ReLU(), conv3(ch, ch), nn.ReLU(), conv3(ch, ch))
        self.pool = nn.Sequential(nn.Conv2d(ch, 4 * ch, 1, bias=False), nn.GroupNorm(4, 4 * ch), nn.ReLU(),
                                  nn.Conv2d(4 * ch, ch, 1, bias=False)) if pool else None
        self.prev = conv3(ch, ch, bias=False) if temporal else None
        if self.prev is not None:
            nn.init.zeros_(self.prev.weight)

    def forward(self, x: torch.Tensor, t: int = 1, stream: Stream | None = None) -> torch.Tensor:
        """``stream``: one chunk of a stream (of one clip); its frames then run in pieces of ``FRAME_PIXELS / 16``
        pixels (the 1/4 stage's share of a 1080p frame; ``in_strips``), and the block may write its output over
        its input ``x``, which its caller then no longer holds."""
        if self.pool is not None:
            x = x + self.pool(x)  # statistics over the whole frame: before any strips
        before = None
        if self.prev is not None and stream is not None:
            before = stream.take(self, x, t)
        if stream is None:
            return self._body(x, None if self.prev is None else previous_frames(x, t))
        per = group_frames(x, FRAME_PIXELS // 16)
        if 0 < per < len(x) == t and not x.requires_grad:
            # Groups of whole frames, each written over its input, the last first: a group's previous frames are
            # then still the inputs, read in place (no copy of the chunk for the tap, no concatenation of groups).
            for a in reversed(range(0, t, per)):
                g = x[a:a + per]
                p = None if self.prev is None else previous_frames(g, len(g), x[a - 1:a] if a else before)
                self._body(g, p, into=True)
            return x
        p = None if self.prev is None else previous_frames(x, t, before)
        return in_strips(self._body, [x] if p is None else [x, p], FRAME_PIXELS // 16, halo=4)

    def _body(self, x: torch.Tensor, p: torch.Tensor | None = None, into: bool = False) -> torch.Tensor:
        """The three convolutions (reaching 3 rows) and the previous-frame tap on ``p``, per frame; ``into``: the
        result written over ``x``."""
        h = conv_relu(self.conv[0], x, None if p is None else conv_relu(self.prev, p, relu=False))
        return conv_relu(self.conv[4], conv_relu(self.conv[2], h), x, into=into)


class TemporalPool(nn.Module):
    """Causal 2 → 1 frame pooling: ``1 + 2k`` frames → ``1 + k`` (frame 0 pooled with itself).

    Output frame ``j`` mixes frames ``2j - 1`` and ``2j`` with a 1×1 convolution; at start it passes frame ``2j``.
    """

    def __init__(self, ch: int = 64):
        super().__init__()
        self.mix = nn.Conv2d(2 * ch, ch, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.weight[:, ch:, 0, 0] = torch.eye(ch)

    def forward(self, x, t: int, stream: Stream | None = None) -> tuple[torch.Tensor, int]:
        """A stream's chunk may hold any number of frames: an odd one out waits in the stream for its partner (the
        result may then hold no frames: ``(0, C, H, W)`` and ``t = 0``); in a stream ``x`` may also be a list of
        folded frames (``in_pieces``), ``t`` of them in all."""
        if stream is None:
            n, c, h, w = x.shape
            b = n // t
            if (t - 1) % 2:
                raise ValueError(f"temporal pooling needs 1 + 2k frames, got {t}")
            v = x.reshape(b, t, c, h, w)
            v = torch.cat([v[:, :1], v], 1)  # the clip's frame 0 is pooled with itself
            t2 = v.shape[1] // 2
            return self.mix(v.reshape(b * t2, 2 * c, h, w)), t2
        # frame by frame (slices keep their tensor's strides, so its memory format too)
        frames = [g[i:i + 1] for g in (x if isinstance(x, list) else [x]) for i in range(len(g))]
        if len(frames) != t:
            raise ValueError("a stream runs one clip at a time")
        like = frames[0]
        _, c, h, w = like.shape
        if stream.first_chunk(self):
            frames.insert(0, frames[0])
        held = stream.pending.pop(id(self), None)
        if held is not None:
            frames.insert(0, held)
        if len(frames) % 2:
            stream.pending[id(self)] = kept(frames.pop())
        k, budget = len(frames) // 2, FRAME_PIXELS // 16
        if not k:
            return like.new_zeros((0, c, h, w)), 0
        if h * w > budget:  # each pair in strips of rows
            mixed = [in_strips(lambda a, z: self.mix(torch.cat([a, z], 1)), [a, z], budget)
                     for a, z in zip(frames[0::2], frames[1::2])]
            return (mixed[0] if k == 1 else torch.cat(mixed)), k
        # the chunk's pairs side by side in one tensor (a copy of each frame), mixed at once
        fmt = torch.channels_last if like.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        pairs = torch.empty((k, 2 * c, h, w), dtype=like.dtype, device=like.device, memory_format=fmt)
        for j in range(k):
            pairs[j:j + 1, :c] = frames[2 * j]
            pairs[j:j + 1, c:] = frames[2 * j + 1]
        return self.mix(pairs), k


class TemporalGrow(nn.Module):
    """Causal 1 → 2 frame growth, the mirror of ``TemporalPool``: ``1 + k`` frames → ``1 + 2k``.

    A 1×1 convolution makes two frames from each; the very first one is dropped. At start both are copies.
    """

    def __init__(self, ch: int = 64):
        super().__init__()
        self.split = nn.Conv2d(ch, 2 * ch, 1, bias=False)
        with torch.no_grad():
            self.split.weight.zero_()
            self.split.weight[:ch, :, 0, 0] = torch.eye(ch)
            self.split.weight[ch:, :, 0, 0] = torch.eye(ch)

    def forward(self, x: torch.Tensor, t: int, stream: Stream | None = None) -> tuple[torch.Tensor, int]:
        n, c, h, w = x.shape
        v = self.split(x).reshape(n // t, 2 * t, c, h, w)
        if stream is None or stream.first_chunk(self):  # the clip's very first frame is dropped
            v = v[:, 1:]
        return v.reshape(-1, c, h, w), v.shape[1]


def soft_clamp(z: torch.Tensor) -> torch.Tensor:
    """TAEF2's decoder input clamp: ``tanh(z / 3) · 3``."""
    return torch.tanh(z / 3) * 3
