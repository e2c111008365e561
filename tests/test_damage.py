"""Damaged and truncated ``.vtok`` files: every intact GOP decodes as in a clean file, lost ones are concealed, and
the command line says where the damage is and exits with 3 (1 when nothing is usable); killed runs' partial outputs."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from vtok.bench.tools.fuzz import SEEDS, fuzz_codec
from vtok.bitstream.reader import ContainerReader
from vtok.codec.coded import CodedFile

MODEL = SEEDS / "tiny.safetensors"


def vtok(*args, stdin=None):
    if args and args[0] == "decompress":  # the reference decoder (float32): its frames compare with in-memory ones
        args = (*args, "--precision", "fp32")
    return subprocess.run([sys.executable, "-m", "vtok", *map(str, args)], capture_output=True, timeout=300,
                          input=stdin)


@pytest.fixture(scope="module")
def codec():
    return fuzz_codec()


def _units(data: bytes) -> list:
    """(start, end) byte ranges of every unit but the header, in file order (GOP, audio and end units)."""
    r = ContainerReader(io.BytesIO(data))
    found = r.scan()
    assert found.complete and not found.damage
    spans = [(u.offset - 15, u.offset + u.payload_size + 4) for u in found.units + found.audio_units]
    end = max(b for _, b in spans)
    return sorted(spans) + [(end, len(data))]


def _tolerant(codec, data: bytes):
    coded = codec.check(CodedFile(io.BytesIO(data), strict=False))
    seen = []
    frames = np.concatenate([v for v, _ in codec.decompress_from(coded, on_damage=lambda *a: seen.append(a))])
    return coded, frames


def _check_against_clean(coded, frames, clean):
    """The frame count is the header's; intact GOPs are the clean decode's frames, lost ones repeat the frame
    before them (mid-grey at the start)."""
    assert len(frames) == len(clean) == coded.header.frames
    last = np.full(clean.shape[1:], 128, np.uint8)
    for s in list(coded.slots()):
        got = frames[s.first_frame:s.first_frame + s.frames]
        if s.unit is not None:
            np.testing.assert_array_equal(got, clean[s.first_frame:s.first_frame + s.frames])
        else:
            assert (got == last).all()
        last = got[-1]


@pytest.mark.parametrize("seed", ["three-gops.vtok", "audio.vtok"])
def test_cut_at_every_unit_boundary_and_mid_unit(codec, seed):
    data = (SEEDS / seed).read_bytes()
    clean = codec.decompress(data)
    spans = _units(data)
    cuts = sorted({a for a, _ in spans} | {(a + b) // 2 for a, b in spans})
    for n in cuts:
        coded, frames = _tolerant(codec, data[:n])
        _check_against_clean(coded, frames, clean)
        kept = [u for u in coded.units if u.offset + u.payload_size + 4 <= n]
        assert len(coded.units) == len(kept)  # every GOP unit that ends before the cut is kept
        assert coded.damage and coded.damage[-1].truncated
        assert all(d.end <= n for d in coded.damage)


@pytest.mark.parametrize("seed", ["three-gops.vtok", "audio.vtok"])
def test_a_flipped_byte_loses_only_its_gop(codec, seed):
    data = (SEEDS / seed).read_bytes()
    clean = codec.decompress(data)
    units = list(ContainerReader(io.BytesIO(data)).units())
    for u in units:
        bad = bytearray(data)
        bad[u.offset + u.payload_size // 2] ^= 0x5A
        coded, frames = _tolerant(codec, bytes(bad))
        assert [s.gop_index for s in coded.slots() if s.unit is None] == [u.gop_index]
        _check_against_clean(coded, frames, clean)
        (problem,) = coded.problems()
        assert (problem.first, problem.end) == (u.first_frame, u.first_frame + u.frames)
        assert f"GOP unit {u.gop_index}" in problem.reason and f"at byte {u.offset - 15}" in problem.reason


def test_intact_audio_of_a_damaged_gop_is_kept(codec):
    data = (SEEDS / "audio.vtok").read_bytes()
    clean = CodedFile(io.BytesIO(data))
    packets = [len(p) for _, p in codec.decompress_from(clean)]
    bad = bytearray(data)
    u = clean.units[0]
    bad[u.offset + 3] ^= 1
    coded = CodedFile(io.BytesIO(bytes(bad)), strict=False)
    assert [len(p) for _, p in codec.decompress_from(coded)] == packets and sum(packets) > 0


def test_strict_and_info_name_the_same_place(tmp_path):
    data = (SEEDS / "three-gops.vtok").read_bytes()
    spans = _units(data)
    cut = (spans[1][0] + spans[1][1]) // 2  # inside the second GOP unit
    path = tmp_path / "cut.vtok"
    path.write_bytes(data[:cut])
    strict = vtok("decompress", path, "-o", tmp_path / "s.y4m", "--model", MODEL, "--strict")
    assert strict.returncode == 1 and not (tmp_path / "s.y4m").exists()
    msg = strict.stderr.decode().strip()
    assert msg.count("\n") == 0 and f"GOP unit 1 (frames 5-9) at byte {spans[1][0]}" in msg
    assert f"the file ends at byte {cut}" in msg
    info = vtok("info", path)
    assert info.returncode == 3 and msg.removeprefix("vtok: error: ") in info.stdout.decode()


def test_cli_decodes_what_is_whole_with_exit_status_3(tmp_path, codec):
    data = (SEEDS / "three-gops.vtok").read_bytes()
    spans = _units(data)
    path = tmp_path / "cut.vtok"
    path.write_bytes(data[:spans[1][1] + 5])  # GOPs 0 and 1 whole, GOP 2 cut
    out = tmp_path / "out.y4m"
    r = vtok("decompress", path, "-o", out, "--model", MODEL)
    err = r.stderr.decode().splitlines()
    assert r.returncode == 3 and "Traceback" not in r.stderr.decode(), err
    assert err[0].startswith("vtok: warning: frames 10-12 lost (") and "byte 355" in err[0] and "3 of 13 frames concealed" in err[-1]
    from vtok.codec.media.read import read_video
    frames = read_video(out)
    assert len(frames) == 13
    # the same from standard input (a pipe that broke)
    r2 = vtok("decompress", "-", "-o", tmp_path / "pipe.y4m", "--model", MODEL, stdin=data[:spans[1][1] + 5])
    assert r2.returncode == 3 and len(read_video(tmp_path / "pipe.y4m")) == 13


def test_nothing_usable_is_an_error_and_leaves_no_output(tmp_path):
    data = (SEEDS / "three-gops.vtok").read_bytes()
    path = tmp_path / "head.vtok"
    path.write_bytes(data[:_units(data)[0][0] + 10])  # the header and a few bytes
    r = vtok("decompress", path, "-o", tmp_path / "x.mkv", "--model", MODEL)
    assert r.returncode == 1 and r.stderr.decode().startswith("vtok: error:") and not (tmp_path / "x.mkv").exists()
    r = vtok("decompress", tmp_path / "none.vtok", "-o", tmp_path / "y.mkv", "--model", MODEL)
    assert r.returncode == 1


def test_partial_outputs_of_a_killed_run_are_cleaned_or_named(tmp_path):
    from vtok.codec.media.write import partial_path

    src = tmp_path / "in.y4m"
    vtok("decompress", SEEDS / "one-gop.vtok", "-o", src, "--model", MODEL)
    (tmp_path / "in2.y4m").write_bytes(src.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    stale_own, stale_other = partial_path(out / "in.vtok"), partial_path(out / "other.vtok")
    stale_own.write_bytes(b"VTOK half")
    stale_other.write_bytes(b"VTOK half")
    # --skip-existing does not take a partial output for the output: in.vtok is made
    r = vtok("compress", src, tmp_path / "in2.y4m", "-o", out, "--skip-existing", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert (out / "in.vtok").is_file() and not stale_own.exists()
    r = vtok("compress", src, "-o", out / "again.vtok", "--model", MODEL)
    assert r.returncode == 0 and stale_other.name in r.stdout.decode()
