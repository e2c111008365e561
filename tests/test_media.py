"""Real files in, real files out: audio passthrough, timing, colour, rotation and bit depth through the CLI.

Every input is made by FFmpeg (the one ``imageio-ffmpeg`` ships); audio is checked by decoding it on both sides.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import save_tokenizer
from tests.conftest import tiny_config


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # not installed, or no binary for this platform
        pytest.skip(f"needs imageio-ffmpeg's ffmpeg ({e})")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    ff = _ffmpeg()
    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), d / "tiny.safetensors")
    TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze().save(d / "tiny-prior.safetensors")

    def make(name, *args):
        subprocess.run([ff, "-hide_banner", "-loglevel", "error", "-y", *args, str(d / name)], check=True,
                       timeout=120)

    src = ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    make("aac.mp4", *src, *tone, "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
    make("opus2.mkv", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30000/1001", "-f", "lavfi", "-i",
         "sine=frequency=300:sample_rate=48000", "-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000",
         "-t", "2", "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "libopus", "-shortest")
    make("bt709.mp4", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "0.2", "-vf",
         "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv", "-c:v", "libx264",
         "-pix_fmt", "yuv420p")
    make("rotated.mp4", "-display_rotation", "90", "-i", str(d / "aac.mp4"), "-c", "copy")
    make("vfr.mkv", *src, "-t", "2", "-vf", "select='not(mod(n\\,3))+lt(n\\,10)'", "-fps_mode", "vfr",
         "-c:v", "libx264", "-pix_fmt", "yuv420p")
    make("ten.mkv", *src, "-t", "0.4", "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=0")
    make("audio_only.m4a", *tone, "-t", "1", "-c:a", "aac")
    make("pcm.mkv", *src, *tone, "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_u8",
         "-shortest")
    return d


def vtok(*args):
    if args and args[0] == "decompress":  # the reference decoder (float32): its frames compare with in-memory ones
        args = (*args, "--precision", "fp32")
    return subprocess.run([sys.executable, "-m", "vtok", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _round_trip(d, src, out, *extra, decode=()):
    model = ["--model", d / "tiny.safetensors"]
    r = vtok("compress", d / src, "-o", d / (out + ".vtok"), *model, *extra)
    assert r.returncode == 0, r.stderr
    r2 = vtok("decompress", d / (out + ".vtok"), "-o", d / out, *model, *decode)
    assert r2.returncode == 0, r2.stderr
    return r.stdout + r2.stdout


def _pcm(path, i=0):
    import av

    with av.open(str(path)) as c:
        if len(c.streams.audio) <= i:
            return None
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[i])], axis=1)


def _audio_count(path) -> int:
    import av

    with av.open(str(path)) as c:
        return len(c.streams.audio)


def test_aac_in_mp4_is_copied_sample_exact(media):
    _round_trip(media, "aac.mp4", "aac_out.mp4")
    a, b = _pcm(media / "aac.mp4"), _pcm(media / "aac_out.mp4")
    assert a.shape == b.shape and np.array_equal(a, b)


def test_two_opus_tracks_in_mkv_are_copied_sample_exact(media):
    _round_trip(media, "opus2.mkv", "opus2_out.mkv")
    for i in (0, 1):
        a, b = _pcm(media / "opus2.mkv", i), _pcm(media / "opus2_out.mkv", i)
        assert a.shape == b.shape and np.array_equal(a, b), i
    info = json.loads(vtok("info", media / "opus2_out.mkv.vtok", "--json").stdout)
    assert [s["codec"] for s in info["audio_streams"]] == ["opus", "opus"]
    assert info["audio_bytes"] > 0 and info["video_bytes"] + info["audio_bytes"] == info["file_bytes"]
    assert info["bpp"] == pytest.approx(info["video_bytes"] * 8 / (info["frames"] * 96 * 64))
    assert info["fps"] == "30000/1001"  # a rational rate kept exactly


def test_opus_into_mp4_keeps_duration(media):
    _round_trip(media, "opus2.mkv", "opus2_out.mp4")
    a, b = _pcm(media / "opus2.mkv"), _pcm(media / "opus2_out.mp4")
    assert abs(a.shape[1] - b.shape[1]) <= 48000 * 1001 / 30000  # within one frame


def test_audio_is_cut_with_start_and_frames(media):
    _round_trip(media, "aac.mp4", "cut.mkv", decode=("--start", 20, "--frames", 10))
    b = _pcm(media / "cut.mkv")
    assert abs(b.shape[1] / 44100 - 10 / 25) <= 1 / 25 + 1024 / 44100  # 0.4 s, to a frame and a packet


def _first_packet(path, i=0):
    import av

    with av.open(str(path)) as c:
        p = next(p for p in c.demux(c.streams.audio[i]) if p.size)
        return p.pts, p.duration, bytes(p)


@pytest.mark.parametrize("src, out", [("aac.mp4", "prime_out.mp4"), ("opus2.mkv", "prime_out.mkv")])
def test_priming_packet_before_the_first_frame_survives(media, src, out):
    """Encoder priming puts the first audio packet before the first frame (AAC at -1024 samples, Opus at -7 ms):
    it comes back with its timestamp and bytes, and the decoded samples equal the source's."""
    pts, _, data = _first_packet(media / src)
    assert pts < 0  # what the test is about: FFmpeg's encoders prime the stream
    _round_trip(media, src, out)
    assert _first_packet(media / out) == _first_packet(media / src)
    a, b = _pcm(media / src), _pcm(media / out)
    assert a.shape == b.shape and np.array_equal(a, b)


def test_cut_keeps_the_pre_roll_of_its_first_sample(media):
    """With --start into .mp4, the packets a decoder needs before the first kept sample come along (before the cut,
    trimmed by an edit list), so the decoded samples from the cut on are the source's at the same times. Not to
    the bit: FFmpeg's AAC encoder uses noise substitution, whose generator state in the decoder depends on how many
    frames it decoded before (1e-5 differences), so they are compared to within 1e-4."""
    start = 20
    _round_trip(media, "aac.mp4", "cut_pre.mp4", decode=("--start", start, "--frames", 10))
    source, cut = _pcm(media / "aac.mp4"), _pcm(media / "cut_pre.mp4")
    first = round(start / 25 * 44100)
    assert 0.38 * 44100 <= cut.shape[1] <= 0.45 * 44100
    np.testing.assert_allclose(cut, source[:, first:first + cut.shape[1]], rtol=0, atol=1e-4)


def test_no_audio_and_outputs_without_audio(media):
    out = _round_trip(media, "aac.mp4", "silent.mkv", "--no-audio")
    assert _audio_count(media / "silent.mkv") == 0
    r = vtok("decompress", media / "aac_out.mp4.vtok", "-o", media / "noaudio.mkv", "--model",
             media / "tiny.safetensors", "--no-audio")
    assert r.returncode == 0 and _audio_count(media / "noaudio.mkv") == 0
    r = vtok("decompress", media / "aac_out.mp4.vtok", "-o", media / "frames.y4m", "--model",
             media / "tiny.safetensors")
    assert r.returncode == 0 and "holds no audio" in r.stdout
    assert "bytes of audio" not in out


def test_pcm_into_mp4_is_transcoded_with_a_note(media):
    out = _round_trip(media, "pcm.mkv", "pcm_out.mp4")
    assert "transcoded to AAC" in out
    a, b = _pcm(media / "pcm.mkv"), _pcm(media / "pcm_out.mp4")
    assert abs(a.shape[1] - b.shape[1]) <= 44100 / 25 + 2048  # one frame, plus the AAC encoder's priming


def test_bt709_tags_come_back(media):
    from vtok.codec.media.read import probe

    _round_trip(media, "bt709.mp4", "bt709_out.mp4")
    c = probe(media / "bt709_out.mp4").colour
    assert (c.matrix, c.primaries, c.transfer, c.full_range) == (1, 1, 1, False)


def test_rotated_clip_comes_back_upright(media):
    import imageio_ffmpeg

    from vtok.codec.media.read import probe, read_video

    info = probe(media / "rotated.mp4")
    assert (info.rotation, info.width, info.height) == (90, 64, 96)
    first = read_video(media / "rotated.mp4", max_frames=1)[0]
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(media / "rotated.mp4"),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
                         check=True).stdout
    np.testing.assert_array_equal(first, np.frombuffer(raw, np.uint8).reshape(first.shape))  # as ffmpeg shows it
    _round_trip(media, "rotated.mp4", "rotated_out.mkv")
    out = probe(media / "rotated_out.mkv")
    assert (out.width, out.height, out.rotation) == (64, 96, 0)


def test_variable_frame_rate_is_noted(media):
    from vtok.codec.media.read import probe

    assert probe(media / "vfr.mkv").variable_rate and not probe(media / "aac.mp4").variable_rate
    out = _round_trip(media, "vfr.mkv", "vfr_out.mkv")
    assert "variable frame rate" in out and "constant" in out


def test_ten_bit_input_is_converted_with_a_note(media):
    from vtok.codec.media.read import probe, read_video

    assert probe(media / "ten.mkv").bit_depth == 10
    out = _round_trip(media, "ten.mkv", "ten_out.mkv")
    assert "10-bit" in out and read_video(media / "ten_out.mkv").shape == (10, 64, 96, 3)


def test_audio_only_and_empty_inputs_fail_cleanly(media):
    r = vtok("compress", media / "audio_only.m4a", "-o", media / "x.vtok", "--model", media / "tiny.safetensors")
    assert r.returncode != 0 and "no video stream" in r.stderr and "Traceback" not in r.stderr
    assert not (media / "x.vtok").exists()
    (media / "empty.mkv").write_bytes(b"")
    r = vtok("compress", media / "empty.mkv", "-o", media / "y.vtok", "--model", media / "tiny.safetensors")
    assert r.returncode != 0 and r.stderr.startswith("vtok: error:") and not (media / "y.vtok").exists()


def test_damaged_audio_unit_is_reported(media):
    from vtok.bitstream.reader import ContainerReader

    src = media / "aac_out.mp4.vtok"
    with open(src, "rb") as f:
        r = ContainerReader(f)
        list(r.units())
        off = r.audio_units[1].offset
    data = bytearray(src.read_bytes())
    data[off + 5] ^= 0x10
    bad = media / "bad_audio.vtok"
    bad.write_bytes(bytes(data))
    r = vtok("decompress", bad, "-o", media / "bad.mkv", "--model", media / "tiny.safetensors", "--strict")
    assert r.returncode == 1 and "checksum mismatch in the audio unit after GOP" in r.stderr
    assert "Traceback" not in r.stderr and not (media / "bad.mkv").exists()
    # without --strict: every frame and the other audio units decode, the lost packets are named (exit status 3)
    r = vtok("decompress", bad, "-o", media / "bad.mkv", "--model", media / "tiny.safetensors")
    assert r.returncode == 3 and "checksum mismatch in the audio unit after GOP" in r.stderr, r.stderr
    assert "0 of 50 frames concealed and audio lost" in r.stderr and (media / "bad.mkv").is_file()


def test_info_reads_frame_rate_as_fraction(media):
    info = json.loads(vtok("info", media / "aac_out.mp4.vtok", "--json").stdout)
    assert Fraction(info["fps"]) == 25 and info["format_version"] == 3


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_opus_made_from_aac_keeps_every_sample(media, container):
    """Opus made by FFmpeg from an AAC-in-mp4 source starts at −7 ms (``ffmpeg -i a.mp4 -f lavfi -i sine -map 0:v
    -map 0:a -map 1:a -c:v copy -c:a libopus -shortest b.mkv``): every packet, the one before the first frame too,
    comes back, and the decoded samples of both tracks equal the input's, in Matroska and in its mp4 twin."""
    ff = _ffmpeg()
    src = media / f"opus_from_aac.{container}"
    subprocess.run([ff, "-hide_banner", "-loglevel", "error", "-y", "-i", str(media / "aac.mp4"), "-f", "lavfi", "-i",
                    "sine=frequency=550:sample_rate=48000", "-map", "0:v", "-map", "0:a", "-map", "1:a", "-c:v",
                    "copy", "-c:a", "libopus", "-shortest", str(src)], check=True, timeout=120)
    assert _first_packet(src)[0] < 0
    _round_trip(media, src.name, f"opus_from_aac_out.{container}")
    for i in (0, 1):
        a, b = _pcm(src, i), _pcm(media / f"opus_from_aac_out.{container}", i)
        assert a.shape == b.shape and np.array_equal(a, b), i


def test_opus_into_mov_is_transcoded_not_refused(media):
    """FFmpeg's mov muxer lists Opus but writes it only in .mp4: a .mov output gets AAC instead of an error."""
    vtok("compress", media / "opus2.mkv", "-o", media / "opus2_out.mkv.vtok", "--model", media / "tiny.safetensors")
    r = vtok("decompress", media / "opus2_out.mkv.vtok", "-o", media / "opus2.mov", "--model",
             media / "tiny.safetensors")
    assert r.returncode == 0 and "transcoded to AAC" in r.stdout, r.stderr
    assert _audio_count(media / "opus2.mov") == 2
