"""The integer token prior's convolutions as int8 matrix products: the same integers as its float path, faster.

``IntegerPrior`` (``codec/integer_prior.py``) holds integers in float tensors so that every sum is exact. Its weights
are int8 by construction and its activations 8-bit (0 .. ``ACT_MAX``), so the products can also run as they are: an
int8 × int8 matrix product accumulated in int32 (``torch._int_mm``; oneDNN's VNNI / AMX kernels on x86), which has
a quarter of float32's work per product. Integer sums do not depend on order either, so the logits, the
probabilities and the coded bytes are the float path's exactly (tests compare them step by step and file by file).

How: a 3×3 convolution is an im2col (one copy of a strided view of the padded channels-last frame) times the
weights as a ``(9·C_in, C_out)`` matrix. Activations are shifted into int8 (``a − 128``); the shift returns as a
per-output constant ``128·Σw`` added to the bias, and the zero padding of ``a`` becomes −128 padding of the shifted
values, so every sum equals the float path's. Requantization is an arithmetic shift
(``floor((acc + 2^(s−1)) / 2^s)``).

Kernels that sum pairs of products in int16 (int8 GEMMs on CPUs without VNNI may) would saturate instead of being
exact: ``available()`` checks the kernel once per process at extreme values and against float64, and that it is
faster than the float path's convolution; the float path runs when either fails.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch
import torch.nn.functional as F

SHIFT = 128  # activations 0..255 → int8 -128..127
BAND = 4096  # positions per im2col: at most 4096 × 9 × C_in bytes at once, whatever the frame size


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether ``torch._int_mm`` computes exact int32 sums here (CPU): at the extremes where a pairwise int16
    accumulation would saturate, and on random values, against float64 — and is faster than float32 at a layer's
    size (a build without int8 kernels may fall back to a plain loop); a few milliseconds, once per process."""
    if not hasattr(torch, "_int_mm"):
        return False
    return _exact_sums() and _faster()


def _best_seconds(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _faster() -> bool:
    """A 3×3 96→96 layer at 45 × 80 latents (a 640×360 frame's) as an int8 product, its im2col included, against
    the float path's float32 convolution."""
    x = torch.zeros(1, 47, 82, 96, dtype=torch.int8)
    mat = torch.ones(864, 96, dtype=torch.int8)
    xf = torch.zeros(1, 96, 45, 80).contiguous(memory_format=torch.channels_last)
    wf = torch.ones(96, 96, 3, 3).contiguous(memory_format=torch.channels_last)
    return _best_seconds(lambda: _product(x, mat)) < _best_seconds(lambda: F.conv2d(xf, wf, padding=1))


def _exact_sums() -> bool:
    g = torch.Generator().manual_seed(0)
    cases = [(torch.full((24, 256), 127, dtype=torch.int8), torch.full((256, 16), 127, dtype=torch.int8)),
             (torch.full((24, 256), -128, dtype=torch.int8), torch.full((256, 16), -127, dtype=torch.int8)),
             (torch.full((24, 256), -128, dtype=torch.int8), torch.full((256, 16), 127, dtype=torch.int8)),
             (torch.randint(-128, 128, (37, 864), generator=g).to(torch.int8),
              torch.randint(-127, 128, (864, 9), generator=g).to(torch.int8))]
    try:
        return all(torch.equal(torch._int_mm(a, b).double(), a.double() @ b.double()) for a, b in cases)
    except (RuntimeError, NotImplementedError):
        return False


def _cols(x: torch.Tensor, parity: tuple[int, int] | None = None) -> torch.Tensor:
    """im2col of a padded channels-last int8 frame ``(B, H+2, W+2, C)`` → ``(B·h·w, 9·C)`` (rows: positions in
    raster order; columns: ``(dy, dx, c)``), at every position or at rows ``r::2`` and columns ``c::2`` of
    ``parity = (r, c)``."""
    b, hp, wp, c = x.shape
    sb, sh, sw, _ = x.stride()
    h, w = hp - 2, wp - 2
    if parity is None:
        view = x.as_strided((b, h, w, 3, 3, c), (sb, sh, sw, sh, sw, 1), x.storage_offset())
    else:
        r, cl = parity
        view = x.as_strided((b, len(range(r, h, 2)), len(range(cl, w, 2)), 3, 3, c), (sb, 2 * sh, 2 * sw, sh, sw, 1),
                            x.storage_offset() + r * sh + cl * sw)
    return view.reshape(-1, 9 * c).contiguous()  # a copy: reshape keeps a view of overlapping rows when w == 1


def _framed(x: np.ndarray) -> torch.Tensor:
    """int8 planes ``(C, H, W)`` → the padded channels-last frame ``(1, H+2, W+2, C)`` that ``_cols`` reads (a zero
    border)."""
    return F.pad(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 2, 0)))[None], (0, 0, 1, 1, 1, 1))


def _product(x: torch.Tensor, mat: torch.Tensor, parity: tuple[int, int] | None = None) -> torch.Tensor:
    """``_cols(x, parity) @ mat`` (int32), in bands of an even number of rows of about ``BAND`` positions, so that
    the im2col copy stays small at any frame size (bands keep the row parity and the raster order)."""
    h, w = x.shape[1] - 2, x.shape[2] - 2
    rows = max(2, BAND // max(w, 1) // 2 * 2)
    if h <= rows:
        return torch._int_mm(_cols(x, parity), mat)
    first = parity[0] if parity else 0  # a band's first row of the parity; a one-row band may hold none
    return torch.cat([torch._int_mm(_cols(x[:, r:r + rows + 2], parity), mat) for r in range(0, h, rows)
                      if min(rows, h - r) > first])


class Int8Convs:
    """An ``IntegerPrior``'s layers as int8 matrices (``(9·C_in, C_out)``; the output layer ``(C_in, C_out)``) with
    int32 offsets: the bias, ``128·Σw`` for layers that read shifted activations, and for hidden layers the
    requantization's rounding and the next shift (``requant(acc) − 128 = (acc + 2^(s−1) − 128·2^s) >> s``), so a
    hidden layer's output is the next layer's int8 input after one add, one shift and one clamp."""

    def __init__(self, weights: list, biases: list, shifts: list):
        self.mats, self.offsets, self.shifts = [], [], [max(int(s), 0) for s in shifts]
        self.scales = [1 << max(-int(s), 0) for s in shifts]  # s <= 0: acc · 2^−s (no rounding)
        last = len(weights) - 1
        for i, (w, b) in enumerate(zip(weights, biases)):
            m = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).round().to(torch.int64)
            off = b.round().to(torch.int64) + (SHIFT * m.sum(0) if i else 0)
            sh = self.shifts[i]
            off = off * self.scales[i] + ((1 << (sh - 1)) if sh else 0) - (0 if i == last else SHIFT << sh)
            self.mats.append(m.to(torch.int8).contiguous())
            self.offsets.append(off.to(torch.int32))
        self.in_channels = weights[0].shape[1]
        self._columns = {}

    @staticmethod
    def fits(weights: list, biases: list, shifts: list, act_max: int) -> bool:
        """int8 weights, 8-bit activations and int32 sums (with the offsets) that cannot overflow."""
        if act_max != 255 or any(w.abs().max() > 127 for w in weights):
            return False
        bound = max((float(w.abs().sum((1, 2, 3)).max()) * (2 * SHIFT if i else 2) + float(b.abs().max()))
                    * 2 ** max(-int(s), 0) + 2 ** (abs(int(s)) + 8)
                    for i, (w, b, s) in enumerate(zip(weights, biases, shifts)))
        return 2 * bound < 2 ** 31

    def _activations(self, acc: torch.Tensor, i: int, lo: int = -SHIFT, hi: int = 255 - SHIFT,
                     offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Layer ``i``'s sums (without offsets; changed in place) → its outputs: shifted activations (hidden) or
        logits (``lo``, ``hi`` and the ``offsets`` of the output channels computed), int32."""
        if self.scales[i] > 1:
            acc.mul_(self.scales[i])
        off = self.offsets[i] if offsets is None else offsets
        return acc.add_(off).bitwise_right_shift_(self.shifts[i]).clamp_(lo, hi)

    def first(self, x: np.ndarray, local, incremental: bool) -> torch.Tensor:
        """The first layer's shifted activations ``(H·W, C_out)`` of an integer context ``(C_in, H, W)`` (int8,
        {-1, 0, 1}); ``incremental``: its sums from this thread's last ones plus the change on the channels that
        changed, when fewer than half did (the same integers)."""
        c = x.shape[0]
        last = getattr(local, "first8", None) if incremental else None
        sums = None
        if last is not None and last[0].shape == x.shape:
            changed = np.flatnonzero((x != last[0]).reshape(c, -1).any(1))
            if not len(changed):
                sums = last[1]
            elif 2 * len(changed) < c:
                rows = self.mats[0].view(9, c, -1)[:, torch.from_numpy(changed)].reshape(9 * len(changed), -1)
                sums = last[1] + _product(_framed(x[changed] - last[0][changed]), rows)
        if sums is None:
            sums = _product(_framed(x), self.mats[0])
        if incremental:
            local.first8 = (x, sums)
        return self._activations(sums.clone(), 0)

    def hidden(self, a: torch.Tensor, i: int, size: tuple[int, int], local, parity=None) -> torch.Tensor:
        """3×3 layer ``i`` on shifted activations ``a`` (int32 ``(H·W, C)``) → its shifted activations (at
        ``parity``'s positions only, when given)."""
        h, w = size
        buffers = local.__dict__.setdefault("buffers", {})  # this thread's
        key = (h, w, a.shape[1])
        if key not in buffers:  # the border stays -128 (zero activations); the inside is written every call
            buffers[key] = torch.full((1, h + 2, w + 2, a.shape[1]), -SHIFT, dtype=torch.int8)
        buf = buffers[key]
        buf[0, 1:-1, 1:-1] = a.view(h, w, -1)
        return self._activations(_product(buf, self.mats[i], parity), i)

    def _out(self, start: int, end: int) -> torch.Tensor:
        """The output layer's columns for bits ``start .. end - 1``, contiguous (made once per range)."""
        key = (start, end)
        if key not in self._columns:
            self._columns[key] = self.mats[-1][:, start:end].contiguous()
        return self._columns[key]

    def output(self, a: torch.Tensor, start: int, end: int, logit_max: int) -> torch.Tensor:
        """The 1×1 output layer for bits ``start .. end - 1`` on shifted activations → int32 logits
        ``(n, end - start)``."""
        acc = torch._int_mm(a.to(torch.int8), self._out(start, end))
        return self._activations(acc, len(self.mats) - 1, -logit_max, logit_max, self.offsets[-1][start:end])
