"""The one interface every quantizer in ``codec/models/quantizers/`` implements.

A quantizer maps an encoder latent ``z`` of shape ``(B, D, T, H, W)`` to

* ``codes``: the quantized latent, same shape as ``z``, carrying a straight-through gradient to ``z``;
* ``indices``: integer token indices ``(B, T, H, W)`` (int64), each in ``[0, 2**bits_per_token)``;
* ``losses``: a dict of scalar tensors (already weighted) that training adds to its objective.

``indices_to_codes(indices)`` gives back ``codes`` (without gradient) from the indices alone, which is what a decoder
of a bitstream has. ``dim`` is the number of latent channels the quantizer reads from the encoder, ``code_dim`` the
number it hands to the decoder (they differ only for quantizers with adapters, e.g. FQ).

Indices are integers below ``2**bits_per_token``, so the token prior codes any quantizer's tokens by their bits.
Quantizers made of several sub-codebooks pack their sub-indices into one index, the first sub-codebook in the lowest
bits (``pack_indices`` / ``unpack_indices``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class QuantizerOutput(NamedTuple):
    codes: torch.Tensor
    indices: torch.Tensor
    losses: dict


class Quantizer(nn.Module):
    """Base class. Subclasses set ``dim`` (latent channels they read) and implement the three methods below.

    ``forward(z, images=None)``: ``images`` is the encoder's input ``(B, 3, T, H, W)`` in [-1, 1], given during
    training for quantizers whose losses look at the picture (FQ's representation alignment); others ignore it.
    """

    dim: int
    nested = False  # True: the first k bits of an index are a coarser token (nested dropout can train for it)
    sized_groups = False  # True: takes ``group_bits`` (its sub-token size) from ``TokenizerConfig.group_bits``
    holds = False  # True: has ``held_indices(z, prev, hold)``, the encoder-side temporal hold of sign bits (LFQ)

    @property
    def code_dim(self) -> int:
        return self.dim

    @property
    def bits_per_token(self) -> int:
        raise NotImplementedError

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        raise NotImplementedError

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, T, H, W)`` integer indices → ``(B, code_dim, T, H, W)`` float codes."""
        raise NotImplementedError

    def usage(self, indices: torch.Tensor) -> dict:
        """Codebook usage of ``indices`` (see ``codebook_usage``); sub-codebook quantizers add their parts."""
        return codebook_usage(indices, 2 ** self.bits_per_token)


# --- helpers shared by the codebook quantizers ---------------------------------------------------------------------

def to_vectors(z: torch.Tensor) -> torch.Tensor:
    """``(B, D, T, H, W)`` → ``(B·T·H·W, D)`` (one row per token position)."""
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def from_vectors(v: torch.Tensor, like_shape) -> torch.Tensor:
    """Inverse of ``to_vectors`` for a latent of shape ``like_shape`` = ``(B, D', T, H, W)``; ``D'`` from ``v``."""
    b, _, t, h, w = like_shape
    return v.reshape(b, t, h, w, v.shape[-1]).movedim(-1, 1)


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """``(N, d)``, ``(K, d)`` → ``(N, K)`` squared Euclidean distances."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.T + codebook.pow(2).sum(1)[None]).clamp_min(0)


def nearest(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest codeword (squared l2) for every row of ``x``, in chunks to bound memory."""
    with torch.no_grad():
        cb2 = codebook.pow(2).sum(1)[None]
        return torch.cat([(cb2 - 2 * x[i:i + chunk] @ codebook.T).argmin(1) for i in range(0, len(x), chunk)])


def vq_losses(x: torch.Tensor, q: torch.Tensor, commit_weight: float, codebook_weight: float) -> dict:
    """VQ-VAE's two terms: ``codebook_weight ||q − sg(x)||²`` (moves codes; skipped at weight 0, e.g. with EMA
    updates) and ``commit_weight ||x − sg(q)||²`` (keeps the latent near its code), both as means."""
    out = {"commit": commit_weight * F.mse_loss(x, q.detach())}
    if codebook_weight > 0:
        out["codebook"] = codebook_weight * F.mse_loss(q, x.detach())
    return out


def pack_indices(parts: list[torch.Tensor], bits: int) -> torch.Tensor:
    """Sub-indices of ``bits`` bits each → one int64 index, ``parts[0]`` in the lowest bits."""
    out = torch.zeros_like(parts[0], dtype=torch.int64)
    for j, p in enumerate(parts):
        out = out | (p.to(torch.int64) << (bits * j))
    return out


def unpack_indices(index: torch.Tensor, bits: int, parts: int) -> list[torch.Tensor]:
    """Inverse of ``pack_indices``."""
    index = index.to(torch.int64)
    return [(index >> (bits * j)) & ((1 << bits) - 1) for j in range(parts)]


def log2_size(n: int, what: str) -> int:
    """``log2(n)`` for a power of two ``n`` (codebook sizes must be, so indices are whole bits)."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two (>= 2), got {n}")
    return n.bit_length() - 1


def codebook_usage(indices: torch.Tensor, num_codes: int) -> dict:
    """Usage of a codebook by ``indices``: ``perplexity`` (exp of the index entropy, at most ``num_codes``) and
    ``used`` (fraction of the codes that occur at least once).

    >>> codebook_usage(torch.tensor([0, 1, 2, 3]), 8)
    {'perplexity': 4.0, 'used': 0.5}
    """
    counts = torch.bincount(indices.reshape(-1).to(torch.int64), minlength=num_codes).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"perplexity": round(float(torch.exp(-(nz * nz.log()).sum())), 6),
            "used": float((counts > 0).sum()) / num_codes}
