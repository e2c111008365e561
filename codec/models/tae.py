"""A causal video tokenizer body that starts from TAEF2, a small pretrained image autoencoder.

TAEF2 (madebyollin/taesd, MIT licence; ``../shared/weights/taef2``) is a tiny distilled stand-in for the FLUX.2
image VAE: an 8× spatial autoencoder with 32 latent channels built from plain 3×3 convolutions. This module holds

* ``TaeVideoEncoder`` / ``TaeVideoDecoder``: the tokenizer's encoder and decoder. They keep TAEF2's 1/4- and
  1/8-resolution stages (loaded from its tensors) and make them causal video layers the way the tiny video
  autoencoders of the same family do (TAEHV): a *temporal pool* before each of the two lower stages (2 frames → 1,
  so the 1/4 stage runs on half the frames and the 1/8 stage on a quarter), a previous-frame tap in every block, and
  the mirror *temporal grow* in the decoder. TAEF2's full- and half-resolution stages, about 88 % of its compute,
  are replaced by cheap space-to-depth / depth-to-space stages distilled from TAEF2's 1/4-resolution features.

Causality and frame counts follow MAGVIT-v2 (arXiv 2310.05737): ``1 + 4k`` frames → ``1 + k`` latent frames; the
first frame is pooled with itself, so it is coded alone and an image is a one-frame video. Every untrained temporal
part starts as the identity of the per-frame model (previous-frame taps at zero, the pool passing the later frame
through, the grow copying a frame to both outputs).

Layouts: ``(B, C, T, H, W)`` at every module's entry and exit; inside, frames are folded into the batch
(``(B·T, C, H, W)``) because the spatial work is 2D. Pixels are ``[-1, 1]`` at the edges (TAEF2 itself reads
``[0, 1]``).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vtok.codec.models.fused import channels_last, conv_relu
from vtok.codec.models.layers import TaeBlock, TemporalGrow, TemporalPool, conv3, fold, soft_clamp, unfold
from vtok.codec.models.streaming import CACHE_SHARE, FRAME_PIXELS, Stream, from_bytes, in_pieces, in_strips, to_bytes
from vtok.codec.models.taef2 import TAE_CH, TAE_LATENT, read_taef2


class CheapStem(nn.Module):
    """Space-to-depth stem: ``(N, 3, H, W)`` in [0, 1] → ``(N, 64, H/4, W/4)``, distilled to TAEF2's layers 0–6.

    A 2× space-to-depth, one 3×3 convolution at 1/2 resolution, a second 2× space-to-depth, a 3×3 convolution and
    ``blocks`` TAEF2-shaped blocks at 1/4 resolution. Args: blocks; mid (channels at 1/2 resolution).
    """

    def __init__(self, blocks: int = 1, mid: int = 16):
        super().__init__()
        self.at_half = conv3(12, mid)
        self.at_quarter = conv3(4 * mid, TAE_CH)
        self.blocks = nn.ModuleList(TaeBlock(TAE_CH) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = conv_relu(self.at_half, F.pixel_unshuffle(x, 2))
        h = conv_relu(self.at_quarter, F.pixel_unshuffle(h, 2), relu=False)
        for blk in self.blocks:
            h = blk(h)
        return h


class CheapHead(nn.Module):
    """Depth-to-space head: ``(N, 64, h, w)`` 1/4-resolution features → ``(N, 3, 4h, 4w)`` in about [0, 1].

    Trained (distilled) to decode TAEF2's layer-10 decoder features to the picture in place of its layers 11–19.
    Args: mid (channels at 1/2 resolution).
    """

    def __init__(self, mid: int = 32):
        super().__init__()
        self.to_half = conv3(TAE_CH, 4 * mid)
        self.half1 = conv3(mid, mid)
        self.half2 = conv3(mid, mid)
        self.to_full = conv3(mid, 12)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = F.pixel_shuffle(conv_relu(self.to_half, h), 2)  # a ReLU commutes with the shuffle
        h = conv_relu(self.half2, conv_relu(self.half1, h), h)
        return F.pixel_shuffle(self.to_full(h), 2)


class TaeVideoEncoder(nn.Module):
    """``(B, 3, 1+4k, H, W)`` in [-1, 1] → ``(B, out_ch, 1+k, H/8, W/8)`` (H, W multiples of 8).

    Cheap stem per frame → temporal pool → TAEF2's 1/4 stage (layers 7–9, with previous-frame taps) → temporal pool →
    stride-2 conv (layer 10) → TAEF2's 1/8 stage (11–13) → TAEF2's latent conv (14) → 1×1 projection to ``out_ch``.
    Args: out_ch (quantizer channels); stem_blocks.
    """

    def __init__(self, out_ch: int, stem_blocks: int = 1):
        super().__init__()
        c = TAE_CH
        self.stem = CheapStem(stem_blocks)
        self.pool1 = TemporalPool(c)
        self.quarter = nn.ModuleList(TaeBlock(c, temporal=True) for i in range(3))
        self.pool2 = TemporalPool(c)
        self.down = conv3(c, c, 2, bias=False)
        self.eighth = nn.ModuleList(TaeBlock(c, pool=True, temporal=True) for _ in range(3))
        self.latent = conv3(c, TAE_LATENT)
        self.proj = nn.Conv2d(TAE_LATENT, out_ch, 1)
        with torch.no_grad():  # start as the first channels of TAEF2's latent (roughly N(0, 0.9²))
            self.proj.weight.zero_()
            n = min(out_ch, TAE_LATENT)
            self.proj.weight[:n, :n, 0, 0] = torch.eye(n)
            if out_ch > n:
                nn.init.normal_(self.proj.weight[n:], std=TAE_LATENT ** -0.5)
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, t = fold(x.add(1).mul_(0.5))
        return self._body(self.stem(h), t)

    def stream_frames(self, u: torch.Tensor, stream: Stream) -> torch.Tensor:
        """One chunk of a stream: uint8 frames ``(k, 3, H, W)`` (any ``k``, any memory layout) → the latent frames
        complete with it ``(1, out_ch, k', H/8, W/8)`` (``k'`` may be 0). Every stage works on at most
        ``FRAME_PIXELS`` pixels at a time (``in_strips``; the stem converts its strip of bytes itself), so memory
        does not grow with the frame area beyond the frames themselves; the result is ``forward``'s on the whole
        clip."""
        # the stem reaches 18 full-resolution rows: a halo of 32
        h = in_pieces(lambda s: self.stem(from_bytes(s).add_(1).mul_(0.5)), [u], FRAME_PIXELS, halo=32, down=4)
        return self._body(h, len(u), stream, (u.shape[-2] // 8, u.shape[-1] // 8))

    def _body(self, h, t: int, stream: Stream | None = None, size=None) -> torch.Tensor:
        """Everything after the stem, on folded 1/4-resolution frames (in a stream, a list of them: ``in_pieces``)."""
        h, t = self.pool1(h, t, stream)
        if t:
            for blk in self.quarter:
                h = blk(h, t, stream)
            h, t = self.pool2(h, t, stream)
        if not t:
            return h.new_zeros((1, self.proj.out_channels, 0) + tuple(size))
        h = self.down(h)
        for blk in self.eighth:
            h = blk(h, t, stream)
        return unfold(self.proj(self.latent(h)), t)


def dequantized(dequant: nn.Sequential, latent: nn.Conv2d, h: torch.Tensor, residual: nn.Conv2d | None = None):
    """Folded codes ``(N, C, h, w)`` → TAEF2's layer-1 features: the 1×1 + 3×3 dequantizer on the first
    ``dequant[0].in_channels`` code channels (the sign bits), with ``residual``'s 1×1 branch on the others (the
    refinement bits) added before its ReLU when given, then TAEF2's soft clamp and layer 1 (``latent``)."""
    n = dequant[0].in_channels
    h = dequant[2](conv_relu(dequant[0], h[:, :n], None if residual is None else residual(h[:, n:])))
    return conv_relu(latent, soft_clamp(h))


class RefinementPath(nn.Module):
    """The start of the decoder (dequantizer, a 1×1 branch for the refinement bits, TAEF2's layer 1 and the refine
    blocks) once more, for tokens that carry refinement bits; tokens of sign bits alone take the decoder's own start,
    so that they decode exactly as with the decoder the bits grew on, which can stay frozen (a base layer and an
    enhancement layer, as in scalable coding, sharing the rest of the decoder)."""

    def __init__(self, signs: int, refine: int, blocks: int):
        super().__init__()
        c = TAE_CH
        self.dequant = nn.Sequential(nn.Conv2d(signs, c, 1), nn.ReLU(), conv3(c, TAE_LATENT))
        self.residual = nn.Conv2d(refine, c, 1, bias=False)
        self.latent = conv3(TAE_LATENT, c)
        self.refine = nn.ModuleList(TaeBlock(c, temporal=True) for _ in range(blocks))

    def forward(self, h: torch.Tensor, t: int, stream: Stream | None = None) -> torch.Tensor:
        h = dequantized(self.dequant, self.latent, h, self.residual)
        for blk in self.refine:
            h = blk(h, t, stream)
        return h


class TaeVideoDecoder(nn.Module):
    """``(B, in_ch, 1+k, h, w)`` quantized latent → ``(B, 3, 1+4k, 8h, 8w)`` in about [-1, 1].

    1×1 + 3×3 dequantizer to TAEF2's 32-channel latent → TAEF2's layer 1 → ``refine_blocks`` extra residual blocks
    (previous-frame taps; optional) → TAEF2's layers 3–5 (1/8 stage, with previous-frame taps) → temporal grow → ×2
    upsampling and layer 7 → layers 8–10 (1/4 stage) → temporal grow → cheap head per frame.
    Args: in_ch (quantizer code channels); refine_blocks; residual_ch: how many of the ``in_ch`` code channels are
    refinement bits (``quantizers/rlfq.py``), read by a 1×1 branch of their own that starts at zero, added to the
    signs' first dequantizer layer — so a decoder given refinement bits starts as the decoder it grew from; with
    ``enhance``, a ``RefinementPath`` of their own instead, and the sign bits alone decode exactly as they did.

    The refine blocks run at 1/8 resolution on the latent frames (a quarter of the frames), where a block costs about
    a tenth of what it would at 1/4 resolution on every second frame; each one's last convolution starts at zero,
    so that blocks added to a trained decoder start as the identity.
    """

    def __init__(self, in_ch: int, refine_blocks: int = 0, residual_ch: int = 0, enhance: bool = False):
        super().__init__()
        c = TAE_CH
        in_ch -= residual_ch
        self.dequant = nn.Sequential(nn.Conv2d(in_ch, c, 1), nn.ReLU(), conv3(c, TAE_LATENT))
        self.residual = self.enhance = None
        if residual_ch and enhance:
            self.enhance = RefinementPath(in_ch, residual_ch, refine_blocks)
        elif residual_ch:
            self.residual = nn.Conv2d(residual_ch, c, 1, bias=False)
            nn.init.zeros_(self.residual.weight)
        self.latent = conv3(TAE_LATENT, c)
        n = min(in_ch, TAE_LATENT, c // 2)
        with torch.no_grad():  # start as "bit i is the sign of TAEF2's latent channel i": 0.8·(relu(b) − relu(−b))
            first, second = self.dequant[0], self.dequant[2]
            first.weight.zero_()
            first.bias.zero_()
            first.weight[:n, :n, 0, 0] = torch.eye(n)
            first.weight[n:2 * n, :n, 0, 0] = -torch.eye(n)
            second.weight.zero_()
            second.bias.zero_()
            second.weight[:n, :n, 1, 1] = 0.8 * torch.eye(n)
            second.weight[:n, n:2 * n, 1, 1] = -0.8 * torch.eye(n)
        self.refine = nn.ModuleList(TaeBlock(c, temporal=True) for _ in range(refine_blocks))
        for blk in self.refine:
            nn.init.zeros_(blk.conv[4].weight)
            nn.init.zeros_(blk.conv[4].bias)
        self.eighth = nn.ModuleList(TaeBlock(c, pool=True, temporal=True) for _ in range(3))
        self.grow1 = TemporalGrow(c)
        self.up = conv3(c, c, bias=False)
        self.quarter = nn.ModuleList(TaeBlock(c, temporal=True) for i in range(3))
        self.grow2 = TemporalGrow(c)
        self.head = CheapHead()
        channels_last(self)

    def _start(self, h: torch.Tensor, t: int, stream: Stream | None = None) -> torch.Tensor:
        """Folded codes ``(N, in_ch, h, w)`` → the features after the refine blocks: through the refinement path for
        the frames whose tokens carry refinement bits (kept bits are ±1, dropped ones 0), the decoder's own start
        for the others."""
        if self.enhance is None:
            return self._own_start(h, t, stream)
        refined = h[:, self.dequant[0].in_channels:].ne(0).flatten(1).any(1)
        if bool(refined.all()):
            return self.enhance(h, t, stream)
        if not bool(refined.any()):
            return self._own_start(h, t, stream)
        return torch.where(refined[:, None, None, None], self.enhance(h, t, stream), self._own_start(h, t, stream))

    def _own_start(self, h: torch.Tensor, t: int, stream: Stream | None = None) -> torch.Tensor:
        h = dequantized(self.dequant, self.latent, h, self.residual)
        for blk in self.refine:
            h = blk(h, t, stream)
        return h

    def forward(self, q: torch.Tensor, checkpointed: bool = False) -> torch.Tensor:
        """``checkpointed``: keep only each block's input for the backward pass and recompute the rest (the same
        numbers and gradients in a fraction of the memory: the encoder's search, ``codec/search.py``)."""
        run = (lambda f, *a: checkpoint(f, *a, use_reentrant=False)) if checkpointed else (lambda f, *a: f(*a))
        h, t = fold(q)
        h = run(self._start, h, t)
        for blk in self.eighth:
            h = run(blk, h, t)
        h, t = self.grow1(h, t)
        h = run(lambda x: self.up(F.interpolate(x, scale_factor=2.0, mode="nearest")), h)
        for blk in self.quarter:
            h = run(blk, h, t)
        h, t = self.grow2(h, t)
        return unfold(run(self.head, h).mul(2).sub(1), t)

    def pieces(self, q: torch.Tensor, stream: Stream):
        """One chunk of latent frames ``(1, in_ch, k, h, w)`` of a stream → its output frames as uint8 ``(n, 3, H, W)``,
        yielded a few at a time: after the 1/8 stage, each piece of frames runs the 1/4 stage and the head on its own,
        about ``FRAME_PIXELS / CACHE_SHARE`` output pixels or one frame of it (the 1/4 stage in strips of rows when a
        frame is larger, the head, whose activations are the widest, in strips of 1/64 of ``FRAME_PIXELS`` at its input
        in float32 and 1/32 in bfloat16 — at 1080p float32 decodes about 5 % faster so than with 1/32 — each turned into
        bytes at once), so full-resolution floats never pile up; the frames are ``forward``'s on the whole clip."""
        if q.shape[0] != 1:
            raise ValueError("a stream decodes one clip at a time")
        h, t = fold(q)
        h = self._start(h, t, stream)
        for blk in self.eighth:
            h = blk(h, t, stream)
        h, t = self.grow1(h, t, stream)
        # 1/4-stage frames a piece (each → two out), few enough that a piece's activations stay in the cache
        per = max(1, FRAME_PIXELS // CACHE_SHARE // (2 * 64 * h.shape[-2] * h.shape[-1]))
        head_pixels = FRAME_PIXELS // 16 // self.head.to_half.weight.element_size()
        for a in range(0, t, per):
            g = self.up(F.interpolate(h[a:a + per], scale_factor=2.0, mode="nearest"))
            tg = g.shape[0]
            for blk in self.quarter:
                g = blk(g, tg, stream)
            g, tg = self.grow2(g, tg, stream)
            # the head reaches 3 rows of its input: a halo of 4; strips of one size in bytes whatever the precision
            yield in_strips(lambda s: to_bytes(self.head(s).float().mul_(2).sub_(1)), [g], head_pixels, halo=4, up=4)


# TAEF2 key prefixes → our modules' parameter names (the blocks keep TAEF2's inner names).
ENCODER_MAP = {"7.": "quarter.0.", "8.": "quarter.1.", "9.": "quarter.2.", "10.": "down.", "11.": "eighth.0.",
               "12.": "eighth.1.", "13.": "eighth.2.", "14.": "latent."}
DECODER_MAP = {"1.": "latent.", "3.": "eighth.0.", "4.": "eighth.1.", "5.": "eighth.2.", "7.": "up.",
               "8.": "quarter.0.", "9.": "quarter.1.", "10.": "quarter.2."}


def remap(tensors: dict, mapping: dict) -> dict:
    out = {}
    for k, v in tensors.items():
        for src, dst in mapping.items():
            if k.startswith(src):
                out[dst + k[len(src):]] = v
    return out


def init_from_taef2(encoder: TaeVideoEncoder, decoder: TaeVideoDecoder, folder=None) -> None:
    """Copy TAEF2's 1/4- and 1/8-resolution stages into a fresh encoder and decoder (previous-frame taps stay 0)."""
    enc_sd, dec_sd = read_taef2(folder)
    for module, tensors, mapping in ((encoder, enc_sd, ENCODER_MAP), (decoder, dec_sd, DECODER_MAP)):
        own = module.state_dict()
        mapped = remap(tensors, mapping)
        missing = [k for k in mapped if k not in own or own[k].shape != mapped[k].shape]
        if missing:
            raise ValueError(f"TAEF2 tensors that do not fit: {missing[:5]}")
        with torch.no_grad():
            for k, v in mapped.items():
                own[k].copy_(v)
