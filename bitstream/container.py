"""The ``.vtok`` container: a versioned header and length-prefixed, CRC-checked units (one per GOP, plus audio).

``docs/BITSTREAM.md`` is the specification; this module follows it field by field (header, units, writer, reader in
the spec's order, hence its length). Bytes only: no pixels, no models.

>>> import io
>>> h = Header(width=64, height=48, frames=17, fps_num=30, fps_den=1, bits_per_token=18, model_bits=18,
...            gop=17, prob_bits=16, perfect=False, model_id="0123456789abcdef")
>>> buf = io.BytesIO()
>>> w = ContainerWriter(buf, h)
>>> w.write_unit(0, 0, 17, b"payload!")
>>> w.close()
>>> from vtok.bitstream.reader import ContainerReader
>>> r = ContainerReader(io.BytesIO(buf.getvalue()))
>>> r.header == h, [(u.gop_index, r.read_payload(u)) for u in r.units()]
(True, [(0, b'payload!')])

Reading, strict or tolerant of damage, is ``bitstream/reader.py``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import BinaryIO

from vtok.bitstream.errors import VtokError

MAGIC = b"VTOK"
VERSION = 3  # written; versions 1..3 are read (1: no coded size; 1 and 2: no colour fields, no audio units)

# Field limits: a header outside them is rejected before anything is allocated.
MAX_SIDE = 16384
MAX_FRAMES = 1 << 31
MAX_GOP = 1025
MAX_PAYLOAD = 1 << 30


class BitstreamError(VtokError, ValueError):
    """Base of every error about the bytes of a ``.vtok`` file."""


class BadMagic(BitstreamError):
    pass


class UnsupportedVersion(BitstreamError):
    pass


class HeaderOutOfRange(BitstreamError):
    pass


class CorruptData(BitstreamError):
    """A CRC does not match: the file was damaged."""


class Truncated(BitstreamError):
    """The file ends in the middle of a field or unit."""


class PixelFormat(IntEnum):
    RGB24 = 0


class CoderId(IntEnum):
    RANGE_CONSTRICTION_Q32 = 1  # constriction's queue RangeEncoder, 32-bit words, Categorical over {0, 1}


class UnitType(IntEnum):
    GOP = 1
    END = 2
    AUDIO_STREAMS = 3  # version 3: the audio streams' descriptions, before the first GOP unit
    AUDIO = 4  # version 3: audio packets of the time span of the GOP unit just before


UNSPECIFIED = 2  # ITU-T H.273's "unspecified" for colour primaries, transfer and matrix


_PREFIX = struct.Struct("<4sHH")  # magic, version, header body size
_BODY_V1 = struct.Struct("<IIIIIBBBHBBBB8s")
_CODED = struct.Struct("<II")  # version 2 appends the coded (tokenized) width and height
_COLOUR = struct.Struct("<BBBB")  # version 3 appends matrix, range, primaries, transfer
_BODY = {1: _BODY_V1.size, 2: _BODY_V1.size + _CODED.size, 3: _BODY_V1.size + _CODED.size + _COLOUR.size}
_UNIT = struct.Struct("<BIIHI")  # type, gop index, first frame, frame count, payload size
_END = struct.Struct("<II")  # GOP units, frames
_END_V3 = struct.Struct("<III")  # GOP units, frames, audio units
_GOP_PREFIX = struct.Struct("<Q")  # a GOP payload's cross-entropy under the prior, in 1/1024 bits
_CRC = struct.Struct("<I")
UNKNOWN_FRAMES = 0xFFFFFFFF
UNIT_OVERHEAD = _UNIT.size + _CRC.size  # bytes a unit adds around its payload (19)


@dataclass
class Header:
    """Every setting that changes the bits (see docs/BITSTREAM.md)."""

    width: int
    height: int
    frames: int
    fps_num: int
    fps_den: int
    bits_per_token: int
    model_bits: int
    gop: int
    prob_bits: int
    perfect: bool
    model_id: str  # 16 hex digits
    rate: int = 255  # rate-ladder index, 255: none
    coded_width: int = 0  # size the tokens describe (resolution scaling); 0: the frame size
    coded_height: int = 0
    # colour of the source (ITU-T H.273 code points, as FFmpeg numbers them): the decoder tags its output with them
    matrix: int = UNSPECIFIED
    full_range: bool = False
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    pixel_format: PixelFormat = PixelFormat.RGB24
    coder: CoderId = CoderId.RANGE_CONSTRICTION_Q32
    version: int = field(default=VERSION, compare=False)  # the format version read (always VERSION when written)

    def __post_init__(self):
        self.coded_width = self.coded_width or self.width
        self.coded_height = self.coded_height or self.height

    def pack(self) -> bytes:
        self.validate()
        body = _BODY_V1.pack(self.width, self.height, self.frames, self.fps_num, self.fps_den, int(self.pixel_format),
                             self.bits_per_token, self.model_bits, self.gop, int(self.coder), int(self.perfect),
                             self.prob_bits, self.rate, bytes.fromhex(self.model_id))
        body += _CODED.pack(self.coded_width, self.coded_height)
        body += _COLOUR.pack(self.matrix, int(self.full_range), self.primaries, self.transfer)
        head = _PREFIX.pack(MAGIC, VERSION, len(body)) + body
        return head + _CRC.pack(zlib.crc32(head))

    def validate(self) -> None:
        def need(ok, what):
            if not ok:
                raise HeaderOutOfRange(f"header field out of range: {what}")

        need(1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE,
             f"size {self.width}x{self.height} (1..{MAX_SIDE})")
        need(1 <= self.coded_width <= self.width and 1 <= self.coded_height <= self.height,
             f"coded size {self.coded_width}x{self.coded_height} (1..frame size)")
        need(1 <= self.frames < MAX_FRAMES or self.frames == UNKNOWN_FRAMES, f"frames {self.frames}")
        need(self.fps_num > 0 and self.fps_den > 0, f"frame rate {self.fps_num}/{self.fps_den}")
        need(1 <= self.model_bits <= 62 and 1 <= self.bits_per_token <= self.model_bits,
             f"bits per token {self.bits_per_token} of {self.model_bits}")
        need(1 <= self.gop <= MAX_GOP and (self.gop - 1) % 4 == 0, f"GOP length {self.gop} (1 + 4k, at most {MAX_GOP})")
        need(1 <= self.prob_bits <= 24, f"probability precision {self.prob_bits}")
        need(len(self.model_id) == 16 and all(c in "0123456789abcdef" for c in self.model_id),
             f"model id {self.model_id!r}")
        need(all(0 <= v <= 255 for v in (self.matrix, self.primaries, self.transfer)),
             f"colour code points {self.matrix}/{self.primaries}/{self.transfer}")
        need(self.pixel_format in PixelFormat.__members__.values(), f"pixel format {self.pixel_format}")
        need(self.coder in CoderId.__members__.values(), f"coder {self.coder}")

    @classmethod
    def unpack(cls, f: BinaryIO) -> "Header":
        raw = _read(f, _PREFIX.size, "file header")
        magic, version, size = _PREFIX.unpack(raw)
        if magic != MAGIC:
            raise BadMagic("not a .vtok file (wrong magic bytes)")
        if version not in _BODY:
            raise UnsupportedVersion(f".vtok format version {version} is not supported (this vtok reads versions "
                                     f"{', '.join(map(str, _BODY))}): use a vtok release that supports it")
        if size != _BODY[version]:
            raise CorruptData(f"header size {size} does not match format version {version}")
        body = _read(f, size, "file header")
        (crc,) = _CRC.unpack(_read(f, _CRC.size, "header checksum"))
        if zlib.crc32(raw + body) != crc:
            raise CorruptData("header checksum mismatch: the file is damaged")
        (w, h, frames, fn, fd, pf, bpt, mb, gop, coder, perfect, pb, rate, mid) = _BODY_V1.unpack_from(body)
        cw, ch = _CODED.unpack_from(body, _BODY_V1.size) if version >= 2 else (w, h)
        colour = _COLOUR.unpack_from(body, _BODY_V1.size + _CODED.size) if version >= 3 else \
            (UNSPECIFIED, 0, UNSPECIFIED, UNSPECIFIED)
        try:
            pf, coder = PixelFormat(pf), CoderId(coder)
        except ValueError:
            raise HeaderOutOfRange(f"unknown pixel format {pf} or coder {coder}") from None
        if perfect > 1:
            raise HeaderOutOfRange(f"coder flag 'perfect' must be 0 or 1, got {perfect}")
        if cw == 0 or ch == 0:
            raise HeaderOutOfRange(f"header field out of range: coded size {cw}x{ch}")
        if colour[1] > 1:
            raise HeaderOutOfRange(f"colour range flag must be 0 or 1, got {colour[1]}")
        hdr = cls(w, h, frames, fn, fd, bpt, mb, gop, pb, bool(perfect), mid.hex(), rate, cw, ch, colour[0],
                  bool(colour[1]), colour[2], colour[3], pf, coder)
        hdr.version = version
        hdr.validate()
        return hdr


@dataclass
class Unit:
    kind: UnitType
    gop_index: int
    first_frame: int
    frames: int
    payload_size: int
    offset: int  # file offset of the payload
    head: bytes  # the unit header bytes (covered by the CRC)


def _read(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise Truncated(f"the file is truncated (in the {what})")
    return data


class ContainerWriter:
    """Writes the header, then one unit per ``write_unit`` call, then an END unit on ``close()``.

    With ``header.frames == UNKNOWN_FRAMES`` the frame count is patched into the header on ``close()`` (the output
    must be seekable).
    """

    def __init__(self, f: BinaryIO, header: Header):
        self.f, self.header = f, header
        self.start = f.tell()
        f.write(header.pack())
        self.units = 0
        self.frames = 0
        self.audio_units = 0
        self.audio_bytes = 0  # audio units' bytes in the file (headers, payloads, CRCs)

    def _unit(self, kind: UnitType, index: int, first_frame: int, frames: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise BitstreamError("unit payload too large")
        head = _UNIT.pack(kind, index, first_frame, frames, len(payload))
        self.f.write(head)
        self.f.write(payload)
        self.f.write(_CRC.pack(zlib.crc32(payload, zlib.crc32(head))))

    def write_unit(self, gop_index: int, first_frame: int, frames: int, payload: bytes) -> None:
        self._unit(UnitType.GOP, gop_index, first_frame, frames, payload)
        self.units += 1
        self.frames += frames

    def write_audio_streams(self, payload: bytes) -> None:
        """The audio streams' descriptions (``bitstream.audio.pack_streams``): once, before the first GOP unit."""
        if self.units or self.audio_units:
            raise BitstreamError("the audio stream descriptions must come before the first GOP unit")
        self._unit(UnitType.AUDIO_STREAMS, 0, 0, 0, payload)
        self.audio_units += 1
        self.audio_bytes += len(payload) + UNIT_OVERHEAD

    def write_audio(self, payload: bytes) -> None:
        """Audio packets (``bitstream.audio.pack_packets``) of the span of the GOP unit written last."""
        if not self.units or not self.audio_units:
            raise BitstreamError("audio packets follow a GOP unit, after the audio stream descriptions")
        self._unit(UnitType.AUDIO, self.units - 1, 0, 0, payload)
        self.audio_units += 1
        self.audio_bytes += len(payload) + UNIT_OVERHEAD

    def close(self) -> None:
        body = _END_V3.pack(self.units, self.frames, self.audio_units)
        head = _UNIT.pack(UnitType.END, self.units, self.frames, 0, len(body))
        self.f.write(head + body + _CRC.pack(zlib.crc32(body, zlib.crc32(head))))
        if self.header.frames == UNKNOWN_FRAMES:
            end = self.f.tell()
            self.header.frames = self.frames
            self.f.seek(self.start)
            self.f.write(self.header.pack())
            self.f.seek(end)
        elif self.header.frames != self.frames:
            raise BitstreamError(f"header says {self.header.frames} frames but {self.frames} were written")


def reseal(data: bytes) -> bytes:
    """The same bytes with every checksum recomputed wherever the structure can still be followed (the header, then
    unit after unit by their size fields). For fuzzing: a mutated file then gets past the CRCs to the parsers and
    decoders behind them."""
    b = bytearray(data)
    if len(b) < _PREFIX.size:
        return bytes(b)
    end = _PREFIX.size + _PREFIX.unpack_from(b)[2]
    if end + _CRC.size > len(b):
        return bytes(b)
    _CRC.pack_into(b, end, zlib.crc32(bytes(b[:end])))
    off = end + _CRC.size
    while off + _UNIT.size <= len(b):
        size = _UNIT.unpack_from(b, off)[4]
        stop = off + _UNIT.size + size
        if stop + _CRC.size > len(b):
            break
        _CRC.pack_into(b, stop, zlib.crc32(bytes(b[off + _UNIT.size:stop]), zlib.crc32(bytes(b[off:off + _UNIT.size]))))
        off = stop + _CRC.size
    return bytes(b)


def pack_gop_payload(cross_entropy_bits: float, words: bytes) -> bytes:
    """A GOP unit's payload: the prior's cross-entropy of its bits (1/1024 bit units), then the range coder's words."""
    return _GOP_PREFIX.pack(int(round(cross_entropy_bits * 1024))) + words


def unpack_gop_payload(payload: bytes) -> tuple[float, bytes]:
    """Inverse of ``pack_gop_payload``: (cross-entropy in bits, range-coded words)."""
    if len(payload) < _GOP_PREFIX.size:
        raise Truncated("unit payload too short: the file is damaged")
    return _GOP_PREFIX.unpack_from(payload)[0] / 1024, payload[_GOP_PREFIX.size:]
