"""The ``.vtok`` container: a versioned header and one length-prefixed, CRC-checked unit per GOP.

``docs/BITSTREAM.md`` is the specification; this module follows it field by field. Bytes only: no pixels, no models.

>>> import io
>>> h = Header(width=64, height=48, frames=17, fps_num=30, fps_den=1, bits_per_token=18, model_bits=18,
...            gop=17, prob_bits=16, perfect=False, model_id="0123456789abcdef")
>>> buf = io.BytesIO()
>>> w = ContainerWriter(buf, h)
>>> w.write_unit(0, 0, 17, b"payload!")
>>> w.close()
>>> r = ContainerReader(io.BytesIO(buf.getvalue()))
>>> r.header == h, [(u.gop_index, r.read_payload(u)) for u in r.units()]
(True, [(0, b'payload!')])
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import BinaryIO, Iterator

MAGIC = b"VTOK"
VERSION = 2  # written; versions 1 and 2 are read (version 1 has no coded size: it equals the frame size)

# Field limits: a header outside them is rejected before anything is allocated.
MAX_SIDE = 16384
MAX_FRAMES = 1 << 31
MAX_GOP = 1025
MAX_PAYLOAD = 1 << 30


class BitstreamError(ValueError):
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


_PREFIX = struct.Struct("<4sHH")  # magic, version, header body size
_BODY_V1 = struct.Struct("<IIIIIBBBHBBBB8s")
_CODED = struct.Struct("<II")  # version 2 appends the coded (tokenized) width and height
_BODY = {1: _BODY_V1.size, 2: _BODY_V1.size + _CODED.size}
_UNIT = struct.Struct("<BIIHI")  # type, gop index, first frame, frame count, payload size
_END = struct.Struct("<II")  # GOP units, frames
_CRC = struct.Struct("<I")
UNKNOWN_FRAMES = 0xFFFFFFFF


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
    pixel_format: PixelFormat = PixelFormat.RGB24
    coder: CoderId = CoderId.RANGE_CONSTRICTION_Q32

    def __post_init__(self):
        self.coded_width = self.coded_width or self.width
        self.coded_height = self.coded_height or self.height

    def pack(self) -> bytes:
        self.validate()
        body = _BODY_V1.pack(self.width, self.height, self.frames, self.fps_num, self.fps_den, int(self.pixel_format),
                             self.bits_per_token, self.model_bits, self.gop, int(self.coder), int(self.perfect),
                             self.prob_bits, self.rate, bytes.fromhex(self.model_id))
        body += _CODED.pack(self.coded_width, self.coded_height)
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
        try:
            pf, coder = PixelFormat(pf), CoderId(coder)
        except ValueError:
            raise HeaderOutOfRange(f"unknown pixel format {pf} or coder {coder}") from None
        if perfect > 1:
            raise HeaderOutOfRange(f"coder flag 'perfect' must be 0 or 1, got {perfect}")
        if cw == 0 or ch == 0:
            raise HeaderOutOfRange(f"header field out of range: coded size {cw}x{ch}")
        hdr = cls(w, h, frames, fn, fd, bpt, mb, gop, pb, bool(perfect), mid.hex(), rate, cw, ch, pf, coder)
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

    def write_unit(self, gop_index: int, first_frame: int, frames: int, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise BitstreamError("unit payload too large")
        head = _UNIT.pack(UnitType.GOP, gop_index, first_frame, frames, len(payload))
        self.f.write(head)
        self.f.write(payload)
        self.f.write(_CRC.pack(zlib.crc32(payload, zlib.crc32(head))))
        self.units += 1
        self.frames += frames

    def close(self) -> None:
        body = _END.pack(self.units, self.frames)
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


class ContainerReader:
    """Reads a ``.vtok`` stream: ``header`` on construction, then ``units()`` and ``read_payload(unit)``."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.header = Header.unpack(f)
        self.first_unit = f.tell()

    def units(self) -> Iterator[Unit]:
        """Every GOP unit in order (headers only; payloads are skipped). Checks the END unit's counts and CRC."""
        count = frames = 0
        off = self.first_unit
        while True:
            self.f.seek(off)
            head = _read(self.f, _UNIT.size, f"unit header at byte {off}")
            kind, gi, first, n, size = _UNIT.unpack(head)
            if kind == UnitType.END:
                body = _read(self.f, _END.size if size == _END.size else size, "end unit")
                (crc,) = _CRC.unpack(_read(self.f, _CRC.size, "end unit checksum"))
                if size != _END.size or zlib.crc32(body, zlib.crc32(head)) != crc:
                    raise CorruptData("end unit checksum mismatch: the file is damaged")
                units, total = _END.unpack(body)
                if units != count or total != frames or total != self.header.frames:
                    raise CorruptData("end unit counts do not match the units read: the file is damaged")
                return
            if kind != UnitType.GOP or size > MAX_PAYLOAD:
                raise CorruptData(f"unknown unit at byte {off}: the file is damaged")
            if gi != count or first != frames or not 1 <= n <= self.header.gop:
                raise CorruptData(f"unit {count} has an unexpected index or frame range: the file is damaged")
            unit = Unit(UnitType(kind), gi, first, n, size, off + _UNIT.size, head)
            off = unit.offset + size + _CRC.size
            count += 1
            frames += n
            yield unit

    def read_payload(self, unit: Unit) -> bytes:
        self.f.seek(unit.offset)
        payload = _read(self.f, unit.payload_size, f"payload of unit {unit.gop_index}")
        (crc,) = _CRC.unpack(_read(self.f, _CRC.size, f"checksum of unit {unit.gop_index}"))
        if zlib.crc32(payload, zlib.crc32(unit.head)) != crc:
            raise CorruptData(f"checksum mismatch in unit {unit.gop_index}: the file is damaged")
        return payload
