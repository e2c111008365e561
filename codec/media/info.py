"""What the media modules share: the error they raise and what they know of a video (its size, rate, colour).

Plain data only, so that reading, writing and audio can all use it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from vtok.bitstream.errors import VtokError


class VideoError(VtokError, ValueError):
    """A video file cannot be read or written; the message says why, in one line."""


@dataclass
class Colour:
    """A colour description in ITU-T H.273 code points as FFmpeg numbers them (2 = unspecified)."""

    matrix: int = 2
    full_range: bool = False
    primaries: int = 2
    transfer: int = 2


@dataclass
class VideoInfo:
    """What ``probe`` finds. ``width``/``height`` are as displayed (after ``rotation``, degrees counter-clockwise)."""

    width: int
    height: int
    fps: Fraction
    frames: int | None  # None when the container does not say
    colour: Colour = field(default_factory=Colour)
    rotation: int = 0
    bit_depth: int = 8
    variable_rate: bool = False
