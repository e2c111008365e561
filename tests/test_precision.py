"""The decoder in bfloat16 (``--precision``): close to float32's picture, the encoder and files untouched, carried to
worker processes and through ``decompress_file``; ``vtok bench speed`` reports every precision."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from tests.conftest import smooth_clip, tiny_config
from vtok.codec.coding import Codec
from vtok.codec.models.precision import native_bf16, resolved
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.prior import PriorConfig, TokenPrior


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config(arch="tae", bits=12, group_bits=4)).eval()
    return Codec(tok, TokenPrior(PriorConfig(bits=12, group_bits=4, channels=8, layers=2)).freeze())


def _decoded(tok, tokens, precision, size):
    tok.precision = precision
    try:
        return tok.decode(tokens, size=size)
    finally:
        tok.precision = "fp32"


def test_bf16_decodes_close_to_fp32_and_leaves_the_tokens_alone(codec):
    tok = codec.tokenizer
    clip = smooth_clip(9, 48, 64, seed=1)
    tokens = tok.encode(clip, hold=0.1)
    tok.precision = "bf16"
    try:
        assert np.array_equal(tok.encode(clip, hold=0.1), tokens)  # the encoder stays float32
    finally:
        tok.precision = "fp32"
    a = _decoded(tok, tokens, "fp32", clip.shape[:3]).astype(int)
    b = _decoded(tok, tokens, "bf16", clip.shape[:3]).astype(int)
    assert a.shape == b.shape == clip.shape
    diff = np.abs(a - b)
    assert diff.any(), "the bf16 path computed in float32"
    assert diff.mean() < 1.0 and diff.max() <= 8


def test_bf16_stays_inside_the_decoder(codec):
    """autocast covers the decoder's own steps, never the caller's code between the pieces it yields."""
    tok = codec.tokenizer
    tokens = tok.encode(smooth_clip(9, 48, 64, seed=2))
    tok.precision = "bf16"
    try:
        seen = [torch.is_autocast_enabled("cpu") for _ in tok.decode_pieces(tokens)]
    finally:
        tok.precision = "fp32"
    assert seen and not any(seen)


def test_the_precision_reaches_workers_and_decompress_file(codec, tmp_path):
    from vtok.codec.files import decompress_file
    from vtok.codec.media.read import read_video

    clip = smooth_clip(9, 48, 64, seed=3)
    data = codec.compress(clip, gop=5)
    here = {}
    for p in ("fp32", "bf16"):
        codec.tokenizer.precision = p
        try:
            here[p] = codec.decompress(data)
            coded = codec.open(io.BytesIO(data))
            far = np.concatenate([v for v, _ in codec.decompress_from(coded, workers=2)])
        finally:
            codec.tokenizer.precision = "fp32"
        assert np.array_equal(far, here[p])
    assert not np.array_equal(here["fp32"], here["bf16"])
    (tmp_path / "c.vtok").write_bytes(data)
    for p in ("fp32", "bf16"):
        decompress_file(tmp_path / "c.vtok", tmp_path / f"{p}.mkv", codec=codec, precision=p, log=lambda *a: None)
        assert np.array_equal(read_video(tmp_path / f"{p}.mkv"), here[p])
    codec.tokenizer.precision = "fp32"


def test_precision_names():
    assert resolved("auto") == ("bf16" if native_bf16() else "fp32")
    assert resolved("auto", "cuda") == "fp32" and resolved("fp32") == "fp32" and resolved("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolved("int8")


def test_bench_speed_reports_each_precision_and_the_whole_codec(codec, tmp_path):
    from vtok.bench.speed import run_speed
    from vtok.codec.models.zoo import save_tokenizer

    save_tokenizer(codec.tokenizer, tmp_path / "m.safetensors", half=False)
    codec.prior.save(tmp_path / "m-prior.safetensors")
    rows = run_speed(str(tmp_path / "m.safetensors"), frames=5, size="64x48,32x32", repeats=1,
                     precision="fp32,bf16", log=lambda *a: None)
    assert [(r["width"], r["precision"]) for r in rows] == [(64, "fp32"), (64, "bf16"), (32, "fp32"), (32, "bf16")]
    for r in rows:
        assert r["decode_fps"] > 0 and r["codec_decode_fps"] > 0 and r["codec_encode_fps"] > 0 and r["bpp"] > 0
        assert r["prior_decode_ms"] > 0
        assert r["codec_decode_peak_mib"] is None or r["codec_decode_peak_mib"] > 0


def test_vtok_decompress_decodes_in_bf16_where_the_cpu_has_it(codec, tmp_path):
    import subprocess
    import sys

    from vtok.codec.media.read import read_video
    from vtok.codec.models.zoo import save_tokenizer

    save_tokenizer(codec.tokenizer, tmp_path / "m.safetensors", half=False)
    codec.prior.save(tmp_path / "m-prior.safetensors")
    (tmp_path / "c.vtok").write_bytes(codec.compress(smooth_clip(9, 48, 64, seed=4)))
    out = {}
    for p in ("fp32", "bf16", None):
        args = ["decompress", tmp_path / "c.vtok", "-o", tmp_path / f"{p}.mkv", "--model", tmp_path / "m.safetensors"]
        r = subprocess.run([sys.executable, "-m", "vtok", *map(str, args + (["--precision", p] if p else []))],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out[p] = read_video(tmp_path / f"{p}.mkv")
    assert np.array_equal(out["fp32"], codec.decompress((tmp_path / "c.vtok").read_bytes()))
    assert np.array_equal(out[None], out["bf16" if native_bf16() else "fp32"])
    assert not np.array_equal(out["fp32"], out["bf16"])


def test_the_prior_s_incremental_first_layer_gives_the_same_integers():
    """``IntegerPrior.logits(incremental=True)``: a context that changes in a few channels, in none, or in most gives
    the logits of the full computation."""
    from vtok.codec.integer_prior import IntegerPrior

    torch.manual_seed(11)
    prior = TokenPrior(PriorConfig(bits=12, group_bits=4, channels=8, layers=2)).freeze()
    x = torch.randint(-1, 2, (1, prior.cfg.in_channels, 5, 7)).double()
    assert torch.equal(prior.logits(x, incremental=True), prior.logits(x))
    for change in (3, 0, prior.cfg.in_channels):
        y = x.clone()
        y[:, :change] = torch.randint(-1, 2, y[:, :change].shape).double()
        assert torch.equal(prior.logits(y, incremental=True), prior.logits(y)), change
        x = y
    assert isinstance(prior, IntegerPrior)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_prior_s_pass_logits_are_its_logits_at_the_pass_positions(layers):
    """``IntegerPrior.pass_logits`` (the last 3×3 layer at the step's positions only, the output layer for the
    step's bits only) gives the same integers as the full computation, in coding order, at any frame size."""
    from vtok.codec.entropy import anchor_mask

    torch.manual_seed(12)
    prior = TokenPrior(PriorConfig(bits=12, group_bits=4, channels=8, layers=layers)).freeze()
    for h, w in [(5, 7), (1, 1), (1, 2), (2, 1), (4, 4), (3, 6)]:
        x = torch.randint(-1, 2, (1, prior.cfg.in_channels, h, w)).double()
        full = prior.logits(x)[0]
        for pass_ in (0, 1):
            positions = torch.from_numpy(anchor_mask(h, w) if pass_ == 0 else ~anchor_mask(h, w))
            for start, end in [(0, 4), (8, 12), (0, 12)]:
                got = prior.pass_logits(x, pass_, start, end)
                assert got.shape == (end - start, int(positions.sum()))
                assert torch.equal(got, full[start:end][:, positions]), (h, w, pass_, start, end)


def test_the_decoder_holds_channels_last_weights_and_a_bf16_twin_that_autocast_agrees_with(codec):
    """The decoder's convolution weights are channels-last (the ids and saved bytes do not see it); its bf16 twin
    (``for_precision``) computes what autocast computes on the float32 weights, and is made again once a weight
    changes."""
    from vtok.codec.models.precision import autocast, for_precision

    tok = copy.deepcopy(codec.tokenizer)
    convs = [p for p in tok.decoder.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    codes = tok.quantizer.indices_to_codes(torch.as_tensor(tok.encode(smooth_clip(5, 48, 64, seed=3)))[None])
    twin = for_precision(tok.decoder, "bf16")
    assert for_precision(tok.decoder, "fp32") is tok.decoder and for_precision(tok.decoder, "bf16") is twin
    assert all(p.dtype == torch.bfloat16 for m in twin.modules() if isinstance(m, torch.nn.Conv2d)
               for p in m.parameters())
    with torch.inference_mode(), autocast("bf16"):
        assert torch.equal(twin(codes), tok.decoder(codes))
    with torch.no_grad():
        convs[0].add_(0.01)
    assert for_precision(tok.decoder, "bf16") is not twin
