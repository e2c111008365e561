"""The bundled default model: it loads, round-trips, and its rate ladder behaves (bpp and quality rise with N)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vtok.bench.metrics import psnr_frames
from vtok.bitstream.info import file_info as vtok_info
from vtok.codec.coding import EARLIER_PRIORS, load_codec
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.ladder import RatePoint, rate_ladder
from vtok.codec.models.tokenizer import BUNDLED_MODELS, DEFAULT_WEIGHTS, load_tokenizer, model_path
from vtok.codec.media.write import VideoWriter
from vtok.codec.media.read import read_video
from tests.conftest import SHARED


def _sample_clip() -> np.ndarray:
    """9 frames of a real eval clip at 640x360 when ../shared is there, else a synthetic clip."""
    from vtok.bench.datasets import synthetic_clip
    from vtok.codec.media.read import list_videos

    folder = SHARED / "datasets" / "eval"
    if folder.is_dir():
        files = list_videos([folder])
        return read_video(files[1], max_frames=9, resize=(640, 360))
    return synthetic_clip(9, 360, 640)


def test_bundled_files_are_small_safetensors():
    for name, file in BUNDLED_MODELS.items():
        weights = model_path(name)
        for p in (weights, weights.with_name(weights.stem + "-prior.safetensors")):
            assert p.is_file() and p.stat().st_size <= 20 * 1024 * 1024, p
        for f in EARLIER_PRIORS.get(name, ()):
            assert weights.with_name(f).stat().st_size <= 20 * 1024 * 1024, f
    assert DEFAULT_WEIGHTS == model_path("default")
    tok = load_tokenizer()
    assert tok.cfg.arch == "tae" and tok.bits == 36 and tok.rate_ladder == [2, 3, 5, 8, 14, 22, 36]
    assert rate_ladder(tok) == [RatePoint(0.25, 14), RatePoint(0.25, 36)] + [
        RatePoint(1.0, k) for k in (5, 8, 10, 14, 22, 36)]  # the model's own ladder (docs/RATE.md)
    v2 = load_tokenizer("tae36-v2")  # an earlier default, kept for its files: the same encoder
    assert load_tokenizer("tae36-v1").cfg == v2.cfg and dataclasses.replace(v2.cfg, dec_blocks=6) == tok.cfg
    assert load_tokenizer("tae36-v3").cfg == tok.cfg  # the previous default: the same architecture
    assert load_tokenizer("tae36-v4").cfg == tok.cfg  # the default's training continued: the same architecture
    old = load_tokenizer("magvit18")
    assert old.cfg.arch == "magvit" and old.bits == 18 and old.rate_ladder == [2, 3, 4, 6, 9, 12, 18]
    assert rate_ladder(old) == [RatePoint(0.25, 18), RatePoint(0.375, 18), RatePoint(0.5, 18)] + [
        RatePoint(1.0, k) for k in (3, 4, 6, 9, 12, 18)]


@pytest.fixture(scope="module")
def ladder_results(tmp_path_factory):
    d = tmp_path_factory.mktemp("ladder")
    clip = _sample_clip()
    with VideoWriter(d / "src.mkv", clip.shape[2], clip.shape[1], 30) as w:
        w.write(clip)
    out = []
    for rate, point in enumerate(rate_ladder(load_tokenizer())):
        s = compress_file(d / "src.mkv", d / f"r{rate}.vtok", rate=rate, quiet=True, log=lambda *a: None)
        info = vtok_info(d / f"r{rate}.vtok")
        assert (info["rate"], info["bits_per_token"]) == (rate, point.bits)
        assert (info["coded_width"] < 640) == (point.scale < 1) and info["width"] == 640
        decompress_file(d / f"r{rate}.vtok", d / f"r{rate}.mkv", quiet=True, log=lambda *a: None)
        dec = read_video(d / f"r{rate}.mkv")
        out.append((s["bpp"], float(psnr_frames(clip, dec).mean()), dec.shape == clip.shape))
    return out


def test_ladder_spans_eight_times(ladder_results):
    assert ladder_results[-1][0] >= 8 * ladder_results[0][0], [b for b, _, _ in ladder_results]


def test_every_rate_point_decodes(ladder_results):
    assert all(ok for _, _, ok in ladder_results)


def test_bpp_rises_strictly_with_rate(ladder_results):
    bpps = [b for b, _, _ in ladder_results]
    assert all(a < b for a, b in zip(bpps, bpps[1:])), bpps


def test_quality_rises_with_rate(ladder_results):
    psnr = [p for _, p, _ in ladder_results]
    assert all(b > a for a, b in zip(psnr, psnr[1:])), psnr


def test_default_codec_round_trip_tokens():
    from vtok.codec.entropy import decode_tokens, encode_tokens

    codec = load_codec()
    bits = codec.tokenizer.bits
    tokens = codec.tokenizer.encode(_sample_clip()[:5, :64, :96])
    payload, ce = encode_tokens(codec.prior, tokens, bits)
    np.testing.assert_array_equal(decode_tokens(codec.prior, payload, tokens.shape, bits), tokens)
    assert len(payload) * 8 < bits * tokens.size  # the prior saves bits on real content


@pytest.mark.parametrize("earlier", ["tae36-v4", "tae36-v3", "tae36-v2"])
def test_default_shares_its_encoder_and_prior_with_earlier_defaults(earlier):
    """The default is tae36-v2 with a retrained, larger decoder (tae36-v3 an earlier point of that decoder's
    training): the same tokens, coded by the same prior, decoded differently."""
    clip = _sample_clip()[:5, :64, :96]
    new, old = load_codec(), load_codec(earlier)
    tokens = new.tokenizer.encode(clip)
    np.testing.assert_array_equal(tokens, old.tokenizer.encode(clip))
    assert new.prior.model_id == old.prior.model_id and new.model_id != old.model_id
    assert not np.array_equal(new.tokenizer.decode(tokens), old.tokenizer.decode(tokens))


EARLIER = [("tae36-v3", None), ("tae36-v2", None), ("tae36-v1", None), ("magvit18", None)] + [
    ("tae36-v2", model_path("tae36-v2").with_name(f)) for f in EARLIER_PRIORS["tae36-v2"]]


@pytest.mark.parametrize("earlier,prior", EARLIER, ids=[m if p is None else p.name for m, p in EARLIER])
def test_files_of_the_earlier_default_models_still_decode(tmp_path, earlier, prior):
    """A file made by an earlier default (now bundled under its own name), or by the default tokenizer with its
    earlier prior, decodes without naming the model."""
    clip = _sample_clip()[:5, :64, :96]
    with VideoWriter(tmp_path / "src.mkv", 96, 64, 25) as w:
        w.write(clip)
    compress_file(tmp_path / "src.mkv", tmp_path / "old.vtok", model=earlier, prior=prior, quiet=True,
                  log=lambda *a: None)
    assert load_codec(earlier, prior).model_id != load_codec().model_id
    decompress_file(tmp_path / "old.vtok", tmp_path / "old.mkv", quiet=True, log=lambda *a: None)
    assert read_video(tmp_path / "old.mkv").shape == clip.shape
