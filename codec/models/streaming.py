"""Running the causal video layers as a stream, in bounded memory: the one pixel budget (``FRAME_PIXELS``), work in
strips of rows (``in_strips``, or ``in_pieces`` unjoined), the state carried from one chunk of frames to the next
(``Stream``), and the uint8 ⇄ float conversion done strip by strip (``from_bytes``, ``to_bytes``) and at the
tokenizer's edges (``as_bytes``, ``as_frames``, ``to_uint8``), and the encoder fed as a stream (``stream_latents``).

A GOP runs through the tokenizer chunk by chunk (about ``FRAME_PIXELS`` pixels a chunk) with each causal layer's last
frame carried along, and a frame larger than the budget runs in strips of rows with a halo that covers a layer's
reach; so memory does not grow with the clip's length, and with the frame's area only by the frames themselves and
the causal state. Everything here computes what the whole clip at once computes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vtok.codec.models.shapes import padded_size

# Pixels a streaming layer works on at once (``in_strips``), counted at full resolution: one 1080p frame. Larger
# frames run in strips of rows; smaller ones several at a time.
FRAME_PIXELS = 1920 * 1088
# Whole frames run through a layer in groups of at most ``budget / CACHE_SHARE`` pixels (one frame at least), so that
# a group's activations stay in the CPU's cache between one layer and the next (docs/MODELS.md, "Decoding speed").
CACHE_SHARE = 8


def in_strips(fn, xs: list[torch.Tensor], budget: int, halo: int = 0, up: int = 1, down: int = 1) -> torch.Tensor:
    """``fn`` over folded frames ``xs`` (tensors ``(N, C, H, W)`` of one shape but channels) in pieces of at most
    ``budget`` pixels of their resolution: groups of whole frames (of at most ``budget / CACHE_SHARE`` pixels, for the
    cache), or one frame in strips of rows when a frame alone is larger. A strip reads ``halo`` more rows on each side
    (clipped at the frame's edges, where ``fn``'s own padding then applies as on the whole frame), so a strip's rows are
    the whole frame's when ``halo`` covers how far ``fn`` reaches vertically. ``fn`` maps ``down`` input rows to ``up``
    output rows; strips and ``halo`` are multiples of ``down``. Per-frame functions only (nothing that mixes frames or
    takes statistics over a frame)."""
    parts = in_pieces(fn, xs, budget, halo, up, down)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def in_pieces(fn, xs: list[torch.Tensor], budget: int, halo: int = 0, up: int = 1, down: int = 1) -> list:
    """``in_strips``' results before they are joined: one tensor a group of whole frames, or a single tensor of all
    frames when they run in strips (for a consumer that takes frames one by one: no copy into one tensor)."""
    n, _, h, w = xs[0].shape
    per = group_frames(xs[0], budget)
    if per >= n:
        return [fn(*xs)]
    if per >= 1:
        return [fn(*(x[i:i + per] for x in xs)) for i in range(0, n, per)]
    rows = max(down, budget // w // down * down)
    out = None
    for i in range(n):
        for a in range(0, h, rows):
            b = min(a + rows, h)
            a0, b0 = max(0, a - halo), min(h, b + halo)
            y = fn(*(x[i:i + 1, :, a0:b0] for x in xs))
            y = y[:, :, (a - a0) * up // down:(b - a0) * up // down]
            if out is None:
                out = y.new_empty((n, y.shape[1], h * up // down, y.shape[3]))
            out[i:i + 1, :, a * up // down:b * up // down] = y
    return [out]


def group_frames(x: torch.Tensor, budget: int) -> int:
    """How many of the folded frames ``x`` (``(N, C, H, W)``) ``in_strips`` takes at a time for ``budget`` pixels:
    at most ``budget / CACHE_SHARE`` pixels' worth, at least one frame; 0 when a frame alone is over ``budget``
    (strips of rows)."""
    per = budget // (x.shape[-2] * x.shape[-1])
    return max(1, per // CACHE_SHARE) if per >= 1 else 0


def from_bytes(u: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float in [-1, 1] (elementwise: a strip converts to exactly what the whole frame does)."""
    return u.float().div_(127.5).sub_(1.0)


def to_bytes(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in about [-1, 1] → uint8 (elementwise, like ``from_bytes``)."""
    return x.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def kept(x: torch.Tensor) -> torch.Tensor:
    """``x`` to keep beyond its chunk: ``x`` itself when it is all of its memory (a chunk of one frame), which so
    stays no larger than it is, else a copy, so that a view never keeps a whole chunk's activations alive."""
    if x.untyped_storage().nbytes() == x.numel() * x.element_size():
        return x
    return x.clone()


class Stream:
    """What the causal video layers carry from one chunk of frames to the next, so that a clip run chunk by chunk
    (``TaeVideoEncoder`` / ``TaeVideoDecoder`` with a ``Stream``) computes what it computes in one piece, in memory
    that does not grow with the clip's length: each previous-frame tap's last input frame, a temporal pool's frame
    still waiting for its partner (so chunks may hold any number of frames), and whether the stream has started
    (the first frame's special case in pooling and growth). What it keeps is never a view that would keep a whole
    chunk's activations alive (``kept``)."""

    def __init__(self):
        self.last: dict[int, torch.Tensor] = {}
        self.pending: dict[int, torch.Tensor] = {}
        self.started: set[int] = set()

    def take(self, layer: nn.Module, x: torch.Tensor, t: int) -> torch.Tensor | None:
        """The frame before this chunk for ``layer`` (None at the start); keeps this chunk's last frame."""
        before = self.last.get(id(layer))
        self.last[id(layer)] = kept(x[t - 1::t])  # a slice keeps x's strides, so its memory format too
        return before

    def first_chunk(self, layer: nn.Module) -> bool:
        """True once per layer: on the stream's first chunk."""
        if id(layer) in self.started:
            return False
        self.started.add(id(layer))
        return True


def as_bytes(video) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` (numpy or torch), checked, as a tensor (no copy where none is needed)."""
    if not isinstance(video, torch.Tensor):
        video = np.asarray(video)
        video = video if video.flags.writeable else video.copy()
    v = torch.as_tensor(video)
    if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != torch.uint8:
        raise ValueError(f"expected uint8 video of shape (T, H, W, 3), got {tuple(v.shape)} {v.dtype}")
    if v.shape[0] < 1:
        raise ValueError("video has no frames")
    return v


def as_frames(video) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` (numpy or torch) → float ``(1, 3, T, H, W)`` in [-1, 1]."""
    return from_bytes(as_bytes(video).permute(3, 0, 1, 2).unsqueeze(0))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3, T, H, W)`` float in [-1, 1] → uint8 ``(T, H, W, 3)`` numpy."""
    return to_bytes(x).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def stream_latents(encoder, pieces, n: int, device):
    """The streaming encoder's latent chunks ``(1, D, t', H', W')``, ``t' >= 1``, of uint8 frame pieces, fed
    as chunks of ``n`` frames; after the last piece the last frame repeats up to ``1 + 4k`` frames (temporal
    padding), and every chunk's edge pixels repeat up to the model's multiple (spatial)."""
    buf, t, stream = [], 0, Stream()

    def chunk(frames):
        _, hp, wp = padded_size(1, *frames.shape[1:3])
        if (hp, wp) != frames.shape[1:3]:  # spatial padding: edge pixels repeat
            frames = np.pad(frames, ((0, 0), (0, hp - frames.shape[1]), (0, wp - frames.shape[2]), (0, 0)),
                            mode="edge")
        u = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2)
        return encoder.stream_frames(u, stream)  # bytes in, converted strip by strip

    def full_chunks(final: bool):
        nonlocal buf
        have = sum(len(b) for b in buf)
        while have >= n or (final and have):
            frames = np.concatenate(buf) if len(buf) > 1 else buf[0]
            buf = [frames[n:]] if len(frames) > n else []
            have -= min(n, len(frames))
            z = chunk(frames[:n])
            if z.shape[2]:  # a frame waiting for its partner gives no latent frame yet
                yield z

    last = None
    for p in pieces:
        if len(p):
            buf.append(p)
            t += len(p)
            last = p[-1:]
            yield from full_chunks(False)
    if last is not None:
        pad = padded_size(t, 1, 1)[0] - t  # temporal padding: the last frame repeats
        if pad:
            buf.append(np.repeat(last, pad, 0))
        yield from full_chunks(True)
