"""Reading a ``.vtok`` stream: the header, then every unit, checked; strict (``units``) or tolerant of damage (``scan``).

A stream that was cut short (a download that stopped, a disk that filled) or damaged in places still holds whole
units behind valid checksums. ``scan`` walks the file and keeps every intact unit; where a unit is damaged it
resynchronises on the next unit whose header is plausible and whose checksum holds (docs/BITSTREAM.md, "Damaged
files"), and it reports each damaged stretch with its byte range and the unit it belongs to. ``units`` is the same
walk that refuses at the first damage. Bytes only: which frames a lost unit held is the header's arithmetic
(``gop`` frames per unit), concealment is the codec's job.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from vtok.bitstream.container import (_CRC, _END, _END_V3, _UNIT, MAX_FRAMES, MAX_PAYLOAD, UNKNOWN_FRAMES, CorruptData,
                                      Header, Truncated, Unit, UnitType, _read)

_CHUNK = 1 << 20  # bytes read at a time while checksumming a payload or searching for the next unit


@dataclass
class Damage:
    """Bytes ``start .. end`` of the file that hold no intact unit, and why (``truncated``: the file ends there)."""

    start: int
    end: int
    reason: str
    truncated: bool = False

    def error(self) -> Exception:
        return (Truncated if self.truncated else CorruptData)(self.reason)


@dataclass
class Scan:
    """What ``ContainerReader.scan`` found: the intact GOP and audio units in file order, the damaged stretches, and
    whether the file ended in an end unit whose counts agree with what was read."""

    units: list = field(default_factory=list)
    audio_units: list = field(default_factory=list)
    damage: list = field(default_factory=list)
    complete: bool = False
    size: int = 0


def _gop_name(h: Header, gi: int, first: int, n: int) -> str:
    last = first + n - 1
    return f"GOP unit {gi} (frame{'s' if n > 1 else ''} {first}{'' if n == 1 else f'-{last}'})"


class ContainerReader:
    """Reads a ``.vtok`` stream: ``header`` on construction, then ``units()`` (strict) or ``scan()`` (tolerant),
    and ``read_payload(unit)``. The stream must be seekable (standard input is read into memory first)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.header = Header.unpack(f)
        self.first_unit = f.tell()
        self.audio_units: list[Unit] = []  # filled by ``units()`` / ``scan()``

    def units(self) -> Iterator[Unit]:
        """Every GOP unit in order; raises ``Truncated`` or ``CorruptData`` at the first damage (the message names
        the unit and its byte offset). Audio units are collected in ``audio_units`` (the stream descriptions
        first)."""
        found = self.scan()
        if found.damage:
            raise found.damage[0].error()
        yield from found.units

    def scan(self) -> Scan:
        """Walk every unit, keeping the intact ones and reporting each damaged stretch (``Scan``); reads every
        payload once to check its CRC, a megabyte at a time."""
        self.f.seek(0, io.SEEK_END)
        out = Scan(size=self.f.tell())
        off = self.first_unit
        while off < out.size:
            unit, why = self._unit_at(off, out)
            if unit is None:
                nxt = self._next_unit(off + 1, out)
                out.damage.append(Damage(off, out.size if nxt is None else nxt, why[0], why[1]))
                if nxt is None:
                    break
                off = nxt
                continue
            off = unit.offset + unit.payload_size + _CRC.size
            if unit.kind == UnitType.END:
                self._check_end(unit, out)
                break
            if unit.kind == UnitType.GOP:
                out.units.append(unit)
            else:
                out.audio_units.append(unit)
        else:
            if not (out.damage and out.damage[-1].truncated):
                out.damage.append(Damage(out.size, out.size, f"the file ends at byte {out.size} without its end unit "
                                         f"(after {self._last_unit_name(out)}): it is truncated", True))
        self.audio_units = out.audio_units
        return out

    def _last_unit_name(self, out: Scan) -> str:
        if not out.units:
            return "the header"
        u = out.units[-1]
        return _gop_name(self.header, u.gop_index, u.first_frame, u.frames)

    def _check_end(self, unit: Unit, out: Scan) -> None:
        self.f.seek(unit.offset)
        body = self.f.read(unit.payload_size)
        counts = (_END_V3 if self.header.version >= 3 else _END).unpack(body)
        units, frames, *audio = counts
        read_frames = sum(u.frames for u in out.units)
        ok = units == len(out.units) and frames == read_frames and frames == self.header.frames and \
            audio in ([], [len(out.audio_units)])
        if not ok and not out.damage:
            out.damage.append(Damage(unit.offset - _UNIT.size, unit.offset + unit.payload_size + _CRC.size,
                                     f"the end unit at byte {unit.offset - _UNIT.size} counts {units} GOP units and "
                                     f"{frames} frames but {len(out.units)} units and {read_frames} frames were read: "
                                     f"the file is damaged"))
        out.complete = not out.damage

    def _unit_at(self, off: int, out: Scan) -> tuple[Unit | None, tuple[str, bool]]:
        """The unit at byte ``off`` if it is whole, its checksum holds and it fits where it stands; else None and
        (why, whether the file simply ends there)."""
        if off + _UNIT.size > out.size:
            return None, (f"the file ends at byte {out.size} inside the unit header at byte {off} (after "
                          f"{self._last_unit_name(out)}): it is truncated", True)
        self.f.seek(off)
        head = self.f.read(_UNIT.size)
        kind, gi, first, n, size = _UNIT.unpack(head)
        name = self._name(kind, gi, first, n, off)
        if kind not in UnitType.__members__.values() or size > MAX_PAYLOAD:
            return None, (f"unknown unit (type {kind}) at byte {off}: the file is damaged", False)
        stop = off + _UNIT.size + size + _CRC.size
        if stop > out.size:
            return None, (f"{name} at byte {off} is truncated: it needs the bytes up to {stop}, but the file ends at "
                          f"byte {out.size}", True)
        crc = zlib.crc32(head)
        left = size
        while left:
            chunk = self.f.read(min(left, _CHUNK))
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
        if _CRC.unpack(self.f.read(_CRC.size))[0] != crc:
            return None, (f"checksum mismatch in {name} at byte {off}: the file is damaged", False)
        if not self._fits(kind, gi, first, n, size, out):
            return None, (f"{name} at byte {off} is out of place (unexpected index, frame range or order): the file "
                          f"is damaged", False)
        return Unit(UnitType(kind), gi, first, n, size, off + _UNIT.size, head), ("", False)

    def _name(self, kind: int, gi: int, first: int, n: int, off: int) -> str:
        if kind == UnitType.GOP and 1 <= n <= self.header.gop:
            return _gop_name(self.header, gi, first, n)
        if kind == UnitType.AUDIO:
            return f"the audio unit after GOP {gi}"
        if kind == UnitType.AUDIO_STREAMS:
            return "the audio stream descriptions unit"
        if kind == UnitType.END:
            return "the end unit"
        return "the unit"

    def _fits(self, kind: int, gi: int, first: int, n: int, size: int, out: Scan) -> bool:
        """Whether a unit with these fields can stand after the units ``out`` holds (GOP units in order, each
        ``gop`` frames but the last; audio units after the stream descriptions)."""
        h = self.header
        known = h.frames != UNKNOWN_FRAMES
        gops = -(-h.frames // h.gop) if known else MAX_FRAMES
        after = out.units[-1].gop_index + 1 if out.units else 0
        audio = h.version >= 3
        if kind == UnitType.GOP:
            return after <= gi < gops and first == gi * h.gop and 1 <= n <= h.gop and \
                (n == h.gop or not known or first + n == h.frames)
        if kind == UnitType.AUDIO_STREAMS:
            return audio and not out.units and not out.audio_units and gi == first == n == 0
        if kind == UnitType.AUDIO:
            return audio and bool(out.audio_units) and first == n == 0 and after - 1 <= gi < gops
        return n == 0 and size == (_END_V3 if audio else _END).size

    def _next_unit(self, start: int, out: Scan) -> int | None:
        """The offset of the first intact unit at or after ``start`` (None: there is none): the file is searched for
        a unit header whose fields fit (``_fits``) and whose checksum then holds."""
        pos = start
        while pos + _UNIT.size + _CRC.size <= out.size:
            self.f.seek(pos)
            window = self.f.read(_CHUNK + _UNIT.size)
            last = len(window) - _UNIT.size
            for i in range(max(last, 0) + 1 if len(window) >= _UNIT.size else 0):
                if window[i] not in (1, 2, 3, 4):
                    continue
                kind, gi, first, n, size = _UNIT.unpack_from(window, i)
                if size <= MAX_PAYLOAD and pos + i + _UNIT.size + size + _CRC.size <= out.size and \
                        self._fits(kind, gi, first, n, size, out) and self._unit_at(pos + i, out)[0] is not None:
                    return pos + i
            pos += max(last + 1, 1)
        return None

    def read_payload(self, unit: Unit) -> bytes:
        what = f"unit {unit.gop_index}" if unit.kind == UnitType.GOP else f"audio unit after GOP {unit.gop_index}"
        self.f.seek(unit.offset)
        payload = _read(self.f, unit.payload_size, f"payload of {what}")
        (crc,) = _CRC.unpack(_read(self.f, _CRC.size, f"checksum of {what}"))
        if zlib.crc32(payload, zlib.crc32(unit.head)) != crc:
            raise CorruptData(f"checksum mismatch in {what} at byte {unit.offset - _UNIT.size}: the file is damaged")
        return payload
