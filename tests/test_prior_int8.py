"""The token prior on int8 matrix products (``codec/prior_int8.py``): the same probabilities and bytes as its float
path, step by step and file by file, at any frame size; the float path where the kernel or the weights do not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vtok.codec.entropy import coding_steps, decode_tokens, encode_tokens
from vtok.codec.integer_prior import IntegerPrior
from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec import prior_int8
from vtok.codec.prior_int8 import Int8Convs, available

WEIGHTS = Path(__file__).resolve().parents[1] / "codec" / "weights"
needs_int8 = pytest.mark.skipif(not available(), reason="no exact int8 matrix product on this CPU")


@pytest.fixture(scope="module")
def shipped():
    """The default model's prior (60 bits, 96 channels): real weights, real activation ranges."""
    return IntegerPrior.load(WEIGHTS / "vtok-default-prior.safetensors")


def _available_with(kernel, monkeypatch) -> bool:
    """``available()`` with ``torch._int_mm`` replaced by ``kernel`` (the real one and its verdict restored after)."""
    monkeypatch.setattr(torch, "_int_mm", kernel)
    available.cache_clear()
    try:
        return available()
    finally:
        monkeypatch.undo()
        available.cache_clear()


def test_the_kernel_check_rejects_a_saturating_product(monkeypatch):
    """``available()`` compares against float64 at the extremes, where a kernel that makes the activations unsigned
    (``a + 128``, compensated after) and sums pairs of products in int16 saturates (as int8 GEMMs without VNNI
    may): such a kernel is refused, and the float path runs."""
    def saturating(a, b):
        u, s = a.to(torch.int32) + 128, b.to(torch.int32)
        pairs = (u[:, :, None] * s[None]).view(a.shape[0], -1, 2, b.shape[1]).sum(2)
        return (pairs.clamp(-2 ** 15, 2 ** 15 - 1).sum(1) - 128 * s.sum(0)).to(torch.int32)

    assert not _available_with(saturating, monkeypatch)


def test_an_exact_but_slow_kernel_is_not_used(monkeypatch):
    """A build whose int8 product is exact but slower than the float path's convolution (a plain loop): refused."""
    import time

    def slow(a, b):
        time.sleep(0.02)
        return (a.double() @ b.double()).to(torch.int32)

    assert not _available_with(slow, monkeypatch)


@needs_int8
@pytest.mark.parametrize("band", [4096, 6])
def test_every_step_s_probabilities_are_the_float_path_s(shipped, band, monkeypatch):
    """``step_probabilities`` with and without int8 products: identical integers for every step of two frames, at
    frame sizes with one row, one column, odd and even sides; also with the im2col in bands of a few rows (as at
    large frames), odd row counts leaving a last band of one row."""
    monkeypatch.setattr(prior_int8, "BAND", band)
    rng = np.random.default_rng(3)
    d = shipped.cfg.bits
    for h, w in [(6, 9), (1, 5), (4, 1), (1, 1), (3, 2), (7, 3), (9, 1)]:
        prev = np.zeros((d, h, w), np.int8)
        for t in range(2):
            cur = np.zeros((d, h, w), np.int8)
            for step in coding_steps(d, shipped.cfg.group_bits):
                got = {}
                for on in (True, False):
                    shipped.use_int8(on)
                    got[on] = shipped.step_probabilities(prev, cur, t > 0, step)
                assert np.array_equal(got[True], got[False]), (h, w, t, step)
                cur[step.start:step.end] = rng.choice(np.array([-1, 1], np.int8), (step.end - step.start, h, w))
            prev = cur
    shipped.use_int8(True)
    assert shipped._int8 is not None or not available()


@needs_int8
@pytest.mark.parametrize("bits", [36, 60])
def test_files_are_the_same_bytes_and_decode_across_paths(shipped, bits):
    """A GOP's payload is byte for byte the float path's, and each path decodes the other's."""
    tokens = np.random.default_rng(bits).integers(0, 2 ** 62, (3, 5, 7)) & ((1 << bits) - 1)
    payloads = {}
    for on in (True, False):
        shipped.use_int8(on)
        payloads[on] = encode_tokens(shipped, tokens, bits)[0]
    assert payloads[True] == payloads[False]
    for on in (True, False):
        shipped.use_int8(on)
        assert np.array_equal(decode_tokens(shipped, payloads[not on], tokens.shape, bits), tokens)
    shipped.use_int8(True)


def test_priors_the_int8_form_cannot_hold_run_the_float_path():
    """One 3×3 layer (nothing between the first layer and the output), weights beyond int8 or sums beyond int32:
    the float path, with the same results."""
    torch.manual_seed(5)
    small = TokenPrior(PriorConfig(bits=6, group_bits=3, channels=8, layers=1)).freeze()
    assert small._int8 is None
    prior = TokenPrior(PriorConfig(bits=6, group_bits=3, channels=8, layers=2)).freeze()
    big = [w * 2 for w in prior.weights]
    assert not Int8Convs.fits(big, prior.biases, prior.shifts, 255)
    huge = [b + 2 ** 31 for b in prior.biases]
    assert not Int8Convs.fits(prior.weights, huge, prior.shifts, 255)
    assert not Int8Convs.fits(prior.weights, prior.biases, prior.shifts, 127)
    assert prior._int8 is not None or not available()
