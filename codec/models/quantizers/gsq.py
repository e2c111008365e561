"""Grouped spherical quantization (GSQ), from Jia et al., "Scaling Image Tokenizers with Grouped Spherical
Quantization" (arXiv 2412.02632).

The latent of ``groups × group_dim`` channels is split into ``groups`` vectors that all look up **one shared**
codebook of ``2**(bits / groups)`` entries. The codebook is initialised on the unit sphere and lookups are on
l2-normalised vectors (nearest by cosine similarity), so codes are unit vectors. Loss:
``||q − sg(x)||² + beta ||x − sg(q)||²`` (``beta`` = 0.25) with ``x`` the normalised group vector.

The token index packs the groups' indices, group 0 in the lowest bits: ``bits = groups × log2(codebook size)``.
Optionally (``restart_every`` > 0, off by default) dead codes of the shared codebook are restarted as in
``codec.models.quantizers.vq`` — this project's addition, not the paper's.
"""

from __future__ import annotations

import torch

from vtok.codec.models.quantizers.base import (Quantizer, QuantizerOutput, codebook_usage, from_vectors,
    pack_indices, to_vectors, unpack_indices)
from vtok.codec.models.quantizers.vq import VectorQuantizer


class GroupedSphericalQuantizer(Quantizer):
    """GSQ with ``groups`` groups of ``group_dim`` channels sharing one spherical codebook.

    Args: bits (a multiple of ``groups``), groups, group_dim, commit_weight (beta), codebook_weight;
    restart_every / restart_threshold: dead-code restart of the shared codebook (0: off, the paper's form; see
    ``VectorQuantizer``).
    Shapes: ``z (B, groups × group_dim, T, H, W)`` → codes like ``z`` (unit vectors per group), indices
    ``(B, T, H, W)``.
    """

    def __init__(self, bits: int = 12, groups: int = 2, group_dim: int = 8, commit_weight: float = 0.25,
                 codebook_weight: float = 1.0, restart_every: int = 0, restart_threshold: float = 0.03):
        super().__init__()
        if bits % groups:
            raise ValueError(f"GSQ bits ({bits}) must be a multiple of the groups ({groups})")
        self.bits, self.groups, self.group_dim = bits, groups, group_dim
        self.group_bits = bits // groups
        self.dim = groups * group_dim
        # The shared codebook: a cosine VQ (unit-sphere init, lookups and codes on l2-normalised vectors).
        self.shared = VectorQuantizer(self.group_bits, group_dim, "cosine", commit_weight=commit_weight,
                                      codebook_weight=codebook_weight, restart_every=restart_every,
                                      restart_threshold=restart_threshold)

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def codebook(self) -> torch.Tensor:
        return self.shared.codebook()

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        v = to_vectors(z).float()  # (N, G·d)
        codes, idx, losses = self.shared.quantize_vectors(v.reshape(-1, self.group_dim))
        index = pack_indices(list(idx.view(len(v), self.groups).unbind(1)), self.group_bits)
        return QuantizerOutput(from_vectors(codes.view(len(v), -1), z.shape).to(z.dtype),
                               index.view(z.shape[0], *z.shape[2:]), losses)

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
