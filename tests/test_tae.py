"""The TAEF2-based tokenizer body: TAEF2 loads key for key, the video layers start as the per-frame model, causality."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from vtok.codec.ladder import bit_ladder

from vtok.codec.models.layers import TemporalGrow, TemporalPool, fold, unfold
from vtok.codec.models.tae import TaeVideoDecoder, TaeVideoEncoder, init_from_taef2
from vtok.codec.models.taef2 import TAE_CH, load_taef2
from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer
from tests.conftest import need_shared, tae_tokenizer_with_taps


def test_pool_and_grow_frame_counts_and_identity_start():
    x = torch.randn(2 * 5, TAE_CH, 3, 4)  # two clips of 5 frames, folded
    with torch.no_grad():
        pooled, t = TemporalPool()(x, 5)
    assert t == 3 and pooled.shape == (2 * 3, TAE_CH, 3, 4)
    v = x.reshape(2, 5, TAE_CH, 3, 4)
    torch.testing.assert_close(pooled.reshape(2, 3, TAE_CH, 3, 4), v[:, [0, 2, 4]])  # the later frame
    with torch.no_grad():
        grown, t2 = TemporalGrow()(pooled, 3)
    assert t2 == 5
    g = grown.reshape(2, 5, TAE_CH, 3, 4)
    torch.testing.assert_close(g, v[:, [0, 2, 2, 4, 4]])  # copies
    with pytest.raises(ValueError, match="1 \\+ 2k"):
        TemporalPool()(x[:4], 4)


def test_fold_unfold_round_trip():
    x = torch.randn(2, 3, 5, 4, 6)
    f, t = fold(x)
    assert f.shape == (10, 3, 4, 6) and torch.equal(unfold(f, t), x)


def test_encoder_is_causal_and_an_image_is_a_one_frame_video():
    torch.manual_seed(0)
    enc = TaeVideoEncoder(12).eval()
    for blk in list(enc.quarter) + list(enc.eighth):  # make the temporal taps matter
        torch.nn.init.normal_(blk.prev.weight, std=0.05)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = enc(x)
        assert z.shape == (1, 12, 3, 4, 4)
        image = enc(x[:, :, :1])
        y = x.clone()
        y[:, :, 5:] = 0  # change frames 5..8: latent frames 0 and 1 (frames 0 and 1..4) must not move
        z2 = enc(y)
    torch.testing.assert_close(image[:, :, 0], z[:, :, 0])
    torch.testing.assert_close(z2[:, :, :2], z[:, :, :2])
    assert not torch.allclose(z2[:, :, 2], z[:, :, 2])


def test_decoder_is_causal():
    torch.manual_seed(0)
    dec = TaeVideoDecoder(12).eval()
    for blk in list(dec.quarter) + list(dec.eighth):
        torch.nn.init.normal_(blk.prev.weight, std=0.05)
    q = torch.sign(torch.randn(1, 12, 3, 4, 4))
    with torch.no_grad():
        y = dec(q)
        q2 = q.clone()
        q2[:, :, 2] *= -1
        y2 = dec(q2)
    assert y.shape == (1, 3, 9, 32, 32)
    torch.testing.assert_close(y2[:, :, :5], y[:, :, :5])  # frames of latent 0 and 1 do not see latent 2


def test_dequantizer_starts_as_scaled_signs():
    dec = TaeVideoDecoder(36)
    b = torch.sign(torch.randn(2, 36, 5, 5))
    with torch.no_grad():
        z = dec.dequant(b)
    torch.testing.assert_close(z[:, :, 1:-1, 1:-1], 0.8 * b[:, :32, 1:-1, 1:-1])


def test_taef2_loads_and_reconstructs():
    folder = need_shared("weights", "taef2")
    from vtok.codec.media.read import read_video

    enc, dec = load_taef2(folder)
    clip = need_shared("datasets", "eval", "gh-sam2__demo_data_gallery_01_dog.mp4")
    x = torch.from_numpy(read_video(clip, max_frames=1, resize=(320, 184))).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        y = dec(enc(x))
    psnr = float(10 * torch.log10(1 / ((y - x) ** 2).mean()))
    assert psnr > 26, psnr


def test_video_layers_start_as_the_per_frame_model():
    """After loading TAEF2's stages, a still clip encodes to the same latent in every latent frame."""
    need_shared("weights", "taef2")
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(arch="tae", bits=36, group_bits=9)).eval()
    init_from_taef2(tok.encoder, tok.decoder)
    frame = torch.rand(1, 3, 1, 32, 48) * 2 - 1
    with torch.no_grad():
        z = tok.encoder(frame.expand(-1, -1, 9, -1, -1))
        y = tok.decoder(torch.sign(z))
    for k in range(3):
        torch.testing.assert_close(z[:, :, k], z[:, :, 0], atol=1e-4, rtol=1e-4)
    for k in range(9):
        torch.testing.assert_close(y[:, :, k], y[:, :, 0], atol=1e-4, rtol=1e-4)


def test_tae_tokenizer_round_trip_shapes():
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(arch="tae", bits=36, group_bits=9)).eval()
    video = np.random.default_rng(0).integers(0, 256, (6, 20, 36, 3), dtype=np.uint8)
    tokens = tok.encode(video)
    assert tokens.shape == (3, 3, 5) and tokens.max() < 2 ** 36
    assert tok.decode(tokens, size=video.shape[:3]).shape == video.shape
    assert bit_ladder(tok) == [2, 3, 5, 8, 14, 22, 36]


def test_distill_runs_and_resumes(tmp_path):
    need_shared("weights", "taef2")
    from safetensors import safe_open

    from vtok.codec.training.distill import distill, load_stem_head
    from vtok.codec.media.write import write_video
    from tests.conftest import smooth_clip

    write_video(tmp_path / "clip.mkv", smooth_clip(12, 48, 64), 25)
    kw = dict(data=[tmp_path / "clip.mkv"], batch=2, crop=32, lpips_weight=0.0, log=lambda *a: None)
    distill(tmp_path / "run", steps=2, **kw)
    out = distill(tmp_path / "run", steps=3, **kw)  # resumes at step 2
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["step"] == "3"
    stem, head = load_stem_head(out)
    assert "at_half.weight" in stem and "to_full.weight" in head


def test_refine_blocks_start_as_the_identity_and_stay_causal():
    from vtok.codec.training.start import grow_decoder

    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(arch="tae", bits=12, group_bits=6)).eval()
    grown = grow_decoder(tok, 2).eval()
    assert grown.cfg.dec_blocks == 2 and len(grown.decoder.refine) == 2
    q = torch.sign(torch.randn(1, 12, 3, 4, 4))
    with torch.no_grad():
        torch.testing.assert_close(grown.decoder(q), tok.decoder(q))
        for blk in grown.decoder.refine:
            torch.nn.init.normal_(blk.conv[4].weight, std=0.05)
            torch.nn.init.normal_(blk.prev.weight, std=0.05)
        y = grown.decoder(q)
        q2 = q.clone()
        q2[:, :, 2] *= -1
        y2 = grown.decoder(q2)
    assert not torch.allclose(y, tok.decoder(q))  # the blocks are in the path
    torch.testing.assert_close(y2[:, :, :5], y[:, :, :5])  # and keep it causal
    with pytest.raises(ValueError, match="shrink"):
        grow_decoder(grown, 1)


def test_config_json_of_earlier_models_is_unchanged():
    """``dec_blocks`` came later: at 0 it is left out of the JSON, so earlier models keep their model ids."""
    cfg = TokenizerConfig(arch="tae", bits=36, group_bits=9)
    assert "dec_blocks" not in cfg.to_json()
    assert TokenizerConfig.from_json(cfg.to_json()) == cfg
    grown = TokenizerConfig(arch="tae", bits=36, group_bits=9, dec_blocks=3)
    assert TokenizerConfig.from_json(grown.to_json()).dec_blocks == 3
    with pytest.raises(ValueError, match="dec_blocks"):
        VideoTokenizer(TokenizerConfig(dec_blocks=1))


def test_streaming_matches_the_whole_clip(monkeypatch):
    """Run chunk by chunk with the causal state carried along — one frame per chunk, three (a temporal pool's odd
    frame waits in the stream), three with the 1/4 stage in groups of one frame (written over their input), and
    with every stage in strips of rows (``in_strips``) — the tokenizer gives the tokens and pictures it gives on the
    whole clip at once (to float rounding: pixels within 1), for a clip whose length needs temporal padding and a
    frame size that needs spatial padding."""
    import vtok.codec.models.layers as layers_module
    import vtok.codec.models.tae as tae_module
    import vtok.codec.models.tokenizer as tokenizer_module

    tok = tae_tokenizer_with_taps()
    rng = np.random.default_rng(0)
    clip = np.clip(rng.normal(128, 40, (1, 100, 60, 3)) + np.arange(15)[:, None, None, None] * 6, 0, 255)
    clip = clip.astype(np.uint8)
    monkeypatch.setattr(tokenizer_module, "FRAME_PIXELS", 10 ** 12)  # one chunk: the whole clip
    whole = tok.encode(clip)
    whole_held = tok.encode(clip, hold=0.05)  # the temporal hold's state is carried from chunk to chunk too
    assert (whole_held != whole).any()
    whole_pictures = tok.decode(whole, size=clip.shape[:3])
    assert whole.shape == (5, 13, 8) and whole_pictures.shape == clip.shape
    frame = 104 * 64  # the padded frame
    for chunk, split in ((1, None), (3, None), (3, "groups"), (1, "strips")):
        monkeypatch.setattr(tokenizer_module, "FRAME_PIXELS", chunk * frame)
        assert tok.stream_chunk(104, 64) == chunk
        if split == "groups":  # one 1/4-stage frame a group: blocks write their groups over their input
            monkeypatch.setattr(layers_module, "FRAME_PIXELS", 16 * 8 * frame // 16)
        if split == "strips":  # every stage in strips of rows: the stem 24 rows, the 1/4 stage and the head 6
            monkeypatch.setattr(layers_module, "FRAME_PIXELS", 24 * 64)
            monkeypatch.setattr(tae_module, "FRAME_PIXELS", 24 * 64)
        streamed = tok.encode(clip)
        assert streamed.shape == whole.shape
        assert (streamed != whole).sum() <= 1  # a sign at zero may flip under another order of float operations
        assert (tok.encode(clip, hold=0.05) != whole_held).sum() <= 1
        # the same clip in pieces as they might be read (frames never held together): the same chunks, tokens
        pieces = [clip[:4], clip[4:5], clip[5:11], clip[11:]]
        np.testing.assert_array_equal(tok.encode_pieces(iter(pieces)), streamed)
        np.testing.assert_array_equal(tok.encode_pieces(iter(pieces), hold=0.05), tok.encode(clip, hold=0.05))
        pictures = tok.decode(whole, size=clip.shape[:3])
        assert pictures.shape == clip.shape
        assert np.abs(pictures.astype(int) - whole_pictures).max() <= 1
    with pytest.raises(ValueError, match="frame size changes"):
        tok.encode_pieces([clip[:4], clip[4:, :50]])
    np.testing.assert_array_equal(tok.encode_pieces([clip[:7], clip[7:]]), tok.encode(clip))


def test_a_streaming_decoder_hands_a_gop_out_in_pieces(monkeypatch):
    """``decode_pieces`` and ``Codec.decompress_from`` give a GOP's frames a chunk at a time when the body streams:
    the same frames as one piece, a range cut across the pieces, and nothing held back but the last piece."""
    import vtok.codec.models.tokenizer as tokenizer_module
    from vtok.codec.coding import Codec, CodedFile
    from vtok.codec.prior import PriorConfig, TokenPrior

    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(arch="tae", bits=12, group_bits=6, dec_blocks=1)).eval()
    codec = Codec(tok, TokenPrior(PriorConfig(bits=12, group_bits=6, channels=8, layers=1)).freeze())
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (21, 48, 64, 3), dtype=np.uint8)
    data = codec.compress(clip, fps=25)  # one GOP of 21 frames
    monkeypatch.setattr(tokenizer_module, "FRAME_PIXELS", 10 ** 12)
    whole = codec.decompress(data)
    tokens = tok.encode(clip)
    assert len(list(tok.decode_pieces(tokens, size=clip.shape[:3]))) == 1
    monkeypatch.setattr(tokenizer_module, "FRAME_PIXELS", 8 * 48 * 64)  # two latent frames a chunk
    pieces = list(tok.decode_pieces(tokens, size=clip.shape[:3]))
    assert len(pieces) > 2 and max(len(p) for p in pieces) <= 8 and sum(len(p) for p in pieces) == len(clip)
    np.testing.assert_array_equal(np.concatenate(pieces), tok.decode(tokens, size=clip.shape[:3]))
    for start, frames in ((0, None), (3, 7), (10, 1), (20, None)):
        out = list(codec.decompress_from(CodedFile(io.BytesIO(data)), start, frames))
        end = len(clip) if frames is None else start + frames
        assert len(out) == len([p for p in _cuts(pieces, start, end)]) and all(p == [] for _, p in out)
        assert np.abs(np.concatenate([v for v, _ in out]).astype(int) - whole[start:end]).max() <= 1


def _cuts(pieces, start, end):
    at = 0
    for p in pieces:
        if p[max(start - at, 0):max(end - at, 0)].shape[0]:
            yield p
        at += len(p)


def test_strips_reach_what_the_whole_frame_gives():
    """``in_strips`` with a halo that covers the function's reach gives the whole frame's result; with too small a
    halo it does not (so the halos of the stem, blocks and head are not vacuous)."""
    from vtok.codec.models.streaming import in_strips

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1))
    x = torch.randn(2, 4, 40, 24)
    with torch.no_grad():
        ref = conv(x)
        torch.testing.assert_close(in_strips(conv, [x], 8 * 24, halo=2), ref)
        torch.testing.assert_close(in_strips(conv, [x], 40 * 24, halo=0), ref)  # whole frames, one at a time
        assert not torch.allclose(in_strips(conv, [x], 8 * 24, halo=1), ref)
        up = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.PixelShuffle(2))
        torch.testing.assert_close(in_strips(up, [x], 8 * 24, halo=1, up=2), up(x))
