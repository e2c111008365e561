"""Refinement bits: the residual LFQ stage, a tokenizer grown from a sign-bit one, and the files of both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import random_clip, smooth_clip, tiny_config
from vtok.codec.coding import Codec
from vtok.codec.entropy import token_costs
from vtok.codec.models.quantizers import LookupFreeQuantizer, ResidualLookupFreeQuantizer
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec.training.refine import with_refinement
from vtok.codec.training.train_prior import widened

BASE, EXTRA = 12, 5


def test_refinement_bits_are_the_residual_signs_after_the_base_bits():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 3, 4, 5)
    q = ResidualLookupFreeQuantizer(bits=9, base_bits=6, refine=[4, 0, 2], scales=[0.5, 0.8, 1.0], group_bits=3)
    lfq = LookupFreeQuantizer(bits=6, group_bits=3)
    out = q(z)
    assert torch.equal(out.indices & 63, lfq(z).indices)
    for j, (c, s) in enumerate(zip([4, 0, 2], [0.5, 0.8, 1.0])):
        want = (z[:, c] - s * torch.sign(z[:, c])) > 0
        assert torch.equal((out.indices >> (6 + j)) & 1 == 1, want)
    assert torch.equal(q.indices_to_codes(out.indices), out.codes.detach())
    held, _ = q.held_indices(z, None, 0.3)
    assert torch.equal(held & 63, lfq.held_indices(z, None, 0.3)[0])
    with pytest.raises(ValueError, match="base_bits"):
        ResidualLookupFreeQuantizer(bits=10, base_bits=6, refine=[1], scales=[1.0])


@pytest.fixture(scope="module")
def grown():
    torch.manual_seed(1)
    base = VideoTokenizer(tiny_config(arch="tae", bits=BASE, group_bits=4)).eval()
    clips = [torch.rand(1, 3, 5, 32, 32) * 2 - 1 for _ in range(2)]
    return base, with_refinement(base, EXTRA, clips).eval()


def test_a_grown_tokenizer_starts_as_its_base_and_extends_its_tokens(grown):
    base, tok = grown
    assert tok.bits == BASE + EXTRA and tok.base_bits == BASE
    assert tok.family_of(BASE) == base.family_id != tok.family_id
    clip = smooth_clip(9, 32, 48)
    t_base, t_tok = base.encode(clip, hold=0.1), tok.encode(clip, hold=0.1)
    assert np.array_equal(t_tok & ((1 << BASE) - 1), t_base)
    # the refinement branch starts at zero: the full token decodes as the base token did, and so does every prefix
    assert np.array_equal(tok.decode(t_tok), base.decode(t_base))
    assert np.array_equal(tok.decode(t_tok & 7, bits=3), base.decode(t_base & 7, bits=3))
    with torch.no_grad():
        tok.decoder.residual.weight.normal_()
    assert not np.array_equal(tok.decode(t_tok), base.decode(t_base))
    assert np.array_equal(tok.decode(t_tok & ((1 << BASE) - 1), bits=BASE), base.decode(t_base))


def test_the_widened_prior_codes_the_base_bits_as_before(grown):
    base, tok = grown
    torch.manual_seed(2)
    small = TokenPrior(PriorConfig(bits=BASE, group_bits=4, channels=8, layers=2))
    wide = widened(small, tok.bits)
    assert wide.cfg.bits == tok.bits and wide.cfg.groups == 5
    tokens = tok.encode(random_clip(9, 32, 48))
    prefix = tokens & ((1 << BASE) - 1)
    assert np.array_equal(token_costs(wide.freeze(), prefix, BASE), token_costs(small.freeze(), prefix, BASE))


def test_files_of_the_base_family_stay_the_same_and_decode_with_the_grown_model(grown):
    base, tok = grown
    torch.manual_seed(3)
    prior = TokenPrior(PriorConfig(bits=BASE, group_bits=4, channels=8, layers=2)).freeze()
    clip = smooth_clip(9, 32, 48, seed=4)
    old, through_grown = Codec(base, prior), Codec(tok, prior)
    assert through_grown.codes(old.family_id) and through_grown.model_bits == BASE
    data = old.compress(clip, bits=8)
    assert through_grown.compress(clip, bits=8) == data
    with torch.no_grad():
        tok.decoder.residual.weight.normal_()  # a trained branch: the base bits decode as before all the same
    assert np.array_equal(through_grown.decompress(data), old.decompress(data))
    with pytest.raises(ValueError, match="bits"):
        through_grown.settings(bits=BASE + 1)
    refined = Codec(tok, widened(TokenPrior.from_integer(prior), tok.bits).freeze())
    assert not refined.codes(old.family_id) and refined.model_bits == BASE + EXTRA
    full = refined.compress(clip)
    assert np.array_equal(refined.decompress(full), tok.decode(tok.encode(clip), size=clip.shape[:3]))
    assert len(full) > len(refined.compress(clip, bits=BASE))


def test_the_search_moves_refinement_bits_too(grown):
    """A searching preset codes a model with refinement bits at every prefix: the full token's bits may differ from
    the one-pass encoder's, and the file decodes to the clip's shape."""
    from vtok.codec.search import Search

    base, tok = grown
    torch.manual_seed(5)
    prior = widened(TokenPrior(PriorConfig(bits=BASE, group_bits=4, channels=8, layers=2)), tok.bits).freeze()
    codec = Codec(tok, prior)
    clip = smooth_clip(5, 32, 48, seed=6)
    search = Search(steps=2, lr=0.1, tune="psnr", lam=1.0)
    for bits in (BASE - 4, BASE + 2, BASE + EXTRA):
        data = codec.compress(clip, bits=bits, search=search)
        assert codec.decompress(data).shape == clip.shape


def test_token_files_of_the_base_family_detokenize_with_the_grown_model(grown, tmp_path):
    from vtok.codec.media.read import read_video
    from vtok.codec.media.write import write_video
    from vtok.codec.models.zoo import save_tokenizer
    from vtok.codec.tokens_file import detokenize_file, tokenize_file

    base, tok = grown
    save_tokenizer(base, tmp_path / "base.safetensors", half=False)
    save_tokenizer(tok, tmp_path / "grown.safetensors", half=False, extra={"base_family": base.family_id})
    write_video(tmp_path / "clip.mkv", smooth_clip(5, 32, 48, seed=7), 25)
    quiet = dict(log=lambda *a: None)
    tokenize_file(tmp_path / "clip.mkv", tmp_path / "t.npz", model=tmp_path / "base.safetensors", **quiet)
    detokenize_file(tmp_path / "t.npz", tmp_path / "a.mkv", model=tmp_path / "base.safetensors", **quiet)
    detokenize_file(tmp_path / "t.npz", tmp_path / "b.mkv", model=tmp_path / "grown.safetensors", **quiet)
    assert np.array_equal(read_video(tmp_path / "a.mkv"), read_video(tmp_path / "b.mkv"))
    tokenize_file(tmp_path / "clip.mkv", tmp_path / "g.npz", model=tmp_path / "grown.safetensors", **quiet)
    with np.load(tmp_path / "g.npz") as z:
        assert int(z["base_bits"]) == BASE and z["refine"].tolist() == tok.quantizer.refine.tolist()
        assert z["sub_tokens"].shape[-1] == -(-(BASE + EXTRA) // tok.group_bits)


def test_a_refinement_path_leaves_every_sign_bit_prefix_as_the_base_model_decodes_it(grown):
    """``--enhance``: tokens with refinement bits take a decoder start of their own, the others the base model's
    decoder; trained (here: changed weights), the full token decodes otherwise, every sign-bit prefix exactly as the
    base model, and a batch that mixes both decodes each as alone."""
    from vtok.codec.training.refine import with_enhancement

    base, tok = grown
    with pytest.raises(ValueError, match="family"):
        with_enhancement(tok, VideoTokenizer(tiny_config(arch="tae", bits=BASE, group_bits=4)))
    enh = with_enhancement(tok, base).eval()
    assert enh.family_id == tok.family_id and enh.decoder_id != tok.decoder_id
    assert enh.decoder.residual is None and enh.cfg.dec_enhance == 1
    t_tok = enh.encode(smooth_clip(9, 32, 48), hold=0.1)
    assert np.array_equal(enh.decode(t_tok), tok.decode(t_tok))  # the path starts as the model's own start
    with torch.no_grad():
        for p in enh.decoder.enhance.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert not np.array_equal(enh.decode(t_tok), tok.decode(t_tok))
    for bits in (3, BASE):
        prefix = t_tok & ((1 << bits) - 1)
        assert np.array_equal(enh.decode(prefix, bits=bits), base.decode(prefix, bits=bits))
    codes = enh.quantizer.indices_to_codes(torch.as_tensor(t_tok)[None])
    mixed = torch.cat([codes, codes * enh.bit_mask(torch.tensor([BASE]), codes)])
    with torch.no_grad():
        both = enh.decoder(mixed)
        assert torch.allclose(both[:1], enh.decoder(mixed[:1]), atol=1e-5)
        assert torch.allclose(both[1:], enh.decoder(mixed[1:]), atol=1e-5)


def test_rates_of_the_sign_bits_are_coded_as_files_of_the_base_family(grown):
    """``Codec.base``: with it, a sign-bit rate makes the base family's very file (its prior), which the codec
    decodes; refinement rates make files of its own family."""
    base, tok = grown
    torch.manual_seed(8)
    small = TokenPrior(PriorConfig(bits=BASE, group_bits=4, channels=8, layers=2))
    old = Codec(base, small.freeze())
    codec = Codec(tok, widened(small, tok.bits).freeze(), base=Codec(tok, small.freeze()))
    clip = smooth_clip(9, 32, 48, seed=9)
    data = codec.compress(clip, bits=BASE)
    assert data == old.compress(clip, bits=BASE)
    assert np.array_equal(codec.decompress(data), old.decompress(data))
    full = codec.compress(clip)
    assert Codec(tok, codec.prior).decompress(full).shape == clip.shape
    assert np.array_equal(codec.decompress(full), Codec(tok, codec.prior).decompress(full))
    with pytest.raises(ValueError, match="made by token family"):
        Codec(tok, codec.prior).decompress(data)


def test_load_codec_finds_the_base_codec_its_weights_name(grown, tmp_path):
    from vtok.codec.loading import load_codec
    from vtok.codec.models.zoo import save_tokenizer

    base, tok = grown
    torch.manual_seed(10)
    small = TokenPrior(PriorConfig(bits=BASE, group_bits=4, channels=8, layers=2)).freeze()
    want = Codec(tok, small).family_id
    save_tokenizer(tok, tmp_path / "m.safetensors", half=False,
                   extra={"base_family": base.family_id, "base_codec": want})
    widened(TokenPrior.from_integer(small), tok.bits).freeze().save(tmp_path / "m-prior.safetensors")
    small.save(tmp_path / f"m-prior-{want}.safetensors")
    codec = load_codec(tmp_path / "m.safetensors")
    assert codec.base is not None and codec.base.family_id == want and codec.model_bits == BASE + EXTRA
    assert load_codec(tmp_path / "m.safetensors", prior=tmp_path / f"m-prior-{want}.safetensors").base is None
