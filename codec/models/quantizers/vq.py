"""Vector quantization, the VQ-VAE / VQGAN baseline.

* VQ-VAE: van den Oord et al., "Neural Discrete Representation Learning" (arXiv 1711.00937): nearest codeword,
  straight-through gradient, codebook loss ``||sg(z) - e||²`` and commitment ``beta ||z - sg(e)||²`` (beta = 0.25),
  or exponential-moving-average codebook updates instead of the codebook loss (their appendix).
* VQGAN: Esser et al., "Taming Transformers for High-Resolution Image Synthesis" (arXiv 2012.09841).
* Cosine lookup (l2-normalised latent and codewords), from ViT-VQGAN, Yu et al. (arXiv 2110.04627).
* Dead-code restart: a code whose running usage falls below ``restart_threshold`` of the uniform share is moved onto
  a random latent vector of the current batch (as in Jukebox, Dhariwal et al., arXiv 2005.00341).

The index of a token is the codeword's row, so the codebook size must be ``2**bits``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.quantizers.base import (Quantizer, QuantizerOutput, codebook_usage, from_vectors, nearest,
    to_vectors, vq_losses)


class VectorQuantizer(Quantizer):
    """Nearest-codeword quantizer with a ``2**bits``-entry codebook of ``dim``-dimensional codes.

    Args:
        bits: bits per token (codebook size ``2**bits``). dim: latent / code channels.
        metric: ``"l2"`` (Euclidean) or ``"cosine"`` (both sides l2-normalised; codes are unit vectors).
        ema: update the codebook by exponential moving averages (``decay``) instead of the codebook loss.
        commit_weight: beta of the commitment loss. codebook_weight: weight of the codebook loss (not with ``ema``).
        restart_every: training steps between dead-code checks (0: never). restart_threshold: a code is dead when its
            running usage is below this fraction of ``1 / codebook size``.
    Shapes: ``z (B, dim, T, H, W)`` → codes like ``z``, indices ``(B, T, H, W)`` int64 in ``[0, 2**bits)``.
    """

    def __init__(self, bits: int = 12, dim: int = 8, metric: str = "l2", ema: bool = False, decay: float = 0.99,
                 commit_weight: float = 0.25, codebook_weight: float = 1.0, restart_every: int = 100,
                 restart_threshold: float = 0.03):
        super().__init__()
        if metric not in ("l2", "cosine"):
            raise ValueError(f"VQ metric must be 'l2' or 'cosine', got {metric!r}")
        if not 1 <= bits <= 20:
            raise ValueError(f"VQ bits must be in 1..20 (a 2**bits codebook), got {bits}")
        self.bits, self.dim, self.metric, self.ema = bits, dim, metric, ema
        self.size = 2 ** bits
        self.decay, self.commit_weight, self.codebook_weight = decay, commit_weight, codebook_weight
        self.restart_every, self.restart_threshold = restart_every, restart_threshold
        init = torch.randn(self.size, dim)
        if metric == "cosine":
            init = F.normalize(init, dim=1)
        if ema:
            self.register_buffer("embed", init)
            self.register_buffer("cluster_size", torch.ones(self.size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embed = nn.Parameter(init)
        self.register_buffer("code_usage", torch.ones(self.size))  # running usage x codebook size (1 = uniform share)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def codebook(self) -> torch.Tensor:
        return F.normalize(self.embed, dim=1) if self.metric == "cosine" else self.embed

    def quantize_vectors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(N, dim)`` latent vectors → (straight-through codes, indices, losses). Used by FQ's branches too."""
        x = x.float()
        if self.metric == "cosine":
            x = F.normalize(x, dim=1)
        cb = self.codebook()
        idx = nearest(x, cb.detach())
        q = cb[idx]
        losses = {}
        if self.training:
            losses = vq_losses(x, q, self.commit_weight, 0.0 if self.ema else self.codebook_weight)
            if self.ema:
                self._ema_update(x.detach(), idx)
            self._track_usage(x.detach(), idx)
        return x + (q - x).detach(), idx, losses

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        codes, idx, losses = self.quantize_vectors(to_vectors(z))
        return QuantizerOutput(from_vectors(codes, z.shape).to(z.dtype), idx.view(z.shape[0], *z.shape[2:]), losses)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        q = self.codebook()[indices.reshape(-1).to(torch.int64)]
        return from_vectors(q, (indices.shape[0], q.shape[1], *indices.shape[1:])).detach()

    def usage(self, indices: torch.Tensor) -> dict:
        return codebook_usage(indices, self.size)

    # --- training-time bookkeeping ---------------------------------------------------------------------------------

    def _counts(self, idx: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(idx, minlength=self.size).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        return counts

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        counts = self._counts(idx)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, x)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n  # Laplace smoothing
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _track_usage(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        counts = self._counts(idx)
        self.code_usage.lerp_(counts / counts.sum().clamp_min(1) * self.size, 0.01)
        self.steps += 1
        if self.restart_every and int(self.steps) % self.restart_every == 0:
            self.restart_dead_codes(x)

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor) -> int:
        """Move every dead code onto a random row of ``x`` (``(N, dim)``); returns how many moved."""
        dead = (self.code_usage < self.restart_threshold).nonzero().flatten()
        if len(dead) == 0:
            return 0
        rows = x[torch.randint(len(x), (len(dead),), device=x.device)]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(rows, 0)  # every process moves the codes to the same place
        if self.ema:
            self.embed[dead] = rows
            self.embed_sum[dead] = rows
            self.cluster_size[dead] = 1.0
        else:
            self.embed.data[dead] = rows
        self.code_usage[dead] = 1.0
        return len(dead)

