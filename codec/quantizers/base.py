"""The one interface every quantizer in ``codec/quantizers/`` implements.

A quantizer maps an encoder latent ``z`` of shape ``(B, D, T, H, W)`` to

* ``codes``: the quantized latent, same shape as ``z``, carrying a straight-through gradient to ``z``;
* ``indices``: integer token indices ``(B, T, H, W)`` (int64), each in ``[0, 2**bits_per_token)``;
* ``losses``: a dict of scalar tensors (already weighted) that training adds to its objective.

``indices_to_codes(indices)`` gives back ``codes`` (without gradient) from the indices alone, which is what a decoder
of a bitstream has.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class QuantizerOutput(NamedTuple):
    codes: torch.Tensor
    indices: torch.Tensor
    losses: dict


class Quantizer(nn.Module):
    """Base class. Subclasses set ``dim`` (latent channels they read) and implement the three methods below."""

    dim: int

    @property
    def bits_per_token(self) -> int:
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W)`` integer indices → ``(B, D, T, H, W)`` float codes."""
        raise NotImplementedError
