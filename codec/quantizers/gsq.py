"""Grouped spherical quantization (GSQ), from Jia et al., "Scaling Image Tokenizers with Grouped Spherical
Quantization" (arXiv 2412.02632).

The latent of ``groups × group_dim`` channels is split into ``groups`` vectors that all look up **one shared**
codebook of ``2**(bits / groups)`` entries. The codebook is initialised on the unit sphere and lookups are on
l2-normalised vectors (nearest by cosine similarity), so codes are unit vectors. Loss:
``||q − sg(x)||² + beta ||x − sg(q)||²`` (``beta`` = 0.25) with ``x`` the normalised group vector.

The token index packs the groups' indices, group 0 in the lowest bits: ``bits = groups × log2(codebook size)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.quantizers.base import (Quantizer, QuantizerOutput, codebook_usage, from_vectors, nearest, pack_indices,
                                   to_vectors, unpack_indices, vq_losses)


class GroupedSphericalQuantizer(Quantizer):
    """GSQ with ``groups`` groups of ``group_dim`` channels sharing one spherical codebook.

    Args: bits (a multiple of ``groups``), groups, group_dim, commit_weight (beta), codebook_weight.
    Shapes: ``z (B, groups × group_dim, T, H, W)`` → codes like ``z`` (unit vectors per group), indices
    ``(B, T, H, W)``.
    """

    def __init__(self, bits: int = 12, groups: int = 2, group_dim: int = 8, commit_weight: float = 0.25,
                 codebook_weight: float = 1.0):
        super().__init__()
        if bits % groups:
            raise ValueError(f"GSQ bits ({bits}) must be a multiple of the groups ({groups})")
        self.bits, self.groups, self.group_dim = bits, groups, group_dim
        self.group_bits = bits // groups
        self.dim = groups * group_dim
        self.commit_weight, self.codebook_weight = commit_weight, codebook_weight
        self.embed = nn.Parameter(F.normalize(torch.randn(2 ** self.group_bits, group_dim), dim=1))

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embed, dim=1)

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        v = to_vectors(z).float()  # (N, G·d)
        x = F.normalize(v.view(len(v), self.groups, self.group_dim), dim=2).reshape(-1, self.group_dim)
        cb = self.codebook()
        idx = nearest(x, cb.detach())
        q = cb[idx]
        losses = vq_losses(x, q, self.commit_weight, self.codebook_weight) if self.training else {}
        codes = (x + (q - x).detach()).view(len(v), -1)
        index = pack_indices(list(idx.view(len(v), self.groups).unbind(1)), self.group_bits)
        return QuantizerOutput(from_vectors(codes, z.shape).to(z.dtype), index.view(z.shape[0], *z.shape[2:]), losses)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        cb = self.codebook()
        parts = unpack_indices(indices.reshape(-1), self.group_bits, self.groups)
        q = torch.cat([cb[p] for p in parts], dim=1)
        return from_vectors(q, (indices.shape[0], self.dim, *indices.shape[1:])).detach()

    def usage(self, indices: torch.Tensor) -> dict:
        out = codebook_usage(indices, 2 ** self.bits)
        out["shared_codebook"] = codebook_usage(torch.cat(unpack_indices(indices.reshape(-1), self.group_bits,
                                                                         self.groups)), 2 ** self.group_bits)
        return out
