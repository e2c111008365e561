"""The encoder's search (``codec/search.py``): presets that spend encoding time on ``D + λ·R`` through the frozen
decoder and prior, while the format, the decoder and the token family stay what they are."""

from __future__ import annotations

import pytest
import torch

from vtok.codec.coding import Codec
from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec.search import PRESETS, Search, gop_frames, search_latent, distortion_of
from vtok.codec.models.tokenizer import VideoTokenizer
from tests.conftest import smooth_clip, tiny_config


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config()).eval()
    return Codec(tok, TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze())


def _objective(codec, clip, z, bits, search):
    """``D + λ·R`` of the signs of ``z`` over the whole clip (what the search lowers, measured without windows)."""
    frames = gop_frames([clip]).float().div(127.5).sub(1)
    with torch.no_grad():
        codes = torch.where(z > 0, 1.0, -1.0)
        codes[:, bits:] = 0
        y = codec.tokenizer.decoder(codes)[0].transpose(0, 1)
        rate = codec.float_prior.video_rate(codes, torch.tensor([bits]))[0]
        return float(distortion_of(search.tune)(frames, y) + search.lam * rate / frames[:, 0].numel())


def test_presets_and_tunes_are_checked():
    assert Search.of() == Search.of("medium") and not Search.of("fast").steps and not Search.of().steps
    assert Search.of("slow").steps < Search.of("veryslow").steps
    assert set(PRESETS) == {"fast", "medium", "slow", "veryslow"}
    with pytest.raises(ValueError, match="preset must be one of"):
        Search.of("placebo")
    with pytest.raises(ValueError, match="tune must be one of"):
        Search.of("slow", "ssim")


@pytest.mark.parametrize("bits", [10, 6])
def test_search_lowers_its_objective(codec, bits):
    clip = smooth_clip(9, 32, 48)
    search = Search(6, 0.05, "psnr", 1.0)
    tok = codec.tokenizer
    with torch.inference_mode():
        z = torch.cat(list(tok.latents([clip])), 2)
    start = tok.quantizer.indices_to_codes(tok.quantizer(z).indices) * z.abs().clamp_min(1e-3)
    searched = search_latent(tok, codec.float_prior, distortion_of("psnr"), start, gop_frames([clip]), bits, search)
    assert torch.equal(searched[:, bits:], start[:, bits:])  # bits past the coded prefix are left alone
    assert _objective(codec, clip, searched, bits, search) < _objective(codec, clip, start, bits, search)


@pytest.mark.parametrize("rate", [0, 2, None])
def test_searched_files_decode_with_the_same_model(codec, rate):
    """A searched file is an ordinary file of the family: same header, decodable, other bits than one pass."""
    clip = smooth_clip(13, 32, 48)
    plain = codec.compress(clip, fps=25, rate=rate, gop=9)
    searched = codec.compress(clip, fps=25, rate=rate, gop=9, search=Search(3, 0.1, "psnr", 1.0))
    assert _header(searched) == _header(plain)  # family, sizes, bits, rate
    assert searched != plain
    assert codec.decompress(searched).shape == clip.shape


def _header(data: bytes):
    import io

    from vtok.bitstream.reader import ContainerReader

    return ContainerReader(io.BytesIO(data)).header


def test_searched_files_with_workers(codec, tmp_path):
    """GOPs searched in worker processes make a file of the same family and frames (the search's float rounding
    follows the thread count, so a few bits may differ from one process's)."""
    from vtok.codec.files import compress_file
    from vtok.codec.media.write import write_video

    src = tmp_path / "c.y4m"
    write_video(src, smooth_clip(10, 32, 48), fps=25)
    one, two = tmp_path / "one.vtok", tmp_path / "two.vtok"
    for out, workers in ((one, 1), (two, 2)):
        compress_file(src, out, codec=codec, gop=5, log=lambda *a: None, workers=workers, preset="slow",
                      tune="psnr")
    assert _header(one.read_bytes()) == _header(two.read_bytes())
    assert codec.decompress(two.read_bytes()).shape == (10, 32, 48, 3)


def test_a_veryslow_file_decodes_with_the_bundled_model():
    from vtok.codec.loading import load_codec

    clip = smooth_clip(5, 48, 64)
    data = load_codec().compress(clip, fps=25, rate=3, search=Search.of("veryslow", "psnr"))
    assert load_codec().decompress(data).shape == clip.shape


def test_bench_takes_presets_as_peers():
    from vtok.bench.peers.codecs import AnchorSettings, VtokSettings, build_codec, is_codec

    assert is_codec("vtok@slow") and is_codec("vtok:default@veryslow") and not is_codec("vtok@placebo")
    assert not is_codec("x265@slow")
    bc = build_codec("vtok:default@slow", VtokSettings(rates=[7], tune="psnr"), AnchorSettings())
    assert bc.search == Search.of("slow", "psnr") and bc.points()[0][1]["preset"] == "slow"
    assert "preset" not in build_codec("vtok@medium", VtokSettings(rates=[7]), AnchorSettings()).points()[0][1]
