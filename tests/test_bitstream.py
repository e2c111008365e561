"""The bytes layer: range coder round trips and the container's framing, checksums and limits."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from vtok.bitstream.audio import AudioPacket, AudioStream, pack_packets, pack_streams, unpack_packets, unpack_streams
from vtok.bitstream.container import (UNSPECIFIED, BadMagic, BitstreamError, ContainerWriter, CorruptData, Header, HeaderOutOfRange, Truncated, UnitType, UnsupportedVersion, pack_gop_payload,
    unpack_gop_payload)
from vtok.bitstream.rangecoder import BitDecoder, BitEncoder
from vtok.bitstream.reader import ContainerReader


def _header(**kw):
    base = dict(width=64, height=48, frames=20, fps_num=30000, fps_den=1001, bits_per_token=18, model_bits=18,
                gop=17, prob_bits=16, perfect=False, model_id="00112233445566ff")
    base.update(kw)
    return Header(**base)


def _file(payloads=(b"first unit", b"second")):
    buf = io.BytesIO()
    w = ContainerWriter(buf, _header(frames=17 + 3))
    w.write_unit(0, 0, 17, payloads[0])
    w.write_unit(1, 17, 3, payloads[1])
    w.close()
    return buf.getvalue()


def _read_all(data: bytes):
    r = ContainerReader(io.BytesIO(data))
    payloads = [r.read_payload(u) for u in list(r.units())]
    for u in r.audio_units:
        r.read_payload(u)
    return r.header, payloads


@pytest.mark.parametrize("perfect", [False, True])
def test_range_coder_round_trip_and_rate(perfect):
    rng = np.random.default_rng(0)
    n = 20000
    p1 = rng.integers(1, 1 << 16, n).astype(np.uint32)
    bits = (rng.random(n) < p1 / 65536).astype(np.uint8)
    enc = BitEncoder(16, perfect)
    enc.encode(bits[:7000], p1[:7000])
    enc.encode(bits[7000:], p1[7000:])
    data = enc.finish()
    dec = BitDecoder(data, 16, perfect)
    out = np.concatenate([dec.decode(p1[:123]), dec.decode(p1[123:])])
    np.testing.assert_array_equal(out, bits)
    ce = -np.log2(np.where(bits == 1, p1, 65536 - p1) / 65536).sum()
    assert len(data) * 8 <= ce * 1.005 + 64


def test_range_coder_rejects_bad_probabilities():
    enc = BitEncoder(16, False)
    with pytest.raises(ValueError, match="1, 65535"):
        enc.encode(np.array([1], np.uint8), np.array([0], np.uint32))
    with pytest.raises(ValueError, match="one probability per bit"):
        enc.encode(np.array([1, 0], np.uint8), np.array([5], np.uint32))


def test_container_round_trip_and_frames_patch():
    h, payloads = _read_all(_file())
    assert payloads == [b"first unit", b"second"]
    assert h == _header(frames=20)
    buf = io.BytesIO()
    w = ContainerWriter(buf, _header(frames=0xFFFFFFFF))
    w.write_unit(0, 0, 5, b"x")
    w.close()
    assert _read_all(buf.getvalue())[0].frames == 5


def assert_every_bit_flip_is_detected(data: bytes) -> None:
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                _read_all(bytes(bad))


def assert_every_truncation_is_detected(data: bytes) -> None:
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            _read_all(data[:n])


def test_every_single_bit_flip_is_detected():
    assert_every_bit_flip_is_detected(_file())


def test_truncation_at_every_byte_is_detected():
    assert_every_truncation_is_detected(_file())


def test_magic_version_and_ranges():
    data = _file()
    with pytest.raises(BadMagic):
        _read_all(b"XTOK" + data[4:])
    with pytest.raises(UnsupportedVersion, match="version 7"):
        _read_all(data[:4] + struct.pack("<H", 7) + data[6:])
    with pytest.raises(HeaderOutOfRange):
        _header(width=10 ** 9).pack()
    with pytest.raises(HeaderOutOfRange):
        _header(gop=16).pack()
    with pytest.raises(HeaderOutOfRange):
        _header(bits_per_token=19).pack()


def _signed_header(version: int, width: int, height: int, coded=None) -> bytes:
    """A header with a valid CRC, built field by field as docs/BITSTREAM.md lays it out."""
    import zlib
    from vtok.bitstream.container import _BODY_V1, _CODED, _PREFIX, MAGIC
    body = _BODY_V1.pack(width, height, 17, 30, 1, 0, 18, 18, 17, 1, 0, 16, 255, bytes.fromhex("00112233445566ff"))
    if version >= 2:
        body += _CODED.pack(*(coded or (width, height)))
    head = _PREFIX.pack(MAGIC, version, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def test_huge_header_values_are_rejected_before_allocation():
    # A well-formed header (valid CRC) that claims 10^9 x 10^9 pixels.
    with pytest.raises(HeaderOutOfRange, match="size"):
        ContainerReader(io.BytesIO(_signed_header(2, 10 ** 9, 10 ** 9)))


def test_coded_size_round_trips_and_is_checked():
    h = _header(coded_width=16, coded_height=12)
    r = ContainerReader(io.BytesIO(h.pack()))
    assert (r.header.coded_width, r.header.coded_height) == (16, 12) and r.header == h
    assert (_header().coded_width, _header().coded_height) == (64, 48)  # default: the frame size
    for coded in ((65, 48), (64, 0), (0, 0)):
        with pytest.raises(HeaderOutOfRange, match="coded size"):
            ContainerReader(io.BytesIO(_signed_header(2, 64, 48, coded)))


def test_version_1_and_2_headers_are_still_read():
    # Version 1 has no coded size: the tokens describe the frame size. Neither has colour fields.
    h = ContainerReader(io.BytesIO(_signed_header(1, 64, 48))).header
    assert (h.width, h.height, h.coded_width, h.coded_height) == (64, 48, 64, 48)
    h2 = ContainerReader(io.BytesIO(_signed_header(2, 64, 48, (32, 24)))).header
    assert (h2.coded_width, h2.version, h2.matrix, h2.full_range) == (32, 2, UNSPECIFIED, False)
    with pytest.raises(UnsupportedVersion):
        ContainerReader(io.BytesIO(_signed_header(4, 64, 48)))


def _version_2_file() -> bytes:
    """A whole version-2 file (header, one GOP unit, the 8-byte end unit) as that version laid it out."""
    import zlib
    from vtok.bitstream.container import _END, _UNIT
    head = _signed_header(2, 64, 48)
    unit = _UNIT.pack(1, 0, 0, 17, 3) + b"abc"
    end_body = _END.pack(1, 17)
    end = _UNIT.pack(2, 1, 17, 0, len(end_body)) + end_body
    return head + unit + struct.pack("<I", zlib.crc32(unit)) + end + struct.pack("<I", zlib.crc32(end))


def test_version_2_files_are_still_read():
    h, payloads = _read_all(_version_2_file())
    assert h.version == 2 and payloads == [b"abc"]


def test_colour_fields_round_trip():
    h = _header(matrix=1, full_range=True, primaries=1, transfer=1)
    r = ContainerReader(io.BytesIO(h.pack())).header
    assert (r.matrix, r.full_range, r.primaries, r.transfer, r.version) == (1, True, 1, 1, 3)
    with pytest.raises(HeaderOutOfRange):
        _header(matrix=300).pack()


def _audio_file() -> bytes:
    streams = [AudioStream("aac", 44100, 2, (1, 44100)), AudioStream("opus", 48000, 1, (1, 48000))]
    buf = io.BytesIO()
    w = ContainerWriter(buf, _header(frames=20))
    w.write_audio_streams(pack_streams(streams, b"description"))
    w.write_unit(0, 0, 17, b"gop0")
    w.write_audio(pack_packets([AudioPacket(0, 0, 0, 1024, True, b"a0"), AudioPacket(1, 0, 0, 960, True, b"b0")]))
    w.write_unit(1, 17, 3, b"gop1")
    w.write_audio(pack_packets([AudioPacket(0, 1024, 1024, 1024, True, b"a1")]))
    w.close()
    return buf.getvalue()


def test_audio_units_round_trip():
    r = ContainerReader(io.BytesIO(_audio_file()))
    assert [r.read_payload(u) for u in r.units()] == [b"gop0", b"gop1"]
    kinds = [(u.kind, u.gop_index) for u in r.audio_units]
    assert kinds == [(UnitType.AUDIO_STREAMS, 0), (UnitType.AUDIO, 0), (UnitType.AUDIO, 1)]
    streams, blob = unpack_streams(r.read_payload(r.audio_units[0]))
    assert [s.codec for s in streams] == ["aac", "opus"] and blob == b"description"
    assert [p.data for p in unpack_packets(r.read_payload(r.audio_units[1]), 2)] == [b"a0", b"b0"]


def test_audio_units_are_checked():
    data = _audio_file()
    assert_every_bit_flip_is_detected(data)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            _read_all(data[:n])
    w = ContainerWriter(io.BytesIO(), _header(frames=20))
    with pytest.raises(BitstreamError, match="follow a GOP"):
        w.write_audio(b"")
    w.write_unit(0, 0, 17, b"x")
    with pytest.raises(BitstreamError, match="before the first GOP"):
        w.write_audio_streams(b"")
    with pytest.raises(CorruptData):
        unpack_packets(pack_packets([AudioPacket(3, 0, 0, 1, True, b"z")]), 2)


def test_gop_payload_prefix():
    assert unpack_gop_payload(pack_gop_payload(12.5, b"words")) == (12.5, b"words")
    with pytest.raises(Truncated):
        unpack_gop_payload(b"abc")


def test_errors_are_typed():
    for cls in (BadMagic, UnsupportedVersion, HeaderOutOfRange, CorruptData, Truncated):
        assert issubclass(cls, BitstreamError) and issubclass(cls, ValueError)
