"""Binary range coding over integer probabilities: a thin wrapper of constriction's queue (range) coder.

Range coding: G. N. N. Martin, "Range encoding: an algorithm for removing redundancy from a digitised message" (1979);
implementation: constriction (Bamler, "Understanding Entropy Coding With Asymmetric Numeral Systems (ANS)",
arXiv 2201.01741). Every symbol is one bit with ``P(bit = 1) = p1 / 2**prob_bits``, ``p1`` an integer in
``[1, 2**prob_bits - 1]``. The probabilities handed to constriction are exact dyadic floats, and its model settings
(``perfect``) are explicit arguments that the container records, so encoder and decoder build identical models.

Encode and decode mirror each other:

>>> import numpy as np
>>> p1 = np.array([100, 60000, 32768], np.uint32)
>>> enc = BitEncoder(prob_bits=16, perfect=False)
>>> enc.encode(np.array([0, 1, 1], np.uint8), p1)
>>> data = enc.finish()
>>> BitDecoder(data, prob_bits=16, perfect=False).decode(p1).tolist()
[0, 1, 1]
"""

from __future__ import annotations

import numpy as np

from vtok.bitstream.errors import VtokError


class RangeCoderError(VtokError, ValueError):
    """The coded data cannot be decoded with the given probabilities."""


def _model(perfect: bool):
    import constriction

    return constriction.stream.model.Categorical(perfect=perfect)


def _table(p1: np.ndarray, prob_bits: int) -> np.ndarray:
    p1 = np.asarray(p1)
    if p1.ndim != 1 or not np.issubdtype(p1.dtype, np.integer):
        raise ValueError("probabilities must be a 1-D integer array")
    one = 1 << prob_bits
    if p1.size and (int(p1.min()) < 1 or int(p1.max()) > one - 1):
        raise ValueError(f"integer probabilities must lie in [1, {one - 1}]")
    p = p1.astype(np.float64) / one  # exact: p1 < 2**prob_bits <= 2**24
    return np.stack([1.0 - p, p], axis=1)


class BitEncoder:
    """Collects bits with their integer probabilities; ``finish()`` returns the coded bytes (little-endian words)."""

    def __init__(self, prob_bits: int = 16, perfect: bool = False):
        import constriction

        if not 1 <= prob_bits <= 24:
            raise ValueError("prob_bits must be in 1..24")
        self.prob_bits, self.perfect = prob_bits, perfect
        self._enc = constriction.stream.queue.RangeEncoder()
        self._model = _model(perfect)

    def encode(self, bits: np.ndarray, p1: np.ndarray) -> None:
        bits = np.asarray(bits).astype(np.int32).ravel()
        table = _table(np.asarray(p1).ravel(), self.prob_bits)
        if bits.size != table.shape[0]:
            raise ValueError("one probability per bit is needed")
        if bits.size:
            self._enc.encode(bits, self._model, table)

    def num_bits(self) -> int:
        return int(self._enc.num_bits())

    def finish(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes()


class DataExhausted(RangeCoderError):
    """More was decoded than the coded data can hold: the data is used up (a damaged or crafted file)."""


# Slack of the information bound: the coder's 64-bit state, and constriction's rounding of each probability to its
# own precision (a relative change far below 1 % of a bit's cost).
BOUND_SLACK_BITS = 128
BOUND_SLACK_RATIO = 1.01


class BitDecoder:
    """Decodes bits from ``finish()``'s bytes, given the same integer probabilities in the same order.

    A range coder cannot give out more information than it was given: the bits decoded so far carry
    ``sum(-log2 P(bit))`` bits of information, which a well-formed stream of ``n`` words holds in its ``32 n`` bits
    (plus the coder's state). ``decode`` keeps that count and raises ``DataExhausted`` as soon as it passes the bound,
    so a file that claims more bits than its payload can hold stops within one call, not after decoding them all.
    """

    def __init__(self, data: bytes, prob_bits: int = 16, perfect: bool = False):
        import constriction

        if len(data) % 4:
            raise RangeCoderError("coded data is not a whole number of 32-bit words")
        self.prob_bits = prob_bits
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._model = _model(perfect)
        self.information = 0.0  # bits of information decoded so far
        self.capacity = 32 * len(words) * BOUND_SLACK_RATIO + BOUND_SLACK_BITS

    def decode(self, p1: np.ndarray) -> np.ndarray:
        table = _table(np.asarray(p1).ravel(), self.prob_bits)
        if table.shape[0] == 0:
            return np.zeros(0, np.uint8)
        try:
            bits = np.asarray(self._dec.decode(self._model, table)).astype(np.uint8)
        except Exception as e:  # constriction reports invalid data as a generic error
            raise RangeCoderError(f"range decoding failed: {e}") from None
        self.information -= float(np.log2(table[np.arange(len(bits)), bits]).sum())
        if self.information > self.capacity:
            raise DataExhausted(f"the coded data is used up after {self.information:.0f} bits of information from "
                                f"{self.capacity / BOUND_SLACK_RATIO - BOUND_SLACK_BITS:.0f} coded bits: the file "
                                f"claims more than its payload holds (damaged or crafted)")
        return bits
