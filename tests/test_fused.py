"""One oneDNN convolution with its sum and ReLU as post-ops (``layers.conv_relu``): the separate ops' float32 numbers,
bit for bit and in their memory layout, so tokens and pictures do not change; the separate ops where it cannot run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import vtok.codec.models.layers as layers
from vtok.codec.models.layers import conv_relu, previous_frames
from tests.conftest import tae_tokenizer_with_taps

CL = torch.channels_last
fused_only = pytest.mark.skipif(layers._POINTWISE is None, reason="this PyTorch build has no oneDNN pointwise fusion")


def _separate(layer, x, add, relu):
    y = layer(x)
    if add is not None:
        y = y + add
    return torch.relu(y) if relu else y


def _calls(monkeypatch):
    """Count the fused op's calls (so that a test of equality cannot pass by never fusing)."""
    seen = []
    op = layers._POINTWISE

    class Counted:
        def __call__(self, *a):
            seen.append("unary")
            return op(*a)

        def binary(self, *a):
            seen.append("binary")
            return op.binary(*a)

    monkeypatch.setattr(layers, "_POINTWISE", Counted())
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
    monkeypatch.setattr(layers, "_POINTWISE", None)
    np.testing.assert_array_equal(tok.encode(clip), tokens)
    np.testing.assert_array_equal(tok.decode(tokens, size=clip.shape[:3]), pictures)
