"""The codec end to end: prior exactness, .vtok round trips, GOP access, and bad input at the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from vtok.bitstream.info import file_info as vtok_info
from vtok.codec.loading import load_codec
from vtok.codec.entropy import decode_tokens, encode_tokens
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.prior import IntegerPrior, PriorConfig, TokenPrior, context
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer, save_tokenizer
from vtok.codec.media.read import read_video
from vtok.codec.media.write import write_video
from tests.conftest import REPO, random_clip, smooth_clip, tiny_config


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("codec")
    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), d / "tiny.safetensors")
    TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze().save(d / "tiny-prior.safetensors")
    torch.manual_seed(5)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), d / "other.safetensors")
    TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze().save(d / "other-prior.safetensors")
    write_video(d / "clip.mkv", smooth_clip(23, 40, 56), 25)
    return d


def vtok(*args):
    if args and args[0] == "decompress":  # the reference decoder (float32): its frames compare with in-memory ones
        args = (*args, "--precision", "fp32")
    return subprocess.run([sys.executable, "-m", "vtok", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _one_line_error(r, *outputs):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vtok: error:") and "Traceback" not in r.stderr, r.stderr
    for o in outputs:
        assert not os.path.exists(o), o


def test_integer_prior_matches_float_prior():
    torch.manual_seed(0)
    cfg = PriorConfig(bits=6, group_bits=3, channels=8, layers=2)
    prior = TokenPrior(cfg)
    frozen = prior.freeze()
    sign = torch.randint(-1, 2, (1, 6, 9, 11)).double()
    x = context(cfg, sign, sign.flip(-1), torch.tensor([1.0]), 1, 0)
    with torch.no_grad():
        f = prior(x.float()) * 16
    i = frozen.logits(x)
    assert torch.equal(i, torch.round(i))  # integers
    assert (f.double() - i).abs().max() <= 2  # within 2/16 of a logit


def test_token_round_trip_every_bit_count(models):
    codec = load_codec(models / "tiny.safetensors")
    tokens = codec.tokenizer.encode(smooth_clip(9, 40, 56))
    for bits in (10, 7, 1):
        t = tokens & ((1 << bits) - 1)
        payload, ce = encode_tokens(codec.prior, t, bits)
        np.testing.assert_array_equal(decode_tokens(codec.prior, payload, t.shape, bits), t)
        assert ce > 0


def test_file_round_trip_and_gop_access(models, tmp_path, monkeypatch):
    import vtok.codec.files as files_module

    m = models / "tiny.safetensors"
    s = compress_file(models / "clip.mkv", tmp_path / "a.vtok", m, gop=9, log=lambda *a: None)
    assert s["frames"] == 23
    monkeypatch.setattr(files_module, "PIECE_PIXELS", 2 * 40 * 56)  # GOPs read two frames at a time: the same file
    compress_file(models / "clip.mkv", tmp_path / "b.vtok", m, gop=9, log=lambda *a: None)
    assert (tmp_path / "b.vtok").read_bytes() == (tmp_path / "a.vtok").read_bytes()
    monkeypatch.undo()
    info = vtok_info(tmp_path / "a.vtok")
    assert [g["frames"] for g in info["gop_units"]] == [9, 9, 5]
    decompress_file(tmp_path / "a.vtok", tmp_path / "full.mkv", m, log=lambda *a: None)
    full = read_video(tmp_path / "full.mkv")
    codec = load_codec(m)
    src = read_video(models / "clip.mkv")
    expect = np.concatenate([codec.tokenizer.decode(codec.tokenizer.encode(src[i:i + 9]), size=src[i:i + 9].shape[:3])
                             for i in range(0, 23, 9)])
    np.testing.assert_array_equal(full, expect)
    decompress_file(tmp_path / "a.vtok", tmp_path / "part.mkv", m, start=10, frames=6, log=lambda *a: None)
    np.testing.assert_array_equal(read_video(tmp_path / "part.mkv"), full[10:16])


def test_encode_one_thread_decode_two_threads(models, tmp_path):
    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[4]));"
            "from vtok.codec.files import compress_file;"
            "compress_file(sys.argv[1], sys.argv[2], sys.argv[5], gop=9, log=lambda *a: None)")
    r = subprocess.run([sys.executable, "-c", code, models / "clip.mkv", tmp_path / "t1.vtok", REPO, "1",
                        models / "tiny.safetensors"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    torch.set_num_threads(2)
    decompress_file(tmp_path / "t1.vtok", tmp_path / "t1.mkv", models / "tiny.safetensors", log=lambda *a: None)
    compress_file(models / "clip.mkv", tmp_path / "t2.vtok", models / "tiny.safetensors", gop=9, log=lambda *a: None)
    assert (tmp_path / "t1.vtok").read_bytes() == (tmp_path / "t2.vtok").read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_encode_cpu_decode_gpu(models):
    cpu = load_codec(models / "tiny.safetensors")
    gpu = load_codec(models / "tiny.safetensors", device="cuda")
    tokens = cpu.tokenizer.encode(smooth_clip(9, 40, 56))
    payload, _ = encode_tokens(cpu.prior, tokens, 10)
    np.testing.assert_array_equal(decode_tokens(gpu.prior, payload, tokens.shape, 10), tokens)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cli_device_cuda_files_match_the_cpu(models, tmp_path):
    """Made on the GPU, a file decodes on the CPU (and back): the prior's integers are the same on every device."""
    m = models / "tiny.safetensors"
    for dev in ("cuda", "cpu"):
        r = vtok("compress", models / "clip.mkv", "-o", tmp_path / f"{dev}.vtok", "--model", m, "--gop", "9",
                 "--device", dev, "--quiet")
        assert r.returncode == 0, r.stderr
    for made, dev in (("cuda", "cpu"), ("cpu", "cuda")):
        r = vtok("decompress", tmp_path / f"{made}.vtok", "-o", tmp_path / f"{made}-{dev}.mkv", "--model", m,
                 "--device", dev, "--quiet")
        assert r.returncode == 0, r.stderr


def test_cli_device(models, tmp_path):
    """``--device auto`` runs where it can (here or on a GPU) and decodes what the CPU made to the same pictures
    within the float difference of two devices; ``--device cuda`` without a GPU is a one-line error that leaves
    nothing behind."""
    m = models / "tiny.safetensors"
    r = vtok("compress", models / "clip.mkv", "-o", tmp_path / "c.vtok", "--model", m, "--gop", "9", "--quiet")
    assert r.returncode == 0, r.stderr
    for dev in ("cpu", "auto"):
        r = vtok("decompress", tmp_path / "c.vtok", "-o", tmp_path / f"{dev}.mkv", "--model", m, "--device", dev,
                 "--quiet")
        assert r.returncode == 0, r.stderr
    a, b = read_video(tmp_path / "cpu.mkv"), read_video(tmp_path / "auto.mkv")
    assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
    if not torch.cuda.is_available():
        for cmd, out in (("compress", "g.vtok"), ("decompress", "g.mkv")):
            src = models / "clip.mkv" if cmd == "compress" else tmp_path / "c.vtok"
            r = vtok(cmd, src, "-o", tmp_path / out, "--model", m, "--device", "cuda")
            assert r.returncode != 0 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr
            assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
            assert not (tmp_path / out).exists()


def test_cli_compress_info_decompress(models, tmp_path):
    m = models / "tiny.safetensors"
    r = vtok("compress", models / "clip.mkv", "-o", tmp_path / "c.vtok", "--model", m, "--gop", "9", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # --quiet: nothing on success
    r = vtok("compress", models / "clip.mkv", "-o", tmp_path / "v.vtok", "--model", m, "--gop", "9", "-v")
    assert json.loads(r.stdout.splitlines()[-1])["frames"] == 23 and "bpp" in r.stdout.splitlines()[0]
    r = vtok("info", tmp_path / "c.vtok", "--json")
    info = json.loads(r.stdout)
    for k in ("width", "height", "frames", "fps", "bits_per_token", "gop", "payload_bits", "cross_entropy_bits", "bpp",
              "model_id"):
        assert k in info
    for out in ("d.y4m", "d.mp4", "frames"):
        r = vtok("decompress", tmp_path / "c.vtok", "-o", tmp_path / out, "--model", m, "--quiet")
        assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "frames").glob("*.png"))) == 23
    assert read_video(tmp_path / "d.y4m").shape == (23, 40, 56, 3)


def test_cli_bad_inputs(models, tmp_path):
    m = models / "tiny.safetensors"
    (tmp_path / "junk.mp4").write_bytes(b"no video here")
    _one_line_error(vtok("compress", tmp_path / "junk.mp4", "-o", tmp_path / "j.vtok", "--model", m), tmp_path / "j.vtok")
    (tmp_path / "empty_16x16_25.yuv").write_bytes(b"")
    _one_line_error(vtok("compress", tmp_path / "empty_16x16_25.yuv", "-o", tmp_path / "e.vtok", "--model", m),
                    tmp_path / "e.vtok")
    _one_line_error(vtok("compress", models / "clip.mkv", "-o", tmp_path / "nodir" / "x.vtok", "--model", m))
    (tmp_path / "afile").write_bytes(b"")
    _one_line_error(vtok("compress", models / "clip.mkv", "-o", tmp_path / "afile" / "x.vtok", "--model", m))
    _one_line_error(vtok("compress", models / "clip.mkv", "-o", tmp_path / "g.vtok", "--model", m, "--gop", "8"),
                    tmp_path / "g.vtok")

    r = vtok("compress", models / "clip.mkv", "-o", tmp_path / "ok.vtok", "--model", m, "--gop", "9", "--quiet")
    assert r.returncode == 0
    data = (tmp_path / "ok.vtok").read_bytes()
    (tmp_path / "trunc.vtok").write_bytes(data[:-7])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 4
    (tmp_path / "flip.vtok").write_bytes(bytes(flipped))
    for name in ("trunc", "flip"):  # --strict refuses damage; by default what is intact is decoded (exit status 3)
        _one_line_error(vtok("decompress", tmp_path / f"{name}.vtok", "-o", tmp_path / "t.mkv", "--model", m,
                             "--strict"), tmp_path / "t.mkv")
        r = vtok("decompress", tmp_path / f"{name}.vtok", "-o", tmp_path / f"{name}.mkv", "--model", m)
        assert r.returncode == 3 and (tmp_path / f"{name}.mkv").is_file() and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("vtok: warning:") and "(--strict refuses such files)" in r.stderr
    (tmp_path / "magic.vtok").write_bytes(b"RIFF" + data[4:])
    _one_line_error(vtok("decompress", tmp_path / "magic.vtok", "-o", tmp_path / "g.mkv", "--model", m),
                    tmp_path / "g.mkv")
    r = vtok("decompress", tmp_path / "ok.vtok", "-o", tmp_path / "o.mkv", "--model", models / "other.safetensors")
    _one_line_error(r, tmp_path / "o.mkv")
    assert vtok_info(tmp_path / "ok.vtok")["model_id"] in r.stderr
    _one_line_error(vtok("decompress", tmp_path / "ok.vtok", "-o", tmp_path / "nodir" / "o.mkv", "--model", m))
    r = vtok("info", tmp_path / "trunc.vtok")
    assert r.returncode == 3 and "damaged: bytes" in r.stdout and r.stderr.startswith("vtok: warning:")


def test_float32_path_equals_float64_path():
    torch.manual_seed(1)
    ip = TokenPrior(PriorConfig(bits=18, group_bits=9, channels=48, layers=3)).freeze()
    assert ip.dtype == torch.float32 and ip._accumulator_bound() < 2 ** 24
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-1, 2, (2, ip.cfg.in_channels, 20, 24), generator=g).double()
    a = ip.logits(x)
    ip._set_dtype(torch.float64)
    assert torch.equal(a, ip.logits(x))


def test_prior_file_round_trip(tmp_path):
    torch.manual_seed(2)
    ip = TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze()
    ip.save(tmp_path / "p.safetensors")
    back = IntegerPrior.load(tmp_path / "p.safetensors")
    assert back.model_id == ip.model_id and back.shifts == ip.shifts
    from safetensors.torch import load_file
    stored = load_file(tmp_path / "p.safetensors")  # int8 weights on disk, the same integers in use
    assert all(stored[f"w{i}"].dtype == torch.int8 for i in range(3))
    assert all(torch.equal(a, b) for a, b in zip(back.weights, ip.weights))
    with pytest.raises(ValueError, match="not a vtok prior"):
        save_tokenizer(VideoTokenizer(tiny_config()), tmp_path / "t.safetensors")
        IntegerPrior.load(tmp_path / "t.safetensors")


def test_regrouped_prior_codes_round_trip_and_keeps_its_groups_start():
    """A prior regrouped to the same groups is the same prior; regrouped to smaller groups it takes more steps a
    frame, starts each new group from its old group's weights, and codes and decodes tokens exactly."""
    torch.manual_seed(3)
    prior = TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2))
    assert prior.regrouped(5).freeze().model_id == prior.freeze().model_id
    fine = prior.regrouped(2)
    assert fine.cfg.groups == 5 and fine.cfg.in_channels == prior.cfg.in_channels + 3
    base = 2 * 10 + 3
    w, wf = prior.convs[0].weight, fine.convs[0].weight
    assert torch.equal(wf[:, :base], w[:, :base])
    assert all(torch.equal(wf[:, base + g], w[:, base + (2 * g) // 5]) for g in range(5))
    tokens = np.random.default_rng(0).integers(0, 1 << 10, (3, 6, 7))
    payload, _ = encode_tokens(fine.freeze(), tokens, 10)
    np.testing.assert_array_equal(decode_tokens(fine.freeze(), payload, tokens.shape, 10), tokens)
    with pytest.raises(ValueError, match="group_bits"):
        prior.regrouped(11)


def test_every_bit_flip_and_truncation_of_a_real_file_is_detected(models, tmp_path):
    from tests.test_bitstream import _read_all, assert_every_bit_flip_is_detected, assert_every_truncation_is_detected

    compress_file(models / "clip.mkv", tmp_path / "s.vtok", models / "tiny.safetensors", gop=5, max_frames=6,
                  log=lambda *a: None)
    data = (tmp_path / "s.vtok").read_bytes()

    _read_all(data)
    assert_every_bit_flip_is_detected(data)
    assert_every_truncation_is_detected(data)


def test_float_prior_rate_is_the_coded_rate(tiny_tokenizer):
    """``TokenPrior.video_rate`` (training) agrees with the range coder's cross-entropy of the frozen prior, and a
    float prior rebuilt from an integer prior freezes to the same integers."""
    torch.manual_seed(1)
    prior = TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2))
    frozen = prior.freeze()
    again = TokenPrior.from_integer(frozen).freeze()
    assert again.model_id == frozen.model_id
    tokens = tiny_tokenizer.encode(random_clip(9, 32, 40))
    _, ce = encode_tokens(frozen, tokens, 10)
    codes = tiny_tokenizer.quantizer.indices_to_codes(torch.from_numpy(tokens)[None])
    with torch.no_grad():
        rate = float(TokenPrior.from_integer(frozen).video_rate(codes))
    assert rate == pytest.approx(ce, rel=0.02)


def _resized_header(data: bytes, width: int, height: int) -> bytes:
    """The same file with the frame (and coded) size in its header changed and the header CRC made valid again."""
    import dataclasses
    import io

    from vtok.bitstream.container import Header

    f = io.BytesIO(data)
    h = Header.unpack(f)
    rest = data[f.tell():]
    return dataclasses.replace(h, width=width, height=height, coded_width=width, coded_height=height).pack() + rest


def test_decompression_bomb_stops_when_the_payload_is_used_up(models, tmp_path):
    """A valid file whose header claims a far larger frame (CRCs valid, units untouched) stops with a one-line error
    naming the unit as soon as the range decoder has used up the payload, long before decoding the claimed size."""
    from vtok.bitstream.rangecoder import DataExhausted

    codec = load_codec(models / "tiny.safetensors")
    data = codec.compress(smooth_clip(9, 32, 40), fps=25)
    bomb = _resized_header(data, 1024, 1024)
    with pytest.raises(DataExhausted, match="GOP unit 0"):
        codec.decompress(bomb)
    (tmp_path / "bomb.vtok").write_bytes(bomb)
    out = tmp_path / "out.mkv"
    r = vtok("decompress", tmp_path / "bomb.vtok", "-o", out, "--model", models / "tiny.safetensors")
    _one_line_error(r, out)
    assert "used up" in r.stderr


def test_max_pixels_refuses_before_decoding(models, tmp_path):
    """A header claiming 16384×16384 is refused by --max-pixels before any allocation, with the way to lift it;
    ``vtok info`` still reports the file without decoding it."""
    codec = load_codec(models / "tiny.safetensors")
    bomb = _resized_header(codec.compress(smooth_clip(5, 32, 40), fps=25), 16384, 16384)
    path = tmp_path / "big.vtok"
    path.write_bytes(bomb)
    out = tmp_path / "out.mkv"
    r = vtok("decompress", path, "-o", out, "--model", models / "tiny.safetensors")
    _one_line_error(r, out)
    assert "--max-pixels 268435456" in r.stderr
    r = vtok("decompress", path, "-o", out, "--model", models / "tiny.safetensors", "--max-pixels", "1000")
    _one_line_error(r, out)
    info = vtok("info", path, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["width"] == 16384
    # within the limit, the same small file decodes as before
    small = tmp_path / "small.vtok"
    small.write_bytes(codec.compress(smooth_clip(5, 32, 40), fps=25))
    r = vtok("decompress", small, "-o", out, "--model", models / "tiny.safetensors", "--max-pixels", "1280")
    assert r.returncode == 0, r.stderr


def test_information_bound_holds_for_well_formed_payloads():
    """The decoder's information count of a well-formed payload stays within its capacity (no false alarm), down
    to payloads of a single word, and with confident and with uncertain probabilities alike."""
    from vtok.bitstream.rangecoder import BitDecoder, BitEncoder

    rng = np.random.default_rng(0)
    for n, spread in ((1, 1), (7, 100), (5000, 30000), (20000, 32000)):
        p1 = rng.integers(32768 - spread, 32768 + spread, n).astype(np.uint32)
        bits = (rng.random(n) < p1 / 65536).astype(np.uint8)
        enc = BitEncoder(16, False)
        enc.encode(bits, p1)
        dec = BitDecoder(enc.finish(), 16, False)
        assert np.array_equal(dec.decode(p1), bits)
        assert dec.information <= dec.capacity


def test_lying_raw_inputs_end_in_one_line(models, tmp_path):
    """A Y4M header, or a --size, that claims frames larger than the data holds: one-line error, no output."""
    import imageio_ffmpeg

    y4m = tmp_path / "small.y4m"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=25", "-t", "0.4", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(y4m)],
                   check=True)
    data = y4m.read_bytes()
    line = data.index(b"\n")
    for w, h in ((8192, 8192), (16384, 16384)):
        lie = tmp_path / f"lie{w}.y4m"
        lie.write_bytes(data[:line].replace(b"W64", f"W{w}".encode()).replace(b"H48", f"H{h}".encode()) + data[line:])
        out = tmp_path / f"lie{w}.vtok"
        _one_line_error(vtok("compress", lie, "-o", out, "--model", models / "tiny.safetensors"), out)
    raw = tmp_path / "clip.yuv"
    raw.write_bytes(bytes(64 * 48 * 3 // 2 * 3))  # three 64×48 frames
    out = tmp_path / "raw.vtok"
    r = vtok("compress", raw, "--size", "8192x8192", "--fps", "25", "-o", out, "--model", models / "tiny.safetensors")
    _one_line_error(r, out)
    assert "no complete 8192x8192" in r.stderr


def test_pipes(models, tmp_path):
    """``-`` is stdin/stdout: ffmpeg's Y4M into ``vtok compress -``, ``.vtok`` bytes to stdout and back from stdin
    (the same bytes as a file), and ``vtok decompress … -o -`` as Y4M into ffmpeg; log lines stay off stdout."""
    import imageio_ffmpeg

    ff = imageio_ffmpeg.get_ffmpeg_exe()
    model = ["--model", str(models / "tiny.safetensors")]
    cli = [sys.executable, "-m", "vtok"]
    src = subprocess.run([ff, "-loglevel", "error", "-i", str(models / "clip.mkv"), "-pix_fmt", "yuv420p", "-f",
                          "yuv4mpegpipe", "-"], capture_output=True, check=True).stdout
    r = subprocess.run(cli + ["compress", "-", "-o", str(tmp_path / "a.vtok"), "--gop", "9"] + model, input=src,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    r = subprocess.run(cli + ["compress", "-", "-o", "-", "--gop", "9", "-v"] + model, input=src, capture_output=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout == (tmp_path / "a.vtok").read_bytes(), r.stderr.decode()
    assert b"bpp" in r.stderr  # the summary went to stderr
    r = subprocess.run(cli + ["decompress", "-", "-o", "-"] + model, input=r.stdout, capture_output=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith(b"YUV4MPEG2 W56 H40"), r.stderr.decode()
    frames = subprocess.run([ff, "-loglevel", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                            input=r.stdout, capture_output=True, check=True).stdout
    assert len(frames) == 23 * 40 * 56 * 3
    r = subprocess.run(cli + ["compress", "-", "-o", str(tmp_path / "e.vtok")] + model, input=b"",
                       capture_output=True, timeout=300)
    assert r.returncode != 0 and r.stderr.decode().count("\n") == 1 and not (tmp_path / "e.vtok").exists()


def test_workers_code_the_same_bytes(models, tmp_path):
    """--workers 2 codes GOPs in two processes: the same file as one process, and the same decoded frames."""
    m = models / "tiny.safetensors"
    for n in (1, 2):
        r = vtok("compress", models / "clip.mkv", "-o", tmp_path / f"w{n}.vtok", "--model", m, "--gop", "5",
                 "--workers", n, "-q")
        assert r.returncode == 0, r.stderr
        r = vtok("decompress", tmp_path / f"w{n}.vtok", "-o", tmp_path / f"w{n}.mkv", "--model", m, "--workers", n,
                 "-q")
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "w1.vtok").read_bytes() == (tmp_path / "w2.vtok").read_bytes()
    assert np.array_equal(read_video(tmp_path / "w1.mkv"), read_video(tmp_path / "w2.mkv"))


def test_decode_only_weights_decode_the_family_and_refuse_to_encode(models, tmp_path):
    """Weights saved without the encoder keep the family id, decode its files to the same frames (here and in
    --workers 2 processes), are smaller, and refuse to encode or to start training in one line."""
    full = models / "tiny.safetensors"
    lean = tmp_path / "lean.safetensors"
    save_tokenizer(load_tokenizer(full), lean, decode_only=True)
    shutil.copy(models / "tiny-prior.safetensors", tmp_path / "lean-prior.safetensors")
    tok = load_tokenizer(lean)
    assert tok.decode_only and tok.family_id == load_tokenizer(full).family_id
    assert lean.stat().st_size < full.stat().st_size
    assert load_codec(lean).family_id == load_codec(full).family_id
    r = vtok("compress", models / "clip.mkv", "-o", tmp_path / "a.vtok", "--model", full, "--gop", "5", "-q")
    assert r.returncode == 0, r.stderr
    ref = load_codec(full).decompress((tmp_path / "a.vtok").read_bytes())
    for n in (1, 2):
        r = vtok("decompress", tmp_path / "a.vtok", "-o", tmp_path / f"d{n}.mkv", "--model", lean, "--workers", n,
                 "-q")
        assert r.returncode == 0, r.stderr
        assert np.array_equal(read_video(tmp_path / f"d{n}.mkv"), ref)
    with pytest.raises(ValueError, match="decodes only"):
        tok.encode(smooth_clip(5, 16, 16))
    _one_line_error(vtok("compress", models / "clip.mkv", "-o", tmp_path / "b.vtok", "--model", lean, "-q"),
                    tmp_path / "b.vtok")
    _one_line_error(vtok("train", "--init", lean, "--run-dir", tmp_path / "run", "--steps", "1"))
    save_tokenizer(tok, tmp_path / "again.safetensors")  # a decode-only model stays decode-only when saved
    assert load_tokenizer(tmp_path / "again.safetensors").family_id == tok.family_id


def test_many_files(models, tmp_path):
    """Several inputs and a folder into an output folder: one output each; a failing input is reported on its own
    line while the others go on (exit code 1); --skip-existing skips complete outputs and redoes a broken one."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write_video(src / "a.mkv", smooth_clip(5, 32, 40, seed=1), 25)
    write_video(src / "sub" / "b.mkv", smooth_clip(9, 32, 40, seed=2), 25)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    m = ["--model", models / "tiny.safetensors"]
    r = vtok("compress", src, tmp_path / "bad.mp4", "-o", tmp_path / "out", *m)
    assert r.returncode == 1 and "bad.mp4" in r.stderr and "1 of 3 inputs failed" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.vtok", "b.vtok"]
    assert "2 done, 0 skipped" in r.stdout
    first = (tmp_path / "out" / "a.vtok").read_bytes()
    (tmp_path / "out" / "b.vtok").write_bytes(b"VTOK broken")  # an output that is not complete
    r = vtok("compress", src, "-o", tmp_path / "out", "--skip-existing", *m)
    assert r.returncode == 0 and "1 done, 1 skipped" in r.stdout, r.stderr
    assert (tmp_path / "out" / "a.vtok").read_bytes() == first
    r = vtok("decompress", tmp_path / "out", "-o", tmp_path / "dec", "--format", "y4m", *m)
    assert r.returncode == 0, r.stderr
    assert [len(read_video(tmp_path / "dec" / f)) for f in ("a.y4m", "b.y4m")] == [5, 9]
    r = vtok("compress", src, "-o", tmp_path / "out2", "--rate", "99", *m)  # each input's line in the CLI's words
    assert r.returncode == 1 and "--rate" in r.stderr and "`rate" not in r.stderr, r.stderr


def test_temporal_hold_codes_fewer_flips_and_decodes_anywhere(models, tmp_path):
    """``--hold``: the tokens are ``encode(hold=...)``'s, GOP by GOP (each GOP holds from its own start), the file
    decodes with no setting on the decoder's side, a model's own hold (weights metadata ``hold``) is the default,
    and a bad hold is refused in one line before any output is written."""
    m = models / "tiny.safetensors"
    codec = load_codec(m)
    assert codec.hold() == 0.0  # a model without its own hold: none
    tok = codec.tokenizer
    src = read_video(models / "clip.mkv")
    s = compress_file(models / "clip.mkv", tmp_path / "h.vtok", m, gop=9, log=lambda *a: None, hold=0.05)
    assert s["frames"] == 23
    decompress_file(tmp_path / "h.vtok", tmp_path / "h.mkv", m, log=lambda *a: None)
    gops = [src[i:i + 9] for i in range(0, 23, 9)]
    held = [tok.encode(g, hold=0.05) for g in gops]
    assert any((h != tok.encode(g)).any() for h, g in zip(held, gops))
    expect = np.concatenate([tok.decode(h, size=g.shape[:3]) for h, g in zip(held, gops)])
    np.testing.assert_array_equal(read_video(tmp_path / "h.mkv"), expect)

    own = tmp_path / "own.safetensors"  # the same weights with a hold of their own
    save_tokenizer(tok, own, extra={"hold": 0.05})
    shutil.copy(models / "tiny-prior.safetensors", tmp_path / "own-prior.safetensors")
    assert load_codec(own).hold() == 0.05 and load_codec(own).family_id == codec.family_id
    assert load_codec(own).compress(src, fps=25, gop=9) == codec.compress(src, fps=25, gop=9, hold=0.05)

    for bad in ("-1", "nan"):
        _one_line_error(vtok("compress", models / "clip.mkv", "-o", tmp_path / "b.vtok", "--model", m, "--hold", bad),
                        tmp_path / "b.vtok")
    other = VideoTokenizer(tiny_config(quantizer="vq", bits=6, nested_dropout=0.0, quantizer_args={"dim": 4}))
    with pytest.raises(ValueError, match="sign-bit"):
        other.eval().encode(src[:5], hold=0.1)
