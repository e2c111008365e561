"""Lookup-free quantization: indices, straight-through gradients, and the entropy penalty by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vtok.codec.models.quantizers import LookupFreeQuantizer, build_quantizer


def test_index_bits_round_trip():
    q = LookupFreeQuantizer(bits=18, group_bits=9)
    z = torch.randn(2, 18, 3, 4, 5)
    out = q(z)
    assert out.indices.shape == (2, 3, 4, 5) and out.indices.dtype == torch.int64
    assert int(out.indices.max()) < 2 ** 18
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.codes.detach())
    idx = torch.randint(0, 2 ** 18, (1, 2, 3, 3))
    assert torch.equal(q.codes_to_indices(q.indices_to_codes(idx)), idx)


def test_index_is_sum_of_powers_of_two():
    q = LookupFreeQuantizer(bits=4, group_bits=2)
    z = torch.tensor([1.0, -1.0, 0.5, 2.0]).view(1, 4, 1, 1, 1)
    assert int(q(z).indices) == 1 + 4 + 8


def test_straight_through_gradient_reaches_input():
    q = LookupFreeQuantizer(bits=10, group_bits=5).train()
    z = torch.randn(1, 10, 2, 3, 3, requires_grad=True)
    out = q(z)
    (out.codes.sum() + sum(out.losses.values())).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def _brute_force_entropy(z, group_bits, temperature):
    """Distance softmax over every code of each sub-group, by enumeration."""
    n_bits = z.shape[1]
    flat = z.movedim(1, -1).reshape(-1, n_bits).double()
    per_sample = 0.0
    codebook = 0.0
    for s in range(0, n_bits, group_bits):
        zg = flat[:, s:s + group_bits]
        codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=group_bits)), dtype=torch.float64)
        d = ((zg[:, None, :] - codes[None]) ** 2).sum(-1)
        p = torch.softmax(-d / temperature, dim=-1)
        per_sample += float(-(p * p.log()).sum(-1).mean())
        avg = p.mean(0)
        codebook += float(-(avg * avg.log()).sum())
    return per_sample, codebook


@pytest.mark.parametrize("bits,group_bits,temperature", [(4, 2, 1.0), (6, 3, 0.5), (4, 4, 2.0)])
def test_entropy_terms_match_enumeration(bits, group_bits, temperature):
    torch.manual_seed(bits)
    q = LookupFreeQuantizer(bits=bits, group_bits=group_bits, temperature=temperature)
    z = torch.randn(2, bits, 1, 3, 3) * 0.5
    per_sample, codebook = q.entropy_terms(z)
    ref_ps, ref_cb = _brute_force_entropy(z, group_bits, temperature)
    assert float(per_sample) == pytest.approx(ref_ps, rel=1e-4)
    assert float(codebook) == pytest.approx(ref_cb, rel=1e-4)
    assert float(q.entropy_loss(z)) == pytest.approx(ref_ps - ref_cb, rel=1e-4, abs=1e-5)


def test_entropy_extremes():
    q = LookupFreeQuantizer(bits=2, group_bits=2)
    # Confident and uniformly spread over all four codes: per-sample ~0, codebook = log 4.
    z = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]]).T.reshape(1, 2, 1, 1, 4)
    ps, cb = q.entropy_terms(z)
    assert float(ps) == pytest.approx(0.0, abs=1e-4)
    assert float(cb) == pytest.approx(math.log(4), rel=1e-5)


def test_losses_only_in_training_and_registry():
    q = build_quantizer("lfq", bits=8, group_bits=4)
    assert q.bits_per_token == 8
    assert q.eval()(torch.randn(1, 8, 1, 2, 2)).losses == {}
    assert set(q.train()(torch.randn(1, 8, 1, 2, 2)).losses) == {"entropy", "commit"}
    with pytest.raises(ValueError, match="unknown quantizer"):
        build_quantizer("nope")
    with pytest.raises(ValueError, match="multiple"):
        LookupFreeQuantizer(bits=10, group_bits=3)


def test_temporal_hold_keeps_undecided_bits_and_carries_across_calls():
    """``held_indices``: the first latent frame (no ``prev``) is ``sign(z)``; later, a bit with ``|z| < hold`` keeps
    the value it was given in the frame before (held or not), every other bit is ``sign(z)``; split into two calls
    with the carried codes it gives the same indices; at ``hold = 0`` it is the plain quantizer."""
    torch.manual_seed(0)
    q = LookupFreeQuantizer(bits=6, group_bits=3)
    z = torch.randn(1, 6, 7, 3, 4) * 0.3
    plain = q(z).indices
    assert torch.equal(q.held_indices(z, None, 0.0)[0], plain)
    held, last = q.held_indices(z, None, 0.2)
    expect = torch.where(z > 0, 1.0, -1.0)
    for t in range(1, 7):
        expect[:, :, t] = torch.where(z[:, :, t].abs() < 0.2, expect[:, :, t - 1], expect[:, :, t])
    assert torch.equal(held, q.codes_to_indices(expect)) and torch.equal(last, expect[:, :, -1])
    assert torch.equal(held[:, 0], plain[:, 0]) and not torch.equal(held, plain)
    a, carry = q.held_indices(z[:, :, :3], None, 0.2)
    b, _ = q.held_indices(z[:, :, 3:], carry, 0.2)
    assert torch.equal(torch.cat([a, b], 1), held)
    flips = lambda c: int((c[:, :, 1:] != c[:, :, :-1]).sum())  # noqa: E731
    assert flips(expect) < flips(torch.where(z > 0, 1.0, -1.0))
