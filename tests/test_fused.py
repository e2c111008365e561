"""One oneDNN convolution with its sum and ReLU as post-ops (``fused.conv_relu``): the separate ops' float32 numbers,
bit for bit and in their memory layout, so tokens and pictures do not change; the separate ops where it cannot run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import vtok.codec.models.fused as fused
import vtok.codec.models.layers as layers
from vtok.codec.models.fused import conv_relu
from vtok.codec.models.layers import previous_frames
from tests.conftest import tae_tokenizer_with_taps

CL = torch.channels_last
fused_only = pytest.mark.skipif(fused._POINTWISE is None, reason="this PyTorch build has no oneDNN pointwise fusion")


def _separate(layer, x, add, relu):
    y = layer(x)
    if add is not None:
        y = y + add
    return torch.relu(y) if relu else y


def _calls(monkeypatch):
    """Count the fused op's calls (so that a test of equality cannot pass by never fusing)."""
    seen = []
    op = fused._POINTWISE

    class Counted:
        def __call__(self, *a):
            seen.append("unary")
            return op(*a)

        def binary(self, *a):
            seen.append("binary")
            return op.binary(*a)

    monkeypatch.setattr(fused, "_POINTWISE", Counted())
    return seen


@fused_only
def test_conv_relu_is_the_separate_ops_bit_for_bit_and_in_their_layout(monkeypatch):
    seen = _calls(monkeypatch)
    torch.manual_seed(0)
    layers_ = [nn.Conv2d(16, 16, 3, 1, 1), nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.Conv2d(16, 8, 3, 2, 1),
               nn.Conv2d(16, 32, 1)]
    with torch.no_grad():
        for layer, x_cl, w_cl, add_kind, relu in itertools.product(layers_, (False, True), (False, True),
                                                                   (None, "nchw", "cl"), (False, True)):
            x = torch.randn(3, 16, 20, 28)
            x = x.contiguous(memory_format=CL) if x_cl else x
            layer.weight.data = layer.weight.data.contiguous(memory_format=CL if w_cl else torch.contiguous_format)
            ref_shape = layer(x).shape
            add = None if add_kind is None else torch.randn(ref_shape)
            if add_kind == "cl":
                add = add.contiguous(memory_format=CL)
            ref = _separate(layer, x, add, relu)
            got = conv_relu(layer, x, add, relu)
            assert torch.equal(got, ref), (layer, x_cl, w_cl, add_kind, relu)
            assert got.is_contiguous(memory_format=CL) == ref.is_contiguous(memory_format=CL)
            assert got.is_contiguous() == ref.is_contiguous()
    assert seen.count("unary") == seen.count("binary") // 2 == 4 * 2 * 2 * 2


def test_conv_relu_is_the_separate_ops_with_gradients_and_in_bfloat16():
    torch.manual_seed(0)
    layer = nn.Conv2d(8, 8, 3, 1, 1)
    x = torch.randn(2, 8, 10, 12, requires_grad=True)
    add = torch.randn(2, 8, 10, 12)
    conv_relu(layer, x, add).square().sum().backward()
    g, gw = x.grad.clone(), layer.weight.grad.clone()
    x.grad = layer.weight.grad = None
    _separate(layer, x, add, True).square().sum().backward()
    assert torch.equal(x.grad, g) and torch.equal(layer.weight.grad, gw)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = conv_relu(layer, x, add), _separate(layer, x, add, True)
    assert got.dtype == ref.dtype and torch.equal(got, ref)


def test_previous_frames_keep_the_frames_layout():
    x = torch.randn(6, 4, 5, 7).contiguous(memory_format=CL)  # two clips of three frames
    v = x.reshape(2, 3, 4, 5, 7)
    p = previous_frames(x, 3)
    assert p.is_contiguous(memory_format=CL)
    assert torch.equal(p, torch.cat([v[:, :1], v[:, :-1]], 1).reshape(6, 4, 5, 7))
    before = torch.randn(2, 4, 5, 7)
    p = previous_frames(x, 3, before)
    assert torch.equal(p[0], before[0]) and torch.equal(p[3], before[1]) and torch.equal(p[4], x[3])
    one = x[:2]  # one frame a clip: no copy
    assert previous_frames(one, 1) is one and previous_frames(one, 1, before) is before


@fused_only
def test_the_tokenizer_fused_gives_the_tokens_and_pictures_of_the_separate_ops(monkeypatch):
    tok = tae_tokenizer_with_taps()
    clip = np.random.default_rng(0).integers(0, 256, (9, 48, 64, 3), dtype=np.uint8)
    seen = _calls(monkeypatch)
    tokens = tok.encode(clip)
    pictures = tok.decode(tokens, size=clip.shape[:3])
    assert "binary" in seen and "unary" in seen
    monkeypatch.setattr(fused, "_POINTWISE", None)
    np.testing.assert_array_equal(tok.encode(clip), tokens)
    np.testing.assert_array_equal(tok.decode(tokens, size=clip.shape[:3]), pictures)


@pytest.mark.parametrize("fusion", [True, False])
def test_conv_relu_into_writes_the_separate_ops_numbers_over_its_sum(monkeypatch, fusion):
    if fusion and fused._POINTWISE is None:
        pytest.skip("this PyTorch build has no oneDNN pointwise fusion")
    if not fusion:
        monkeypatch.setattr(fused, "_POINTWISE", None)
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 16, 3, 1, 1)
    with torch.no_grad():
        for x_cl, w_cl, add_cl, relu, dtype in itertools.product((False, True), (False, True), (False, True),
                                                                  (False, True), (torch.float32, torch.bfloat16)):
            lay = nn.Conv2d(16, 16, 3, 1, 1).to(dtype)
            lay.load_state_dict(layer.state_dict())
            lay.weight.data = lay.weight.data.contiguous(memory_format=CL if w_cl else torch.contiguous_format)
            x = torch.randn(3, 16, 20, 28).to(dtype)
            x = x.contiguous(memory_format=CL) if x_cl else x
            add = torch.randn(3, 16, 20, 28).to(dtype)
            add = add.contiguous(memory_format=CL) if add_cl else add
            ref = _separate(lay, x, add, relu)
            target = add.clone(memory_format=torch.preserve_format)
            got = conv_relu(lay, x, target, relu, into=True)
            assert got.data_ptr() == target.data_ptr() and torch.equal(target, ref)
    with pytest.raises(ValueError, match="inference"):
        conv_relu(layer, x.float(), torch.randn(3, 16, 20, 28, requires_grad=True), into=True)


def test_a_block_in_a_stream_writes_its_groups_over_its_input_last_first(monkeypatch):
    """A chunk of several groups of whole frames: each group's output is written over its input, the last group
    first, so that the previous-frame tap still reads inputs — the numbers of the groups run one by one on a copy
    (bit for bit), the input's memory reused, the next chunk's tap given this chunk's last input frame."""
    from vtok.codec.models.streaming import Stream

    torch.manual_seed(0)
    block = layers.TaeBlock(8, temporal=True).eval()
    nn.init.normal_(block.prev.weight, std=0.1)
    chunks = [torch.randn(n, 8, 6, 10).contiguous(memory_format=CL) for n in (1, 5, 4)]
    monkeypatch.setattr(layers, "FRAME_PIXELS", 16 * 8 * 2 * 60)  # two frames a group
    stream, before = Stream(), None
    with torch.no_grad():
        for x in chunks:
            copy = x.clone(memory_format=torch.preserve_format)
            p = previous_frames(copy, len(copy), before)
            ref = torch.cat([block._body(copy[a:a + 2], p[a:a + 2]) for a in range(0, len(copy), 2)])
            got = block(x, len(x), stream)
            assert torch.equal(got, ref)
            assert (got.data_ptr() == x.data_ptr()) == (len(x) > 2)
            before = copy[-1:]


def test_a_pool_in_a_stream_mixes_the_pairs_of_pieces_of_any_length():
    """Frames fed to a temporal pool as a stream of chunks, each chunk a list of pieces (``in_pieces``) or one
    tensor, of any length (an odd frame waits for its partner): the whole clip's pairs, mixed as on the whole clip."""
    from vtok.codec.models.streaming import Stream, in_pieces

    torch.manual_seed(0)
    pool = layers.TemporalPool(8).eval()
    nn.init.normal_(pool.mix.weight, std=0.2)
    clip = torch.randn(13, 8, 6, 10).contiguous(memory_format=CL)
    with torch.no_grad():
        ref, t = pool(clip, 13)
        stream, out = Stream(), []
        for a, b, as_list in ((0, 1, False), (1, 4, True), (4, 5, True), (5, 10, False), (10, 13, True)):
            x = clip[a:b].clone(memory_format=torch.preserve_format)
            y, k = pool(in_pieces(lambda f: f.clone(), [x], 60 * 8) if as_list else x, b - a, stream)
            assert y.shape[0] == k and (not k or y.is_contiguous(memory_format=CL))
            out.append(y)
    got = torch.cat(out)
    assert t == 7 and got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
