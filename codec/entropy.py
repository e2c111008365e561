"""Entropy coding of tokens: the coding order (one generator, walked by training and by coding) and the GOP walk.

Coding order inside one latent frame (docs/BITSTREAM.md, "Tokens of a unit and their coding order"): two checkerboard
passes (anchors ``(y + x) % 2 == 0`` first; He et al., arXiv 2103.15306), and inside each pass the bit groups in order
(e.g. bits 0-8, then 9-17). ``frame_steps`` yields every step with the mask of the bits known when it is predicted;
``TokenPrior.loss`` trains on exactly those contexts and ``walk_gop`` codes in exactly that order, so the two cannot
drift apart. Range coding itself is ``bitstream.rangecoder``; the payload's framing is ``bitstream.container``.

Layouts: token indices ``(T', H', W')`` int64 at the edges; bit planes ``(D, H, W)`` (bit ``i`` = ``(index >> i) &
1``) inside.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from vtok.bitstream.container import pack_gop_payload, unpack_gop_payload
from vtok.bitstream.rangecoder import BitDecoder, BitEncoder

PERFECT = False  # constriction model construction; recorded in every header


class Step(NamedTuple):
    """One coding step: checkerboard pass (0: anchors), bit group, and its bits ``start .. end - 1``."""

    pass_: int
    group: int
    start: int
    end: int


def coding_steps(bits: int, group_bits: int) -> list[Step]:
    """The coding steps of one latent frame for ``bits`` coded bits, in order."""
    return [Step(p, g, s, min(s + group_bits, bits)) for p in (0, 1) for g, s in enumerate(range(0, bits, group_bits))]


def anchor_mask(h: int, w: int) -> np.ndarray:
    """The first pass's positions: ``(y + x)`` even."""
    return (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0


def frame_steps(bits: int, group_bits: int, h: int, w: int, planes: int | None = None) -> Iterator[tuple]:
    """``(step, positions, known)`` for every step of one ``h × w`` latent frame, in coding order.

    ``positions`` (bool ``(h, w)``) are the positions the step codes; ``known`` (bool ``(planes, h, w)``, ``planes``
    defaulting to ``bits``) marks the bits of the frame already coded when the step is predicted: every coded bit of
    the anchor pass once the second pass starts, and the earlier groups of the step's own pass.
    """
    anchor = anchor_mask(h, w)
    known = np.zeros((planes or bits, h, w), bool)
    for step in coding_steps(bits, group_bits):
        pos = anchor if step.pass_ == 0 else ~anchor
        yield step, pos, known.copy()
        known[step.start:step.end] |= pos


def tokens_to_bits(tokens: np.ndarray, bits: int) -> np.ndarray:
    """int ``(..., H, W)`` → uint8 ``(..., bits, H, W)`` (bit ``i`` = ``(index >> i) & 1``)."""
    t = np.asarray(tokens, dtype=np.int64)
    shifts = np.arange(bits, dtype=np.int64).reshape((bits, 1, 1))
    return ((t[..., None, :, :] >> shifts) & 1).astype(np.uint8)


def bits_to_tokens(b: np.ndarray) -> np.ndarray:
    """uint8 ``(..., bits, H, W)`` → int64 ``(..., H, W)``."""
    bits = b.shape[-3]
    w = (np.int64(1) << np.arange(bits, dtype=np.int64)).reshape((bits, 1, 1))
    return (b.astype(np.int64) * w).sum(-3)


def walk_gop(prior, shape: tuple[int, int, int], bits: int, code_step) -> np.ndarray:
    """Visit one GOP's coding steps in coding order and return its bit planes ``(T', bits, H', W')``.

    ``code_step(t, start, end, positions, p1)`` codes (encoder) or decodes (decoder) the bits of one step and returns
    them as uint8 ``(end - start, n_positions)``; everything else — context, order, probabilities — is shared, so
    encoder and decoder mirror each other by construction. ``prior``: an ``IntegerPrior``.
    """
    d = prior.cfg.bits
    t_, h, w = shape
    planes = np.zeros((t_, bits, h, w), np.uint8)
    prev = np.zeros((d, h, w), np.int8)
    for t in range(t_):
        cur = np.zeros((d, h, w), np.int8)  # signed bits coded so far: exactly the ``known`` ones of each step
        for step, pos, _ in frame_steps(bits, prior.cfg.group_bits, h, w, d):
            s, e = step.start, step.end
            b = code_step(t, s, e, pos, prior.step_probabilities(prev, cur, t > 0, step))
            planes[t, s:e][:, pos] = b
            cur[s:e][:, pos] = b.astype(np.int8) * 2 - 1
        prev = cur
    return planes


def _cost_walk(prior, tokens: np.ndarray, bits: int, coder=None) -> np.ndarray:
    """Walk one GOP's tokens in coding order (range-coding them with ``coder`` if given); returns the
    cross-entropy in bits of every coded bit ``(T', bits)``, by latent frame and bit channel."""
    source = tokens_to_bits(tokens, bits)  # (T', k, H, W)
    one = 1 << prior.cfg.prob_bits
    cost = np.zeros((tokens.shape[0], bits))

    def code(t, s, e, pos, p1):
        b = source[t, s:e][:, pos]
        if coder is not None:
            coder.encode(b.ravel(), p1)
        p = np.where(b == 1, p1.reshape(b.shape), one - p1.reshape(b.shape)) / one
        cost[t, s:e] -= np.log2(p).sum(1)
        return b

    walk_gop(prior, tokens.shape, bits, code)
    return cost


def token_costs(prior, tokens: np.ndarray, bits: int) -> np.ndarray:
    """What coding one GOP's tokens ``(T', H', W')`` costs: bits ``(T', bits)`` per latent frame and bit channel."""
    return _cost_walk(prior, tokens, bits)


def encode_tokens(prior, tokens: np.ndarray, bits: int) -> tuple[bytes, float]:
    """Range-code one GOP's tokens ``(T', H', W')`` (first ``bits`` bits of each). Returns (payload, CE bits)."""
    enc = BitEncoder(prior.cfg.prob_bits, PERFECT)
    ce = float(_cost_walk(prior, tokens, bits, enc).sum())
    return pack_gop_payload(ce, enc.finish()), ce


def decode_tokens(prior, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    """Inverse of ``encode_tokens``: payload → int64 tokens of ``shape`` ``(T', H', W')``."""
    _, words = unpack_gop_payload(payload)
    dec = BitDecoder(words, prior.cfg.prob_bits, PERFECT)
    planes = walk_gop(prior, shape, bits, lambda t, s, e, pos, p1: dec.decode(p1).reshape(e - s, -1))
    return bits_to_tokens(planes)
