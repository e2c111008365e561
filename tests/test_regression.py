"""Bitstream regression: the bytes coded for fixed tokens with a fixed prior must not change silently.

The expected SHA-256 digests live in ``tests/data/digests.json``; after an intended format change, regenerate them
with ``VTOK_REGEN_DIGESTS=1 pytest tests/test_regression.py`` and say so in the commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vtok.bitstream.container import ContainerWriter, Header
from vtok.codec.entropy import encode_tokens
from vtok.codec.prior import PriorConfig, TokenPrior

DIGESTS = Path(__file__).parent / "data" / "digests.json"


def _cases() -> dict[str, bytes]:
    torch.manual_seed(1234)
    prior = TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze()
    rng = np.random.default_rng(99)
    tokens = rng.integers(0, 2 ** 10, (3, 6, 7))
    tokens[1:] = tokens[:1]  # some temporal redundancy
    out = {}
    for bits in (10, 4):
        payload, _ = encode_tokens(prior, tokens & ((1 << bits) - 1), bits)
        out[f"gop_payload_{bits}bits"] = payload
    buf = io.BytesIO()
    w = ContainerWriter(buf, Header(width=56, height=48, frames=9, fps_num=25, fps_den=1, bits_per_token=10,
                                    model_bits=10, gop=9, prob_bits=16, perfect=False, model_id="0123456789abcdef"))
    w.write_unit(0, 0, 9, out["gop_payload_10bits"])
    w.close()
    out["container"] = buf.getvalue()
    out["prior_weights"] = b"".join(v.numpy().tobytes() for _, v in sorted(prior.tensors().items()))
    return out


def test_bitstream_digests():
    got = {k: hashlib.sha256(v).hexdigest() for k, v in _cases().items()}
    if os.environ.get("VTOK_REGEN_DIGESTS"):
        DIGESTS.write_text(json.dumps(got, indent=1) + "\n")
    if not DIGESTS.exists():
        pytest.fail(f"{DIGESTS} is missing: run with VTOK_REGEN_DIGESTS=1 once")
    assert got == json.loads(DIGESTS.read_text())
