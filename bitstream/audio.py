"""Payloads of the ``.vtok`` audio units (format version 3): stream descriptions and compressed packets.

Audio is carried as it came, never re-encoded: the packets' bytes and timestamps, and for each stream what a muxer
needs to write it again. docs/BITSTREAM.md is the specification; bytes only (the description blob is opaque here).

>>> streams = [AudioStream(codec="aac", sample_rate=48000, channels=2, time_base=(1, 48000))]
>>> unpack_streams(pack_streams(streams, b"mkv")) == (streams, b"mkv")
True
>>> pk = [AudioPacket(stream=0, pts=-1024, dts=-1024, duration=1024, keyframe=True, data=b"\\x01\\x02",
...                    side_data=((11, b"\\x00\\x04" + bytes(8)),))]
>>> unpack_packets(pack_packets(pk), 1) == pk
True
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vtok.bitstream.container import CorruptData, HeaderOutOfRange

MAX_STREAMS = 32
_COUNT = struct.Struct("<B")
_STREAM = struct.Struct("<IBII")  # sample rate, channels, time base numerator, denominator
_BLOB = struct.Struct("<I")
_PACKETS = struct.Struct("<I")
_PACKET = struct.Struct("<BqqIBIB")  # stream, pts, dts, duration, flags (bit 0: key frame), size, side data count
_SIDE = struct.Struct("<BI")  # side data type (FFmpeg's AVPacketSideDataType number), size
NO_TS = -(1 << 63)  # a packet without a timestamp


@dataclass
class AudioStream:
    """One audio stream: its codec's FFmpeg name, sample rate, channels and the time base of its timestamps."""

    codec: str
    sample_rate: int
    channels: int
    time_base: tuple[int, int]


@dataclass
class AudioPacket:
    """One compressed packet of stream ``stream``; timestamps in that stream's time base (``NO_TS``: none).

    ``side_data``: the packet's side data as ``(type, bytes)`` pairs (e.g. how many decoded samples to skip at the
    start or end: without them a copy would not decode to the same samples).
    """

    stream: int
    pts: int
    dts: int
    duration: int
    keyframe: bool
    data: bytes
    side_data: tuple = ()


def packet_seconds(p: AudioPacket, streams: list[AudioStream]) -> float:
    """A packet's time in seconds (its pts, or its dts when it has no pts), in its stream's time base."""
    num, den = streams[p.stream].time_base
    return (p.pts if p.pts != NO_TS else p.dts) * num / den


def pack_streams(streams: list[AudioStream], description: bytes) -> bytes:
    """The AUDIO_STREAMS payload: the streams, then ``description`` (a Matroska file with their codec parameters)."""
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise HeaderOutOfRange(f"1..{MAX_STREAMS} audio streams, got {len(streams)}")
    out = [_COUNT.pack(len(streams))]
    for s in streams:
        name = s.codec.encode("ascii")
        if not 1 <= len(name) <= 255:
            raise HeaderOutOfRange(f"audio codec name {s.codec!r}")
        out += [_COUNT.pack(len(name)), name, _STREAM.pack(s.sample_rate, s.channels, *s.time_base)]
    out += [_BLOB.pack(len(description)), description]
    return b"".join(out)


def unpack_streams(payload: bytes) -> tuple[list[AudioStream], bytes]:
    """Inverse of ``pack_streams``."""
    try:
        (n,), off = _COUNT.unpack_from(payload), _COUNT.size
        streams = []
        for _ in range(n):
            (size,) = _COUNT.unpack_from(payload, off)
            name = payload[off + 1:off + 1 + size].decode("ascii")
            off += 1 + size
            rate, channels, num, den = _STREAM.unpack_from(payload, off)
            off += _STREAM.size
            if len(name) != size or num == 0 or den == 0:
                raise ValueError
            streams.append(AudioStream(name, rate, channels, (num, den)))
        (size,) = _BLOB.unpack_from(payload, off)
        off += _BLOB.size
        if not 1 <= n <= MAX_STREAMS or off + size != len(payload):
            raise ValueError
        return streams, payload[off:]
    except (struct.error, ValueError, UnicodeDecodeError):
        raise CorruptData("audio stream descriptions are malformed: the file is damaged") from None


def pack_packets(packets: list[AudioPacket]) -> bytes:
    """An AUDIO payload: the packet count, then each packet's fields and bytes."""
    out = [_PACKETS.pack(len(packets))]
    for p in packets:
        out += [_PACKET.pack(p.stream, p.pts, p.dts, p.duration, int(p.keyframe), len(p.data), len(p.side_data)),
                p.data]
        for kind, data in p.side_data:
            out += [_SIDE.pack(kind, len(data)), data]
    return b"".join(out)


def unpack_packets(payload: bytes, streams: int) -> list[AudioPacket]:
    """Inverse of ``pack_packets``; ``streams`` is the number of described streams."""
    try:
        (n,), off = _PACKETS.unpack_from(payload), _PACKETS.size
        out = []
        for _ in range(n):
            s, pts, dts, dur, flags, size, sides = _PACKET.unpack_from(payload, off)
            off += _PACKET.size
            data = payload[off:off + size]
            off += size
            side = []
            for _ in range(sides):
                kind, n = _SIDE.unpack_from(payload, off)
                side.append((kind, payload[off + _SIDE.size:off + _SIDE.size + n]))
                off += _SIDE.size + n
                if len(side[-1][1]) != n:
                    raise ValueError
            if s >= streams or flags > 1 or len(data) != size:
                raise ValueError
            out.append(AudioPacket(s, pts, dts, dur, bool(flags), data, tuple(side)))
        if off != len(payload):
            raise ValueError
        return out
    except (struct.error, ValueError):
        raise CorruptData("an audio unit is malformed: the file is damaged") from None
