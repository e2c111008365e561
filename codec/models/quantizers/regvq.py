"""Regularized vector quantization (Reg-VQ), from Zhang et al., "Regularized Vector Quantization for Tokenized Image
Synthesis" (arXiv 2303.06424).

A VQ codebook whose predicted token distribution at every position is ``softmax(−||x − e_k||² / tau)``, with three
regularizers on top of VQ's codebook and commitment losses:

* **prior distribution regularization**: ``KL(uniform ‖ p̄)``, ``p̄`` the batch average of the predicted
  distributions — it is 0 when the batch uses every code equally and grows as the codebook collapses;
* **stochastic mask regularization**: in training a random ``mask_ratio`` of the positions is quantized by *sampling*
  a code from the predicted distribution, the rest by the nearest code (inference is always deterministic);
* **probabilistic contrastive loss**: at the sampled positions, a contrastive (softmax cross-entropy) loss that pulls
  the latent towards its sampled code and away from the others, weighted by the sampled code's (detached)
  probability, so unlikely samples — the perturbations — count less.

The paper states the structure of these terms; the weights, ``tau`` and ``mask_ratio`` below are this project's
choices (docs/QUANTIZERS.md): prior 0.1, contrastive 0.1, tau 1.0, mask ratio 0.25.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.quantizers.base import (Quantizer, QuantizerOutput, codebook_usage, from_vectors, nearest,
    squared_distances, to_vectors, vq_losses)


def prior_kl(avg_probs: torch.Tensor) -> torch.Tensor:
    """``KL(uniform ‖ avg_probs)`` for a ``(K,)`` distribution: 0 exactly when it is uniform.

    >>> abs(float(prior_kl(torch.full((8,), 1 / 8)))) < 1e-6
    True
    """
    k = avg_probs.numel()
    return -math.log(k) - avg_probs.clamp_min(1e-12).log().mean()


class RegularizedVectorQuantizer(Quantizer):
    """Reg-VQ with a ``2**bits`` codebook of ``dim``-dimensional codes.

    Args: bits, dim; tau (temperature of the predicted distribution); mask_ratio (share of positions quantized
    stochastically in training); prior_weight, contrastive_weight, commit_weight (beta), codebook_weight.
    Shapes: ``z (B, dim, T, H, W)`` → codes like ``z``, indices ``(B, T, H, W)``.
    """

    def __init__(self, bits: int = 12, dim: int = 8, tau: float = 1.0, mask_ratio: float = 0.25,
                 prior_weight: float = 0.1, contrastive_weight: float = 0.1, commit_weight: float = 0.25,
                 codebook_weight: float = 1.0):
        super().__init__()
        if not 1 <= bits <= 16:
            raise ValueError(f"Reg-VQ bits must be in 1..16 (its training softmax spans the codebook), got {bits}")
        if not 0 <= mask_ratio <= 1:
            raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")
        self.bits, self.dim, self.size = bits, dim, 2 ** bits
        self.tau, self.mask_ratio = tau, mask_ratio
        self.prior_weight, self.contrastive_weight = prior_weight, contrastive_weight
        self.commit_weight, self.codebook_weight = commit_weight, codebook_weight
        self.embed = nn.Parameter(torch.randn(self.size, dim))

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        x = to_vectors(z).float()
        losses = {}
        if not self.training:
            idx = nearest(x, self.embed.detach())
        else:
            logits = -squared_distances(x, self.embed) / self.tau  # (N, K)
            logp = F.log_softmax(logits, dim=1)
            probs = logp.exp()
            idx = logits.argmax(1)
            mask = torch.rand(len(x), device=x.device) < self.mask_ratio
            if mask.any():
                sampled = torch.multinomial(probs[mask].detach(), 1).squeeze(1)
                idx = idx.masked_scatter(mask, sampled)
                if self.contrastive_weight > 0:
                    lp = logp[mask].gather(1, sampled[:, None]).squeeze(1)
                    losses["contrastive"] = self.contrastive_weight * -(lp.exp().detach() * lp).mean()
            if self.prior_weight > 0:
                losses["prior"] = self.prior_weight * prior_kl(probs.mean(0))
        q = self.embed[idx]
        if self.training:
            losses.update(vq_losses(x, q, self.commit_weight, self.codebook_weight))
        codes = x + (q - x).detach()
        return QuantizerOutput(from_vectors(codes, z.shape).to(z.dtype), idx.view(z.shape[0], *z.shape[2:]), losses)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        q = self.embed[indices.reshape(-1).to(torch.int64)]
        return from_vectors(q, (indices.shape[0], self.dim, *indices.shape[1:])).detach()

    def usage(self, indices: torch.Tensor) -> dict:
        return codebook_usage(indices, self.size)
