"""The rate ladder of one model: which picture size and how many bits of every token each ``--rate`` codes.

Nested dropout (Rippel et al., arXiv 1402.0915) lets the first ``k`` bits of a token decode alone (the bit ladder);
below it, resolution scaling codes a smaller picture with whole tokens (docs/RATE.md compares the two).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

LADDER_SCALES = (0.25, 0.375, 0.5)  # coded-size scales below the bit ladder, each with full tokens


@dataclass(frozen=True)
class RatePoint:
    """One point of the rate ladder: code the clip at ``scale`` × its size with the first ``bits`` bits per token."""

    scale: float
    bits: int


def bit_ladder(tok) -> list[int]:
    """Bits per token of the tokenizer's own bit ladder, from the fewest to the full token: seven points spaced
    geometrically between ``cfg.min_bits`` and ``bits`` (for 18 bits: 2, 3, 4, 6, 9, 12, 18); a model trained
    without nested dropout has the full token only. ``tok``: a ``VideoTokenizer``."""
    if tok.cfg.nested_dropout <= 0:
        return [tok.bits]
    lo = max(1, min(tok.cfg.min_bits, tok.bits))
    return sorted({round(lo * (tok.bits / lo) ** (i / 6)) for i in range(7)})


def rate_ladder(tok) -> list[RatePoint]:
    """``vtok compress --rate N`` picks ``rate_ladder(tok)[N]``; rate 0 is the smallest file.

    A model file may carry its own ladder (metadata ``rate_ladder``: a JSON list of ``[scale, bits]``, chosen from
    measurements so that bpp and quality rise with every step; the default model's is in docs/RATE.md). It does not
    change any coded bit: the header records the coded size and bits of the rate used. Otherwise: resolution scaling
    first (``LADDER_SCALES`` × the frame size, every bit of the token; the decoder resizes back),
    then the tokenizer's bit ladder at full size without its smallest point (at the same rate the half-size picture
    is 1.6 dB better in PSNR; docs/RATE.md). For 18-bit tokens: 9 points, 1/4, 3/8, 1/2 size, then 3, 4, 6, 9, 12, 18
    bits. A model trained without nested dropout has its full token and the three scales. ``tok``: a
    ``VideoTokenizer``.
    """
    own = tok.meta.get("rate_ladder")
    if own:
        points = [RatePoint(float(s), int(b)) for s, b in json.loads(own)]
        if any(not 0 < p.scale <= 1 or not 1 <= p.bits <= tok.bits for p in points):
            raise ValueError(f"the model's rate ladder {own} does not fit its {tok.bits}-bit tokens")
        return points
    bits = bit_ladder(tok)
    return [RatePoint(s, tok.bits) for s in LADDER_SCALES] + [RatePoint(1.0, k) for k in bits[1:] or bits]


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size a clip of ``width`` × ``height`` is coded at for ``scale``: even sides, at least 8, at most the frame."""
    if scale >= 1:
        return width, height

    def side(n):
        return min(n, max(8, round(n * scale / 2) * 2))

    return side(width), side(height)
