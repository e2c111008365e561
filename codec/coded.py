"""An open ``.vtok`` stream as the codec sees it: header, GOP units, audio, and — for a damaged file — which frames
were lost and why.

``CodedFile(f)`` refuses a damaged file at its first damage (``strict``, the Python API's default); ``CodedFile(f,
strict=False)`` keeps every intact unit (``ContainerReader.scan``) and lays the file out as ``slots``: one per GOP
of the header's frame count, each with its unit or None where the unit was lost. ``problems`` turns the damage into
one sentence a run of lost GOPs (naming their frames), plus one for damage that lost no frames (audio, the end unit).
``pieces_of`` and ``concealed`` are how a decoder fills the lost GOPs (``Codec.decompress_from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from vtok.bitstream.audio import packet_seconds, unpack_packets, unpack_streams
from vtok.bitstream.errors import VtokError
from vtok.bitstream.container import UNKNOWN_FRAMES, Header, Unit, UnitType
from vtok.bitstream.reader import ContainerReader
from vtok.codec.media.read import resize_frames


# Decoded frame area refused unless the caller lifts it (like Pillow's MAX_IMAGE_PIXELS): 36 Mi pixels holds 8K
# (7680×4320 and 8192×4320) with room to spare; a header may claim up to 16384×16384.
DEFAULT_MAX_PIXELS = 36 * 1024 * 1024


class FrameTooLarge(VtokError, ValueError):
    """A ``.vtok`` file's frames are larger than the decoder is allowed to allocate."""


def check_frame_area(header: Header, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, before any allocation, a file whose frames (or coded frames) exceed ``max_pixels``."""
    area = header.width * header.height
    if area > max_pixels:
        raise FrameTooLarge(f"the file's frames are {header.width}x{header.height} ({area} pixels), above the limit of "
                            f"{max_pixels} pixels: pass `max_pixels={area}` to decode it if you trust the file")


@dataclass
class Slot:
    """One GOP of a file: ``frames`` frames from ``first_frame``; ``unit`` None where it was lost."""

    gop_index: int
    first_frame: int
    frames: int
    unit: Unit | None


@dataclass
class Problem:
    """Damage a person is told about: frames ``first .. end - 1`` lost (both None: no frames were lost) and why."""

    first: int | None
    end: int | None
    reason: str

    def line(self) -> str:
        if self.first is None:
            return self.reason
        span = f"frame {self.first}" if self.end - self.first == 1 else f"frames {self.first}-{self.end - 1}"
        return f"{span} lost ({self.reason})"


class CodedFile:
    """An open ``.vtok`` stream: its header, GOP units and audio (stream descriptions and packets per GOP).

    ``strict``: raise at the first damage (``Truncated``/``CorruptData``, naming the unit and its byte offset);
    otherwise keep what is intact (``damage``, ``slots``, ``problems``)."""

    def __init__(self, f: BinaryIO, strict: bool = True):
        self.reader = ContainerReader(f)
        self.header = self.reader.header
        self.strict = strict
        if strict:
            self.units, self.damage = list(self.reader.units()), []
        else:
            found = self.reader.scan()
            self.units, self.damage = found.units, found.damage
        self.streams, self.description = [], b""
        audio = self.reader.audio_units
        if audio and audio[0].kind == UnitType.AUDIO_STREAMS:
            self.streams, self.description = unpack_streams(self.reader.read_payload(audio[0]))

    @property
    def frames(self) -> int:
        """The header's frame count (for a file whose header never got it, the frames of its intact units)."""
        if self.header.frames != UNKNOWN_FRAMES:
            return self.header.frames
        return self.units[-1].first_frame + self.units[-1].frames if self.units else 0

    def slots(self, start: int = 0, end: int | None = None) -> Iterator[Slot]:
        """The GOPs that hold frames ``start .. end - 1`` (default: all) in order, with their unit, or None where
        it was lost (an iterator: a damaged header may claim billions of frames)."""
        by_index = {u.gop_index: u for u in self.units}
        g, total = self.header.gop, self.frames
        end = total if end is None else min(end, total)
        return (Slot(i, i * g, min(g, total - i * g), by_index.get(i)) for i in range(start // g, -(-end // g)))

    def problems(self) -> list[Problem]:
        """One ``Problem`` per run of lost GOPs (its frames, and what damage lies where they stood), then one per
        damaged stretch that lost no frames (audio packets, the end unit)."""
        g, total = self.header.gop, self.frames
        left, out = list(self.damage), []
        bounds = [(-1, 0)] + [(u.gop_index, u.offset) for u in self.units] + [(-(-total // g), float("inf"))]
        for (a, lo), (b, hi) in zip(bounds, bounds[1:]):
            if b - a <= 1:
                continue
            here = [d for d in left if lo <= d.start < hi]
            left = [d for d in left if d not in here]
            why = "; ".join(d.reason for d in here) or "missing"
            out.append(Problem((a + 1) * g, min(b * g, total), why))
        return out + [Problem(None, None, d.reason) for d in left]

    def audio_packets(self, gop_index: int) -> list:
        out = []
        for au in self.reader.audio_units[1:]:
            if au.gop_index == gop_index:
                out += unpack_packets(self.reader.read_payload(au), len(self.streams))
        return out

    def audio_of(self, slot: "Slot", start: int, t_lo: float, t_hi: float) -> list:
        """The audio packets that go with ``slot``'s frames of a range starting at frame ``start`` and spanning
        ``t_lo .. t_hi`` seconds. A cut keeps the packets a player needs for its first sample: the one that holds it
        and those of the codec's pre-roll before it (they may sit in the previous GOP's audio unit)."""
        if not self.streams:
            return []
        candidates = self.audio_packets(slot.gop_index)
        if slot.first_frame <= start and slot.gop_index > 0 and t_lo > -float("inf"):
            candidates = self.audio_packets(slot.gop_index - 1) + candidates
        return [p for p in candidates if self.seconds(p) + self.preroll(p) > t_lo and self.seconds(p) < t_hi]

    def seconds(self, p) -> float:
        return packet_seconds(p, self.streams)

    def preroll(self, p) -> float:
        """Seconds before a cut whose packets must come along so that the first kept sample decodes as it did:
        the packet's own length (it may start before the cut; AAC also needs one frame before it for its overlap),
        and for Opus the 80 ms pre-roll of RFC 7845 on top."""
        st = self.streams[p.stream]
        length = p.duration * st.time_base[0] / st.time_base[1]
        return 2 * length + (0.08 if st.codec == "opus" else 0.0)


def pieces_of(decoded, slot: Slot, coded: CodedFile, on_damage) -> Iterator[np.ndarray]:
    """A slot's decoded pieces; a strict file raises an error that stops them, naming the GOP unit; otherwise the
    error goes to ``on_damage`` and the pieces end where it struck (the rest is concealed)."""
    at = 0
    try:
        if isinstance(decoded, VtokError):
            raise decoded
        for video in decoded:
            at += len(video)
            yield video
    except VtokError as e:
        if coded.strict:
            raise type(e)(f"GOP unit {slot.gop_index}: {e}") from None
        if on_damage is not None:
            on_damage(slot.first_frame + at, slot.first_frame + slot.frames,
                      f"GOP unit {slot.gop_index} does not decode: {e}")


def concealed(pieces: Iterator[np.ndarray], frames: int, last) -> Iterator[np.ndarray]:
    """``pieces``, then, if they hold fewer than ``frames`` frames, the rest as repeats of ``last()`` (read-only
    views, eight frames at a time)."""
    n = 0
    for video in pieces:
        n += len(video)
        yield video
    while n < frames:
        k = min(8, frames - n)
        yield np.broadcast_to(last(), (k,) + last().shape)
        n += k


def at_file_size(video: np.ndarray, h: Header) -> np.ndarray:
    """Decoded frames at the coded size → at the file's size (a rate point coded at a reduced size is scaled back)."""
    if (h.coded_width, h.coded_height) == (h.width, h.height):
        return video
    return resize_frames(video, (h.width, h.height))
