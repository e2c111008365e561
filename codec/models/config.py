"""A tokenizer's architecture as data: ``TokenizerConfig``, stored inside every checkpoint and hashed into its ids.

Its own module so that the tokenizer and its bodies (``tae``, ``magvit``) can all read it without importing each other.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass
class TokenizerConfig:
    """Everything that defines a tokenizer's architecture; stored inside every checkpoint.

    Attributes:
        arch: ``"magvit"`` (the from-scratch causal 3D CNN below) or ``"tae"`` (TAEF2's stages made causal video
            layers, ``codec.models.tae``; ``stem_ch``/``ch``/``blocks`` do not apply, ``stem_blocks`` sizes its stem).
        quantizer: registry name (``codec.models.quantizers.QUANTIZERS``). bits: bits per token (LFQ: latent channels).
        group_bits: LFQ sub-token size (0: ``default_group_bits(bits)``). stem_ch: channels at 1/4 resolution. ch: channels at 1/8 resolution.
        stem_blocks / blocks: residual blocks at 1/4 and at each 1/8-resolution stage.
        nested_dropout: share of training samples that keep only a random prefix of their bits (0 disables).
        min_bits: the shortest prefix kept by nested dropout. quantizer_args: extra quantizer keyword arguments.
        dec_blocks: ``arch="tae"``: extra residual blocks at the start of the decoder's 1/8 stage (``codec.models.tae``).
        dec_enhance: with refinement bits, 1: tokens that carry them take a decoder start of their own (a
            ``RefinementPath``), 0: a 1×1 branch added to the signs' first dequantizer layer (``codec.models.tae``).
    """

    arch: str = "magvit"
    quantizer: str = "lfq"
    bits: int = 18
    group_bits: int = 0
    stem_ch: int = 32
    ch: int = 128
    stem_blocks: int = 1
    blocks: int = 1
    nested_dropout: float = 0.5
    min_bits: int = 2
    quantizer_args: dict = dataclasses.field(default_factory=dict)
    dec_blocks: int = 0
    dec_enhance: int = 0

    def to_json(self) -> str:
        # Fields added after models were shipped are left out at their default, so that the JSON (part of every
        # model id) of an earlier model stays what it was.
        d = dataclasses.asdict(self)
        for k, v in LATER_FIELDS.items():
            if d[k] == v:
                del d[k]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TokenizerConfig":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown tokenizer config fields: {sorted(unknown)}")
        return cls(**data)


LATER_FIELDS = {"dec_blocks": 0, "dec_enhance": 0}


def default_group_bits(bits: int) -> int:
    """Sub-token size for LFQ's codebook-entropy term: the largest divisor of ``bits`` up to 12 (18 → 9)."""
    return max(d for d in range(1, min(bits, 12) + 1) if bits % d == 0)
