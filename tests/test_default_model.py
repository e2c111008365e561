"""The bundled default model: it loads, round-trips, and its rate ladder behaves (bpp and quality rise with N)."""

from __future__ import annotations

import numpy as np
import pytest

from vtok.bench.analysis.metrics import psnr_frames
from vtok.bitstream.info import file_info as vtok_info
from vtok.codec.coding import ModelMismatch
from vtok.codec.loading import load_codec
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.ladder import RatePoint, bit_ladder, rate_ladder
from vtok.codec.models.zoo import BUNDLED_MODELS, DEFAULT_WEIGHTS, WEIGHTS_DIR, load_tokenizer, model_path
from vtok.codec.media.write import VideoWriter
from vtok.codec.media.read import read_video
from tests.conftest import REPO, SHARED

FAMILIES = REPO / "tests" / "data" / "families"


def _sample_clip() -> np.ndarray:
    """9 frames of a real eval clip at 640x360 when ../shared is there, else a synthetic clip."""
    from vtok.bench.datasets import synthetic_clip
    from vtok.codec.media.read import list_videos

    folder = SHARED / "datasets" / "eval"
    if folder.is_dir():
        files = list_videos([folder])
        return read_video(files[1], max_frames=9, resize=(640, 360))
    return synthetic_clip(9, 360, 640)


# The default's full-size rate points: bits per token (5..36 the sign bits, then refinement bits).
LADDER_BITS = (5, 8, 10, 14, 22, 36, 40, 44, 48, 54, 60)


def test_bundled_files_are_small_safetensors():
    """One model and its prior per token family (and the earlier priors that still decode the model's older files),
    ≤ 20 MB a model, ≤ 25 MB of weights in all, nothing else bundled."""
    from vtok.codec.models.zoo import earlier_priors

    shipped = []
    for name, file in BUNDLED_MODELS.items():
        weights = model_path(name)
        for p in (weights, weights.with_name(weights.stem + "-prior.safetensors"), *earlier_priors(name)):
            assert p.is_file() and p.stat().st_size <= 20 * 1024 * 1024, p
            shipped.append(p)
    assert sorted(WEIGHTS_DIR.glob("*.safetensors")) == sorted(shipped)
    assert sum(p.stat().st_size for p in shipped) <= 25 * 1024 * 1024
    assert len({load_codec(name).family_id for name in BUNDLED_MODELS}) == len(BUNDLED_MODELS)
    assert DEFAULT_WEIGHTS == model_path("default")
    tok = load_tokenizer()
    assert tok.cfg.arch == "tae" and tok.bits == 60 and tok.base_bits == 36 and tok.cfg.quantizer == "rlfq"
    assert rate_ladder(tok) == [RatePoint(0.25, 14), RatePoint(0.25, 36)] + [
        RatePoint(1.0, k) for k in LADDER_BITS]  # the model's own ladder (docs/RATE.md)
    old = load_tokenizer("magvit18")
    assert old.cfg.arch == "magvit" and old.bits == 18 and bit_ladder(old) == [2, 3, 4, 6, 9, 12, 18]
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
        s = compress_file(d / "src.mkv", d / f"r{rate}.vtok", rate=rate, log=lambda *a: None)
        info = vtok_info(d / f"r{rate}.vtok")
        assert (info["rate"], info["bits_per_token"]) == (rate, point.bits)
        assert (info["coded_width"] < 640) == (point.scale < 1) and info["width"] == 640
        decompress_file(d / f"r{rate}.vtok", d / f"r{rate}.mkv", log=lambda *a: None)
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


def test_family_id_leaves_out_the_decoder(tiny_tokenizer):
    """Another decoder for the same tokens keeps the family id (and changes the decoder id and the model id);
    another encoder changes the family."""
    import torch

    from vtok.codec.models.tokenizer import VideoTokenizer

    other = VideoTokenizer(tiny_tokenizer.cfg).eval()
    other.load_state_dict(tiny_tokenizer.state_dict())
    with torch.no_grad():
        next(other.decoder.parameters()).add_(0.5)
    assert other.family_id == tiny_tokenizer.family_id
    assert other.decoder_id != tiny_tokenizer.decoder_id and other.model_id != tiny_tokenizer.model_id
    with torch.no_grad():
        next(other.encoder.parameters()).add_(0.5)
    assert other.family_id != tiny_tokenizer.family_id


# Files of every bundled family written before ids named families (tests/data/families, 9 frames of 64x48): the old
# default (now the tae36 family) and the same family's earlier decoder tae36-v3, and magvit18; tae36-v1's family is no
# longer bundled.
EARLIER_FILES = ["default-32ad88e7196fb016", "tae36-v3-ca3c687d825e9720", "magvit18-b01505523f629820"]


@pytest.mark.parametrize("name", EARLIER_FILES)
def test_a_file_of_each_bundled_family_decodes(tmp_path, name):
    """Without naming a model, with the family's bundled (best) decoder: the same frames as the family's codec
    decodes from a file it writes now of the same tokens."""
    src = FAMILIES / f"{name}.vtok"
    decompress_file(src, tmp_path / "out.mkv", log=lambda *a: None)  # lossless RGB
    frames = read_video(tmp_path / "out.mkv")
    assert frames.shape == (9, 48, 64, 3)
    codec = load_codec("magvit18" if name.startswith("magvit18") else "tae36")
    assert codec.codes(vtok_info(src)["model_id"]) and vtok_info(src)["model_id"] != codec.family_id
    np.testing.assert_array_equal(frames, codec.decompress(src.read_bytes()))


# Files written with today's ids: the default and tae36, the default before rate training.
CURRENT_FILES = {"default-de824726e3fb8460": "default", "tae36-6f9eaa5da13976bb": "tae36"}


@pytest.mark.parametrize("name", CURRENT_FILES)
def test_a_file_of_each_tae_family_decodes_without_naming_its_model(tmp_path, name):
    """The default and tae36 are two token families: each file finds its own bundled model, and the other family's
    model refuses it in one line."""
    src = FAMILIES / f"{name}.vtok"
    decompress_file(src, tmp_path / "out.mkv", log=lambda *a: None)
    own = load_codec(CURRENT_FILES[name])
    assert vtok_info(src)["model_id"] == own.family_id
    np.testing.assert_array_equal(read_video(tmp_path / "out.mkv"), own.decompress(src.read_bytes()))
    other = load_codec("tae36" if CURRENT_FILES[name] == "default" else "default")
    with pytest.raises(ModelMismatch):
        other.decompress(src.read_bytes())


# Files of the default's earlier families: its tokens under the prior before the re-fit to held tokens, and under
# the prior it had before refinement bits (the same encoder: the first 36 bits of today's tokens).
EARLIER_DEFAULT_FILES = ["default-rd-090e53a39cdc335d", "default-hp-cc1d7174b340ee80"]


@pytest.mark.parametrize("name", EARLIER_DEFAULT_FILES)
def test_a_file_of_the_defaults_earlier_families_decodes_with_it(tmp_path, name):
    """Found by itself through the prior kept beside the default's weights, and decoded with today's decoder from
    the first 36 bits of its tokens. The family its sign bits code in (weights metadata ``base_codec``) is one the
    default codes itself (``Codec.base``); the default refuses the other in one line."""
    from vtok.codec.coding import Codec
    from vtok.codec.models.zoo import earlier_priors
    from vtok.codec.prior import IntegerPrior

    src = FAMILIES / f"{name}.vtok"
    family = name.rsplit("-", 1)[1]
    [path] = [p for p in earlier_priors("default") if p.name == f"vtok-default-prior-{family}.safetensors"]
    older = Codec(load_tokenizer("default"), IntegerPrior.load(path))
    assert older.family_id == vtok_info(src)["model_id"] == family != load_codec("default").family_id
    assert older.model_bits == 36 == vtok_info(src)["model_bits"]
    decompress_file(src, tmp_path / "out.mkv", log=lambda *a: None)
    np.testing.assert_array_equal(read_video(tmp_path / "out.mkv"), older.decompress(src.read_bytes()))
    default = load_codec("default")
    if default.base is not None and default.base.family_id == family:
        np.testing.assert_array_equal(default.decompress(src.read_bytes()), older.decompress(src.read_bytes()))
    else:
        with pytest.raises(ModelMismatch):
            default.decompress(src.read_bytes())


def test_the_default_codes_its_sign_bit_rates_as_the_family_they_grew_from():
    """Rates 0-7 (36 bits and fewer) of the default are files of the family its sign bits grew from, the bytes that
    family's codec makes; rates above carry refinement bits and name the default's own family."""
    from vtok.bitstream.info import file_info
    from vtok.codec.coding import Codec

    codec = load_codec("default")
    assert codec.base is not None and codec.base.model_bits == codec.tokenizer.base_bits == 36
    clip = _sample_clip()[:5, :64, :96]
    low = codec.compress(clip, rate=7)
    assert low == Codec(codec.tokenizer, codec.base.prior).compress(clip, rate=7)
    assert np.array_equal(codec.decompress(low), codec.base.decompress(low))
    high = codec.compress(clip, rate=9)
    assert codec.codes(_model_id(high)) and not codec.codes(_model_id(low))


def _model_id(data: bytes) -> str:
    import io

    from vtok.codec.coded import CodedFile
    return CodedFile(io.BytesIO(data)).header.model_id


def test_the_two_decoders_of_one_family_wrote_the_same_bits():
    """tae36-v3 and the first default differ in their decoders only: their files hold the same payload."""
    a, b = (FAMILIES / f"{n}.vtok" for n in EARLIER_FILES[:2])
    codec = load_codec("tae36")
    np.testing.assert_array_equal(codec.decompress(a.read_bytes()), codec.decompress(b.read_bytes()))


def test_a_file_of_a_family_no_longer_bundled_names_its_id(tmp_path):
    src = FAMILIES / "tae36-v1-1ddd0405885226c9.vtok"
    with pytest.raises(ModelMismatch, match="1ddd0405885226c9.*`model=PATH`"):
        decompress_file(src, tmp_path / "out.y4m", log=lambda *a: None)
    assert not (tmp_path / "out.y4m").exists()
